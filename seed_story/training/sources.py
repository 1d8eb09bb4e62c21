"""Batch sources for the trainer. Until StoryStream lands, the toy world of ``seed_story.toy`` with
synthetic pictures: a scene's picture is a background coloured by its place with a centre square
coloured by its animal, so the ViT features, the MLLM's regressed features and the pixels agree.

Each source is an endless, seeded iterator: the same seed gives the same batches, which is what lets the
trainer resume by skipping the batches it already consumed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seed_story.components import Components
from seed_story.tokenizer import ImageTokenIds
from seed_story.toy import ANIMALS, PLACES, Batch, Scene, sample_story, scene_features, story_batch
from seed_story.training.config import ToyData


@dataclass
class PictureBatch:
    """Stage-1 input: target pictures in [-1, 1] at the de-tokenizer's size, the same at the ViT's size."""

    images: torch.Tensor
    vit_images: torch.Tensor
    time_ids: torch.Tensor


@dataclass
class StoryPictureBatch:
    """Stage-3 input: an interleaved sequence (teacher-forced through the MLLM) and its target pictures."""

    sequence: Batch
    images: torch.Tensor
    time_ids: torch.Tensor


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


def _time_ids(size: int, count: int) -> torch.Tensor:
    # SDXL micro-conditioning: original size, crop top-left, target size (no crop, no resize).
    return torch.tensor([[size, size, 0, 0, size, size]] * count, dtype=torch.float32)


def _pictures(parts: Components, scenes: list[Scene]) -> tuple[torch.Tensor, torch.Tensor]:
    size, vit_size = parts.config.detokenizer.image_size, parts.config.vision.image_size
    images = torch.stack([scene_picture(s, size) for s in scenes])
    return images, F.interpolate(images, size=(vit_size, vit_size), mode="bilinear", align_corners=False)


def _stories(parts: Components, rng: random.Random, data: ToyData) -> tuple[Batch, list[Scene]]:
    vision = parts.config.vision
    image_ids = ImageTokenIds.from_tokenizer(parts.tokenizer, parts.config.mllm.num_image_tokens)
    length = rng.randint(data.min_scenes, data.max_scenes)  # one length per batch: nothing is padded
    stories = [sample_story(rng, length) for _ in range(data.batch_size)]
    feats = torch.stack([scene_features(s, vision.n_queries, vision.output_dim) for st in stories for s in st])
    batch = story_batch(
        parts.tokenizer,
        image_ids,
        [[s.caption for s in st] for st in stories],
        vision.n_queries,
        vision.output_dim,
        image_embeds=feats,
    )
    return batch, [st[-1] for st in stories]


def toy_batches(stage: str, data: ToyData, parts: Components, seed: int) -> Iterator[object]:
    """Endless toy batches for ``stage``, the same sequence for the same seed.

    Example::

        batches = toy_batches("stage2", ToyData(batch_size=4), build_random(cfg), seed=0)
        next(batches).input_ids.shape
    """
    rng = random.Random(seed)
    size = parts.config.detokenizer.image_size
    for _ in itertools.count():
        if stage == "stage1":
            scenes = [sample_story(rng, 1)[0] for _ in range(data.batch_size)]
            images, vit_images = _pictures(parts, scenes)
            yield PictureBatch(images=images, vit_images=vit_images, time_ids=_time_ids(size, len(scenes)))
        elif stage == "stage2":
            yield _stories(parts, rng, data)[0]
        else:
            sequence, targets = _stories(parts, rng, data)
            images, _ = _pictures(parts, targets)
            yield StoryPictureBatch(sequence=sequence, images=images, time_ids=_time_ids(size, len(targets)))
