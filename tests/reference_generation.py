"""Oracle: the released story-generation algorithms, written plainly (the release's generate; the release's
gen_george.py; the release's vis_george_sink.py).

Batch 1, greedy, and slow on purpose: every story step re-tokenises the whole window with BOS and calls
Hugging Face ``generate`` from scratch (no cache carried between steps), with the original logits
processor. Fast engines are compared against this.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerBase

from seed_story.interleave import encode_prompt, image_slot_mask
from seed_story.models.mllm import SeedStoryMLLM
from seed_story.tokenizer import IMAGE_END, INST, ImageTokenIds, image_string

TAG = re.compile(r"<[^>]*>")


@dataclass
class RefStep:
    text: str  # write: the cleaned generated text; illustrate: the given text
    token_ids: list[int]  # every id generated in this step (EOS included when produced)
    features: torch.Tensor | None  # (T, D) regressed picture features; None when no </img> was generated
    prompt: str = ""  # the prompt of this step, tokenised with BOS in front


class AutoImageTokens(LogitsProcessor):
    """After ``<img>`` or an image token, force the next of ``<img>``, image tokens, ``</img>`` (max + 10);
    otherwise set the scores of the image tokens and ``</img>`` to 0.0 (a soft suppression, not -inf)."""

    def __init__(self, image_ids: ImageTokenIds) -> None:
        self.order = list(image_ids.sequence)  # <img>, <img_00000>.., </img>

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            last = int(input_ids[row, -1])
            if last in self.order[:-1]:
                forced = self.order[self.order.index(last) + 1]
                scores[row, forced] = scores[row].max() + 10
            else:
                scores[row, self.order[1:]] = 0.0
        return scores


@torch.no_grad()
def generate_turn(
    mllm: SeedStoryMLLM,
    tokenizer: PreTrainedTokenizerBase,
    image_ids: ImageTokenIds,
    prompt: str,
    features: torch.Tensor,
    max_new_tokens: int,
) -> tuple[list[int], torch.Tensor | None]:
    """One ``agent.generate`` call: [BOS] + prompt with every picture's features as context."""
    ids = torch.tensor([encode_prompt(tokenizer, prompt)], device=features.device)
    slots = image_slot_mask(ids, image_ids)
    embeds = mllm.embed_inputs(ids, features, slots)  # every picture is context (embeds_cmp_mask all True)
    out = mllm.causal_lm.generate(
        input_ids=ids,
        inputs_embeds=embeds,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        logits_processor=LogitsProcessorList([AutoImageTokens(image_ids)]),
        output_hidden_states=True,
        return_dict_in_generate=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    new = out.sequences[0, ids.shape[1] :].tolist()
    # hidden_states[0] covers the prompt, step j>0 generated token j-1 as input: drop the prompt part.
    hidden = torch.cat([step[-1] for step in out.hidden_states], dim=1)[0, ids.shape[1] :]
    eois = [i for i, t in enumerate(new) if t == image_ids.eoi]
    if not eois:
        return new, None
    n = len(image_ids.image)
    if eois[-1] < n:
        raise ValueError(f"</img> generated after only {eois[-1]} tokens")
    picture = hidden[eois[-1] - n : eois[-1]]
    return new, mllm.output_resampler(picture[None])[0]


def _slide(prompt: str, features: list[torch.Tensor], window_images: int, separator: str) -> str:
    """Drop the oldest pictures: cut after the first ``</img>`` and the separator that follows it."""
    while len(features) > window_images:
        prompt = prompt[prompt.index(IMAGE_END) + len(IMAGE_END) + len(separator) :]
        features.pop(0)
    return prompt


def reference_write(
    mllm: SeedStoryMLLM,
    tokenizer: PreTrainedTokenizerBase,
    image_ids: ImageTokenIds,
    opening_features: torch.Tensor,
    opening_text: str,
    num_steps: int,
    window_images: int = 8,
    max_new_tokens: int = 500,
    timings: list[float] | None = None,
) -> list[RefStep]:
    """gen_george (the release's gen_george.py): the model writes each next caption and draws its picture.

    ``opening_features`` is (1, T, D). Returns up to ``num_steps`` generated (text, picture) steps; stops
    early after a step without ``</img>``. ``timings``, if given, receives each step's wall seconds.
    """
    img = image_string(len(image_ids.image))
    prompt = opening_text + img
    features = [opening_features[0]]
    steps: list[RefStep] = []
    for _ in range(num_steps):
        start = time.perf_counter()
        new, feats = generate_turn(mllm, tokenizer, image_ids, prompt, torch.stack(features), max_new_tokens)
        text = TAG.sub(" ", tokenizer.decode(new, skip_special_tokens=False)).strip()
        if timings is not None:
            timings.append(time.perf_counter() - start)
        steps.append(RefStep(text=text, token_ids=new, features=feats, prompt=prompt))
        if feats is None:
            break
        features.append(feats)  # fed back as is, never re-encoded
        prompt = _slide(prompt + text + img, features, window_images, INST)
    return steps


def reference_illustrate(
    mllm: SeedStoryMLLM,
    tokenizer: PreTrainedTokenizerBase,
    image_ids: ImageTokenIds,
    opening_features: torch.Tensor,
    opening_text: str,
    texts: list[str],
    window_images: int = 8,
    inst_separator: bool = True,
    max_new_tokens: int = 500,
) -> list[RefStep]:
    """vis_george_sink as it effectively runs (the release's vis_george_sink.py): the texts are given, the model only
    draws.

    The prompt is caption0 + picture + [sep] + text_1, then + picture + [sep] + text_2 ..., with the
    regressed features as context and the same sliding window as :func:`reference_write` (re-tokenised
    with BOS each step). ``inst_separator`` puts ``[INST]`` before each text as in training; ``False`` is
    the released script's prompt.
    """
    img = image_string(len(image_ids.image))
    sep = INST if inst_separator else ""
    prompt = opening_text + img
    features = [opening_features[0]]
    steps: list[RefStep] = []
    for text in texts:
        prompt += sep + text
        new, feats = generate_turn(mllm, tokenizer, image_ids, prompt, torch.stack(features), max_new_tokens)
        steps.append(RefStep(text=text, token_ids=new, features=feats, prompt=prompt))
        if feats is None:
            break
        features.append(feats)
        prompt = _slide(prompt + img, features, window_images, sep)
    return steps
