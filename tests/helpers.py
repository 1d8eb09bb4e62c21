"""Small builders shared by tests: tiny interleaved batches in the reference's exact layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from seed_story.interleave import encode_prompt, image_slot_mask
from seed_story.tokenizer import INST, ImageTokenIds, image_string


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    ids_cmp_mask: torch.Tensor
    ids_gen_mask: torch.Tensor
    embeds_cmp_mask: torch.Tensor
    embeds_gen_mask: torch.Tensor
    image_embeds: torch.Tensor

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return dict(self.__dict__)


def story_batch(
    tokenizer: PreTrainedTokenizerBase,
    image_ids: ImageTokenIds,
    stories: list[list[str]],
    vit_tokens: int,
    vit_dim: int,
) -> Batch:
    """Each story = captions; caption i is followed by image i; the last image is the target.

    Right-padded to the longest sample, labels only on the last ``[INST]`` caption + ``<img>`` + EOS.
    """
    n_img = len(image_ids.image)
    img = image_string(n_img)
    rows, label_rows, cmp_rows, gen_rows, embeds_cmp, embeds_gen = [], [], [], [], [], []
    for captions in stories:
        instruction = captions[0] + img + "".join(INST + c + img for c in captions[1:-1])
        response = INST + captions[-1] + img
        prefix = encode_prompt(tokenizer, instruction)
        resp = tokenizer.encode(response, add_special_tokens=False)
        ids = torch.tensor([*prefix, *resp, tokenizer.eos_token_id])
        labels = ids.clone()
        labels[: len(prefix)] = -100
        slots = image_slot_mask(ids, image_ids)
        gen = slots.clone()
        gen[: len(prefix)] = False
        labels[gen] = -100
        labels[(ids == image_ids.eoi) & (torch.arange(len(ids)) >= len(prefix))] = -100
        rows.append(ids)
        label_rows.append(labels)
        cmp_rows.append(slots & ~gen)
        gen_rows.append(gen)
        embeds_cmp += [True] * (len(captions) - 1) + [False]
        embeds_gen += [False] * (len(captions) - 1) + [True]
    length = max(len(r) for r in rows)

    def pad(t: torch.Tensor, value: int | bool) -> torch.Tensor:
        return torch.cat([t, torch.full((length - len(t),), value, dtype=t.dtype)])

    n_images = len(embeds_cmp)
    return Batch(
        input_ids=torch.stack([pad(r, tokenizer.pad_token_id) for r in rows]),
        attention_mask=torch.stack([pad(torch.ones(len(r), dtype=torch.long), 0) for r in rows]),
        labels=torch.stack([pad(r, -100) for r in label_rows]),
        ids_cmp_mask=torch.stack([pad(r, False) for r in cmp_rows]),
        ids_gen_mask=torch.stack([pad(r, False) for r in gen_rows]),
        embeds_cmp_mask=torch.tensor(embeds_cmp),
        embeds_gen_mask=torch.tensor(embeds_gen),
        image_embeds=torch.randn(n_images, vit_tokens, vit_dim),
    )
