"""The toy world: tiny stories whose pictures are synthetic ViT features, for the toy model and engine tests.

Random tiny weights babble; generation tests and benchmarks need a model that writes
``[INST]<caption><img>...</img></s>`` turn after turn, so that a bug shows up as a different story rather
than as different noise. ``seed_story.training.toy`` trains that model on this world. The world is small and
deterministic:

* a caption is ``"The <colour> <animal> <verb> to the <place>."`` (28-33 ASCII characters). The next caption
  keeps the colour and animal with probability 3/4 and always moves on to the next place of ``PLACES``
  (a cycle), so what comes next depends on the context; the verb is random.
* a picture is a fixed synthetic ViT feature tensor per (animal, place), laid out like an image: a shared
  texture, the animal's vector on the centre of the token grid, the place's vector around it. Where pixels
  are needed (the de-tokenizer stages), ``scene_picture`` paints the same layout in colours.

Example::

    caption, features = toy_openings(1)[0]         # an opening for a story
    batch = toy_batch(parts, random.Random(0), batch_size=4, length=6)
"""

from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from seed_story.components import Components
from seed_story.data.mllm_batch import MLLMBatch
from seed_story.data.sequence import Sample, build_tokens, collate
from seed_story.tokenizer import INST, ImageTokenIds

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


def _palette(index: int, count: int) -> torch.Tensor:
    # Evenly spread hues as RGB in [-1, 1]; deterministic, distinct for every animal and place.
    angle = 2 * torch.pi * index / count
    phases = torch.tensor([0.0, 2 * torch.pi / 3, 4 * torch.pi / 3])
    return 0.8 * torch.cos(angle + phases)


def scene_picture(scene: Scene, size: int) -> torch.Tensor:
    """A (3, size, size) picture in [-1, 1]: the place's colour around the animal's colour in the centre."""
    picture = _palette(PLACES.index(scene.place), len(PLACES))[:, None, None].expand(3, size, size).clone()
    lo, hi = size // 4, size - size // 4
    picture[:, lo:hi, lo:hi] = _palette(ANIMALS.index(scene.animal), len(ANIMALS))[:, None, None]
    return picture


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

    The StoryStream training layout (``build_tokens`` and ``collate`` of ``seed_story.data.sequence``), right-padded
    to the longest story, with the pictures given as ViT features: ``image_embeds`` holds one (vit_tokens, vit_dim)
    tensor per caption, story-major, random by default. ``supervise_all`` supervises every caption and ``<img>``,
    not only the last ``[INST]`` caption (see ``build_tokens``).
    """
    n_images = sum(len(s) for s in stories)
    if image_embeds is None:
        image_embeds = torch.randn(n_images, vit_tokens, vit_dim)
    elif image_embeds.shape != (n_images, vit_tokens, vit_dim):
        raise ValueError(f"image_embeds must be {(n_images, vit_tokens, vit_dim)}, got {tuple(image_embeds.shape)}")
    samples = []
    for captions in stories:
        ids, labels, cmp, gen, text = build_tokens(tokenizer, image_ids, captions, supervise_all=supervise_all)
        is_target = torch.arange(len(captions)) == len(captions) - 1
        sample = Sample(input_ids=ids, labels=labels, ids_cmp_mask=cmp, ids_gen_mask=gen,
                        embeds_cmp_mask=~is_target, embeds_gen_mask=is_target,
                        images=torch.empty(len(captions), 0), text=text)  # fmt: skip
        samples.append(sample)
    # No pixels: a toy picture is its ViT features, which take the place of the (empty) images here.
    return collate(samples, tokenizer.pad_token_id).with_embeds(image_embeds)


def toy_stories(
    parts: Components,
    rng: random.Random,
    batch_size: int,
    length: int,
    *,
    supervise_all: bool,
    part: slice | None = None,
) -> tuple[MLLMBatch, list[list[Scene]]]:
    """``batch_size`` toy stories of ``length`` scenes as one batch with their pictures' features, and the stories.

    ``part`` keeps only those of the stories drawn (``rng`` still draws all ``batch_size``): one data-parallel
    rank's share of the global batch.
    """
    vision = parts.config.vision
    image_ids = ImageTokenIds.from_tokenizer(parts.tokenizer, parts.config.mllm.num_image_tokens)
    part = part or slice(0, batch_size)
    stories = [sample_story(rng, length) for _ in range(batch_size)][part]
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
