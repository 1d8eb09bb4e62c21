"""Build a stage's networks, data and trainer from a ``TrainConfig``: what ``seed-story train`` calls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from seed_story.checkpoints.native import MANIFEST
from seed_story.components import Components, build_random, load_components
from seed_story.data.shards import as_store
from seed_story.presets import from_preset
from seed_story.tokenizer import load_tokenizer
from seed_story.training.config import PictureData, StoryStreamData, TrainConfig
from seed_story.training.launch import process_state
from seed_story.training.pretrain import VAETask, VisionTask, picture_batches
from seed_story.training.sources import storystream_batches, toy_batches
from seed_story.training.stages import Stage1Task, Stage2Task, Stage3Task, StageTask
from seed_story.training.trainer import Trainer, TrainResult


def build_components(cfg: TrainConfig) -> Components:
    """The starting networks: ``init`` (our checkpoint, or a released folder read at the preset's sizes) or the
    preset at random."""
    if cfg.stage == "stage3" and cfg.init is None:
        raise ValueError("stage 3 adapts the de-tokenizer to a trained MLLM: set init to stage 2's output folder")
    if cfg.init is None:
        parts = build_random(from_preset(cfg.preset), seed=cfg.seed)
        if cfg.tokenizer is not None:
            parts.tokenizer = load_tokenizer(cfg.tokenizer, parts.config.mllm.num_image_tokens)
            if len(parts.tokenizer) != parts.config.mllm.vocab_size:
                raise ValueError(
                    f"tokenizer {cfg.tokenizer} has {len(parts.tokenizer)} tokens; preset {cfg.preset} needs "
                    f"{parts.config.mllm.vocab_size} (base vocabulary + 2 + image tokens)"
                )
    elif cfg.tokenizer is not None:
        raise ValueError("tokenizer applies to a model built from the preset; init brings its own")
    elif (Path(cfg.init) / MANIFEST).is_file():
        if cfg.init_agent == "seedx":
            raise ValueError(f"init_agent: seedx reads a released pretrained/ folder; {cfg.init} is our checkpoint")
        parts = load_components(cfg.init)
    else:  # a released folder, read at the preset's sizes
        # The release starts stage 2 from SEED-X's agent with the stage-1 de-tokenizer, which stage 3 then adapts.
        seedx = {"agent": "seedx", "detokenizer_stage": "pretrained"} if cfg.init_agent == "seedx" else {}
        parts = load_components(cfg.init, cfg=from_preset(cfg.preset), **seedx)
    if cfg.vae_init is not None:
        parts.swap_vae(cfg.vae_init)
    if cfg.detokenizer_init is not None:  # after the VAE: it must have been trained over that one
        parts.swap_detokenizer(cfg.detokenizer_init)
    return parts


def check_data(cfg: TrainConfig) -> None:
    """Refuse a run whose StoryStream shards are missing or empty, before any network is built or loaded."""
    if not isinstance(cfg.data, StoryStreamData):
        return
    try:
        names = as_store(cfg.data.shards).names()
    except FileNotFoundError as err:
        raise ValueError(f"no StoryStream shards for {cfg.stage}: {err}") from err
    if not names:
        raise ValueError(f"no StoryStream shards configured for {cfg.stage}: {cfg.data.shards} holds no "
                         "*.parquet shard (seed-story data ingest-storystream writes them)")  # fmt: skip


def build_task(cfg: TrainConfig, parts: Components | None = None) -> StageTask:
    """The stage's task object over ``parts`` (built from ``cfg`` when not given)."""
    parts = parts if parts is not None else build_components(cfg)
    if cfg.stage == "vision":
        return VisionTask(parts)
    if cfg.stage == "vae":
        return VAETask(parts, kl_weight=cfg.kl_weight)
    if cfg.stage == "stage2":
        return Stage2Task(parts, full_llm=cfg.full_llm, rec_loss_scale=cfg.rec_loss_scale, rec_loss=cfg.rec_loss,
                          gradient_checkpointing=cfg.gradient_checkpointing)  # fmt: skip
    common = dict(full_unet=cfg.full_unet, snr_gamma=cfg.snr_gamma, high_noise_weight=cfg.high_noise_weight,
                  gradient_checkpointing=cfg.gradient_checkpointing)  # fmt: skip
    if cfg.stage == "stage1":
        return Stage1Task(parts, **common)
    return Stage3Task(parts, true_feature_fraction=cfg.true_feature_fraction, **common)


def train(
    cfg: TrainConfig, progress: Callable[[int, int], None] | None = None, sharding: Literal["none", "fsdp"] = "none"
) -> TrainResult:
    """Run (or resume) one stage end to end; returns where the outputs went. ``progress(step, max_steps)`` is
    called on the main process after every optimiser step. ``sharding="fsdp"`` shards the trained module's
    parameters, gradients and optimizer state across the launched processes (torch's ``fully_shard``).

    Example::

        result = train(TrainConfig.for_stage("stage2", output_dir="runs/s2", max_steps=50,
                                             mixed_precision="no", data={"kind": "toy"}))
        result.checkpoint  # runs/s2/final, readable by load_components
    """
    check_data(cfg)
    task = build_task(cfg)
    state = process_state()
    if isinstance(cfg.data, StoryStreamData):
        dataset, loader = storystream_batches(
            cfg.stage, cfg.data, task.parts, cfg.seed, rank=state.process_index, world_size=state.num_processes
        )
        return Trainer(cfg, task, loader, data_state=dataset, progress=progress, sharding=sharding).fit()
    if isinstance(cfg.data, PictureData):
        pictures = picture_batches(cfg.data, task.parts, cfg.seed + state.process_index)
        return Trainer(cfg, task, pictures, progress=progress, sharding=sharding).fit()
    batches = toy_batches(cfg.stage, cfg.data, task.parts, cfg.seed, rank=state.process_index,
                          world_size=state.num_processes)  # fmt: skip
    return Trainer(cfg, task, batches, progress=progress, sharding=sharding).fit()
