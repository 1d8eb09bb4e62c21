"""A toy story world and a short training run that teaches the ``tiny`` preset to write well-formed stories.

Random tiny weights babble; generation tests and benchmarks need a model that writes
``[INST]<caption><img>...</img></s>`` turn after turn, so that a bug shows up as a different story rather
than as different noise. The world is small and deterministic:

* a caption is ``"The <colour> <animal> <verb> to the <place>."`` (28-33 ASCII characters). The next caption
  keeps the colour and animal with probability 3/4 and always moves on to the next place of ``PLACES``
  (a cycle), so what comes next depends on the context; the verb is random.
* a picture is a fixed synthetic ViT feature tensor per (animal, place), laid out like an image: a shared
  texture, the animal's vector on the centre of the token grid, the place's vector around it.

Example::

    parts = train_toy_model()                      # ~17-20 s on two CPU cores
    caption, features = toy_openings(1)[0]         # an opening for a story
"""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from seed_story.components import Components, build_random
from seed_story.data.mllm_batch import MLLMBatch
from seed_story.interleave import encode_prompt, image_slot_mask
from seed_story.presets import from_preset
from seed_story.tokenizer import INST, ImageTokenIds, image_string

COLOURS = ("red", "blue", "green", "gold", "grey")
ANIMALS = ("fox", "cat", "owl", "bear", "frog")
VERBS = ("runs", "walks", "hops", "flies", "swims")
PLACES = ("hill", "lake", "barn", "wood", "park")

CAPTION_RE = re.compile(
    rf"The ({'|'.join(COLOURS)}) ({'|'.join(ANIMALS)}) ({'|'.join(VERBS)}) to the ({'|'.join(PLACES)})\."
)
KEEP_CHARACTER = 0.75  # chance that the next caption continues with the same colour and animal


@dataclass(frozen=True)
class Scene:
    """One step of a toy story: what the caption says and what the picture shows."""

    colour: str
    animal: str
    verb: str
    place: str

    @property
    def caption(self) -> str:
        return f"The {self.colour} {self.animal} {self.verb} to the {self.place}."


def is_caption(text: str) -> bool:
    """Whether ``text`` is exactly one caption of the toy grammar."""
    return CAPTION_RE.fullmatch(text) is not None


def next_place(place: str) -> str:
    """The place after ``place`` in the cycle of ``PLACES``: where the next scene happens."""
    return PLACES[(PLACES.index(place) + 1) % len(PLACES)]


def sample_story(rng: random.Random, length: int) -> list[Scene]:
    """``length`` scenes; each keeps the previous character with probability 3/4 and goes to the next place."""
    story = [Scene(rng.choice(COLOURS), rng.choice(ANIMALS), rng.choice(VERBS), rng.choice(PLACES))]
    while len(story) < length:
        prev = story[-1]
        colour, animal = prev.colour, prev.animal
        if rng.random() >= KEEP_CHARACTER:
            colour, animal = rng.choice(COLOURS), rng.choice(ANIMALS)
        story.append(Scene(colour, animal, rng.choice(VERBS), next_place(prev.place)))
    return story


def _fixed_randn(seed: int, num_tokens: int, dim: int) -> torch.Tensor:
    return torch.randn(num_tokens, dim, generator=torch.Generator().manual_seed(seed))


@functools.lru_cache(maxsize=256)
def _features(animal: str, place: str, num_tokens: int, dim: int) -> torch.Tensor:
    side = math.isqrt(num_tokens)
    rows, cols = torch.arange(num_tokens) // side, torch.arange(num_tokens) % side
    middle = (side - 1) / 2
    centre = ((rows - middle).abs() < side / 4) & ((cols - middle).abs() < side / 4)
    texture = _fixed_randn(7, num_tokens, dim)
    who = _fixed_randn(100 + ANIMALS.index(animal), 1, dim)
    where = _fixed_randn(200 + PLACES.index(place), 1, dim)
    return 0.5 * texture + torch.where(centre[:, None], who, where)


def scene_features(scene: Scene, num_tokens: int = 64, dim: int = 64) -> torch.Tensor:
    """The synthetic ViT features (num_tokens, dim) of a scene's picture; they depend on animal and place only.

    ``num_tokens`` must be a square (a token grid); the defaults are the ``tiny`` preset's ViT output.
    """
    return _features(scene.animal, scene.place, num_tokens, dim).clone()


def toy_openings(count: int, seed: int = 0, num_tokens: int = 64, dim: int = 64) -> list[tuple[str, torch.Tensor]]:
    """``count`` story openings: (caption, features (1, num_tokens, dim)), the same for the same seed."""
    rng = random.Random(seed)
    scenes = [sample_story(rng, 1)[0] for _ in range(count)]
    return [(s.caption, scene_features(s, num_tokens, dim)[None]) for s in scenes]


def is_story_step(
    tokenizer: PreTrainedTokenizerBase, image_ids: ImageTokenIds, text: str, token_ids: list[int]
) -> bool:
    """Whether one written step is ``[INST]<caption>`` followed by exactly one picture and EOS.

    ``text`` is the step's cleaned text (tags removed) and ``token_ids`` the ids generated in that step.
    """
    if not (text.startswith(INST) and is_caption(text[len(INST) :])):
        return False
    expected = [*tokenizer.encode(text, add_special_tokens=False), *image_ids.sequence, tokenizer.eos_token_id]
    return list(token_ids) == expected


def _story_row(
    tokenizer: PreTrainedTokenizerBase, image_ids: ImageTokenIds, captions: list[str], supervise_all: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, labels, context-slot mask and target-slot mask of one story (the release's decode_long_story_data)."""
    img = image_string(len(image_ids.image))
    instruction = captions[0] + img + "".join(INST + c + img for c in captions[1:-1])
    response = INST + captions[-1] + img
    # Two encode calls, as the reference does; BOS before, EOS after.
    prefix = encode_prompt(tokenizer, instruction)
    ids = torch.tensor([*prefix, *tokenizer.encode(response, add_special_tokens=False), tokenizer.eos_token_id])
    slots = image_slot_mask(ids, image_ids)
    gen = slots & (torch.arange(len(ids)) >= len(prefix))
    labels = ids.clone()
    labels[: 1 if supervise_all else len(prefix)] = -100
    labels[slots | (ids == image_ids.eoi)] = -100  # image tokens and </img> are forced, never learnt
    return ids, labels, slots & ~gen, gen


def story_batch(
    tokenizer: PreTrainedTokenizerBase,
    image_ids: ImageTokenIds,
    stories: list[list[str]],
    vit_tokens: int,
    vit_dim: int,
    *,
    image_embeds: torch.Tensor | None = None,
    supervise_all: bool = False,
) -> MLLMBatch:
    """Each story = captions; caption i is followed by image i; the last image is the target.

    Right-padded to the longest sample. Labels cover the last ``[INST]`` caption + ``<img>`` + EOS as in the
    reference (the release's decode_long_story_data), or with ``supervise_all`` every caption and ``<img>`` (the first
    caption and each ``[INST]``) + EOS; image tokens and ``</img>`` never. ``image_embeds`` (one (vit_tokens, vit_dim)
    tensor per caption, story-major) default to random.
    """
    rows = [_story_row(tokenizer, image_ids, captions, supervise_all) for captions in stories]
    length = max(len(r[0]) for r in rows)

    def stack(index: int, value: int | bool) -> torch.Tensor:
        return torch.stack(
            [torch.cat([r[index], torch.full((length - len(r[index]),), value, dtype=r[index].dtype)]) for r in rows]
        )

    lengths = torch.tensor([len(r[0]) for r in rows])
    n_images = sum(len(s) for s in stories)
    if image_embeds is None:
        image_embeds = torch.randn(n_images, vit_tokens, vit_dim)
    elif image_embeds.shape != (n_images, vit_tokens, vit_dim):
        raise ValueError(f"image_embeds must be {(n_images, vit_tokens, vit_dim)}, got {tuple(image_embeds.shape)}")
    is_target = [i == len(s) - 1 for s in stories for i in range(len(s))]
    return MLLMBatch(
        input_ids=stack(0, tokenizer.pad_token_id),
        attention_mask=(torch.arange(length) < lengths[:, None]).long(),
        labels=stack(1, -100),
        ids_cmp_mask=stack(2, False),
        ids_gen_mask=stack(3, False),
        embeds_cmp_mask=~torch.tensor(is_target),
        embeds_gen_mask=torch.tensor(is_target),
        image_embeds=image_embeds,
    )


def toy_stories(
    parts: Components, rng: random.Random, batch_size: int, length: int, *, supervise_all: bool
) -> tuple[MLLMBatch, list[list[Scene]]]:
    """``batch_size`` toy stories of ``length`` scenes as one batch with their pictures' features, and the stories."""
    vision = parts.config.vision
    image_ids = ImageTokenIds.from_tokenizer(parts.tokenizer, parts.config.mllm.num_image_tokens)
    stories = [sample_story(rng, length) for _ in range(batch_size)]
    feats = torch.stack([scene_features(s, vision.n_queries, vision.output_dim) for story in stories for s in story])
    batch = story_batch(
        parts.tokenizer,
        image_ids,
        [[s.caption for s in story] for story in stories],
        vision.n_queries,
        vision.output_dim,
        image_embeds=feats,
        supervise_all=supervise_all,
    )
    return batch, stories


def toy_batch(parts: Components, rng: random.Random, batch_size: int, length: int) -> MLLMBatch:
    """``batch_size`` toy stories of ``length`` scenes with their pictures' features, every caption supervised."""
    return toy_stories(parts, rng, batch_size, length, supervise_all=True)[0]


def train_toy_model(steps: int = 400, seed: int = 0, *, batch_size: int = 4, lr: float = 5e-3) -> Components:
    """Train the MLLM of a random ``tiny`` model on toy stories; returns the components in eval mode.

    AdamW with warm-up and cosine decay on batches of stories of 2..10 scenes in the reference layout
    (one random length per batch, so nothing is padded). Two departures from the reference, for speed:
    every MLLM parameter trains (base weights too, LoRA included so it is non-zero; the fixed position
    tables stay frozen), and every caption is supervised (see :func:`story_batch`), not only the last one.
    The regression loss is the reference's: the last picture of each story. Deterministic for a seed on a
    given machine and thread count. The defaults take ~17-20 s on two CPU cores and give a model that writes
    25-step stories from almost any opening, following the place cycle.

    Example::

        parts = train_toy_model()
        parts.mllm  # SeedStoryMLLM in eval mode, requires_grad off
    """
    parts = build_random(from_preset("tiny"), seed=seed)
    mllm = parts.mllm.train()
    params = [p for name, p in mllm.named_parameters() if not name.endswith("pos_embed")]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        # Linear warm-up, then cosine decay to a tenth of the peak rate.
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    rng = random.Random(seed)
    for _ in range(steps):
        batch = toy_batch(parts, rng, batch_size, rng.randint(2, 10))
        loss = mllm(**batch.as_kwargs()).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    return parts.eval()
