"""Batch sources for the trainer: StoryStream Parquet shards, or the toy world of ``seed_story.storyworld.toy``
with its synthetic pictures (``scene_picture``: a background coloured by the place with a centre square coloured
by the animal, so the ViT features, the MLLM's regressed features and the pixels agree).

The toy source is an endless, seeded iterator: the same seed gives the same batches, which is what lets the
trainer resume by skipping the batches it already consumed. The StoryStream source is a ``DataLoader`` over a
``StoryStreamDataset``, which resumes itself from its ``state_dict`` (saved with each checkpoint).
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from seed_story.components import Components
from seed_story.data.dataset import StoryStreamDataset
from seed_story.data.mllm_batch import MLLMBatch
from seed_story.data.sequence import SequenceSettings, collate
from seed_story.storyworld.toy import Scene, sample_story, scene_picture, toy_stories
from seed_story.training.config import StoryStreamData, ToyData


@dataclass
class PictureBatch:
    """Stage-1 input: target pictures in [-1, 1] at the de-tokenizer's size, the same at the ViT's size.

    ``noise_seeds`` (one per picture) seed its latent sample, noise and timestep, so a picture's training
    randomness depends on which picture of the run it is, not on how many processes share the batch.
    """

    images: torch.Tensor
    vit_images: torch.Tensor
    time_ids: torch.Tensor
    noise_seeds: torch.Tensor | None = None


@dataclass
class StoryPictureBatch:
    """Stage-3 input: an interleaved sequence (teacher-forced through the MLLM) and its target pictures."""

    sequence: MLLMBatch
    images: torch.Tensor
    time_ids: torch.Tensor
    noise_seeds: torch.Tensor | None = None


def sd_time_ids(size: int, count: int) -> torch.Tensor:
    """(count, 6) SDXL micro-conditioning: original size, crop top-left, target size (no crop, no resize)."""
    return torch.tensor([[size, size, 0, 0, size, size]] * count, dtype=torch.float32)


def _pictures(parts: Components, scenes: list[Scene]) -> tuple[torch.Tensor, torch.Tensor]:
    size, vit_size = parts.config.detokenizer.image_size, parts.config.vision.image_size
    images = torch.stack([scene_picture(s, size) for s in scenes])
    return images, F.interpolate(images, size=(vit_size, vit_size), mode="bilinear", align_corners=False)


def _stories(
    parts: Components, rng: random.Random, data: ToyData, world_size: int, part: slice
) -> tuple[MLLMBatch, list[Scene]]:
    """This rank's ``part`` of a global batch of ``data.batch_size * world_size`` toy stories, and their targets."""
    length = rng.randint(data.min_scenes, data.max_scenes)  # one length per batch: nothing is padded
    batch, stories = toy_stories(parts, rng, data.batch_size * world_size, length,
                                 supervise_all=data.supervise_all, part=part)  # fmt: skip
    return batch, [st[-1] for st in stories]


def _noise_seeds(seed: int, first: int, count: int) -> torch.Tensor:
    """Seeds of the run's pictures ``first .. first + count - 1`` (a global index, the same in any process count)."""
    return torch.arange(first, first + count, dtype=torch.int64) + (seed << 32)


def toy_batches(
    stage: str, data: ToyData, parts: Components, seed: int, *, rank: int = 0, world_size: int = 1
) -> Iterator[object]:
    """Endless toy batches for ``stage``, the same sequence for the same seed.

    Every rank draws the global batch of ``data.batch_size * world_size`` samples and keeps its own
    ``data.batch_size``: the processes of a data-parallel run together see what one process would with the
    global batch, and no sample twice.

    Example::

        batches = toy_batches("stage2", ToyData(batch_size=4), build_random(cfg), seed=0)
        next(batches).input_ids.shape
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    rng = random.Random(seed)
    size, per_rank = parts.config.detokenizer.image_size, data.batch_size
    part = slice(rank * per_rank, (rank + 1) * per_rank)
    for number in itertools.count():
        seeds = _noise_seeds(seed, number * per_rank * world_size + rank * per_rank, per_rank)
        if stage == "stage1":
            scenes = [sample_story(rng, 1)[0] for _ in range(per_rank * world_size)][part]
            images, vit_images = _pictures(parts, scenes)
            yield PictureBatch(images=images, vit_images=vit_images, time_ids=sd_time_ids(size, len(scenes)),
                               noise_seeds=seeds)  # fmt: skip
        elif stage == "stage2":
            yield _stories(parts, rng, data, world_size, part)[0]
        else:
            sequence, targets = _stories(parts, rng, data, world_size, part)
            images, _ = _pictures(parts, targets)
            yield StoryPictureBatch(sequence=sequence, images=images, time_ids=sd_time_ids(size, len(targets)),
                                    noise_seeds=seeds)  # fmt: skip


def storystream_settings(stage: str, data: StoryStreamData, parts: Components) -> SequenceSettings:
    """Sequence settings of ``data`` for ``stage``, sizes from the model preset unless ``data`` gives them.

    Stages 1 and 3 also get each target's SD pixels and keep the ViT pictures' aspect ratio (resize +
    centre crop, as the reference's stage-3 ViT transform), so the ViT and the de-tokenizer see one crop.
    """
    pictures = stage != "stage2"
    return SequenceSettings(
        max_length=data.max_length,
        pad_to_max_length=data.pad_to_max_length,
        num_image_tokens=parts.config.mllm.num_image_tokens,
        image_size=data.image_size or parts.config.vision.image_size,
        keep_ratio=pictures,
        sd_size=(data.sd_size or parts.config.detokenizer.image_size) if pictures else None,
        swap_crop_offsets=data.swap_crop_offsets,
        min_resolution=data.min_resolution,
        min_aspect_ratio=data.min_aspect_ratio,
        caption_generation=data.caption_generation,
    )


def storystream_batches(
    stage: str, data: StoryStreamData, parts: Components, seed: int, *, rank: int = 0, world_size: int = 1
) -> tuple[StoryStreamDataset, DataLoader]:
    """This rank's dataset (for ``observe``/``state_dict``) and the loader of its ``TrainBatch`` batches.

    Example::

        dataset, loader = storystream_batches("stage2", cfg.data, parts, cfg.seed, rank=acc.process_index,
                                              world_size=acc.num_processes)
    """
    settings = storystream_settings(stage, data, parts)
    dataset = StoryStreamDataset(
        data.shards,
        parts.tokenizer,
        settings,
        rank=rank,
        world_size=world_size,
        seed=seed if data.seed is None else data.seed,
        epochs=data.epochs,
    )
    pad_to = settings.max_length if settings.pad_to_max_length else None
    pad = functools.partial(collate, pad_token_id=parts.tokenizer.pad_token_id, pad_to=pad_to)
    loader = DataLoader(dataset, batch_size=data.batch_size, num_workers=data.num_workers, collate_fn=pad)
    return dataset, loader
