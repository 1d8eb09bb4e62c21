"""Build a stage's networks, data and trainer from a ``TrainConfig``: what ``seed-story train`` calls."""

from __future__ import annotations

from accelerate import PartialState

from seed_story.components import Components, build_random, load_components
from seed_story.presets import from_preset
from seed_story.tokenizer import load_tokenizer
from seed_story.training.config import PictureData, StoryStreamData, TrainConfig
from seed_story.training.pretrain import VAETask, VisionTask, picture_batches
from seed_story.training.sources import storystream_batches, toy_batches
from seed_story.training.stages import Stage1Task, Stage2Task, Stage3Task, StageTask
from seed_story.training.trainer import Trainer, TrainResult


def build_components(cfg: TrainConfig) -> Components:
    """The starting networks: ``init`` (native checkpoint or released folder) or the preset at random."""
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
    else:
        parts = load_components(cfg.init)
    if cfg.vae_init is not None:
        parts.swap_vae(cfg.vae_init)
    if cfg.detokenizer_init is not None:  # after the VAE: it must have been trained over that one
        parts.swap_detokenizer(cfg.detokenizer_init)
    return parts


def build_task(cfg: TrainConfig, parts: Components | None = None) -> StageTask:
    """The stage's task object over ``parts`` (built from ``cfg`` when not given)."""
    parts = parts if parts is not None else build_components(cfg)
    if cfg.stage == "vision":
        return VisionTask(parts)
    if cfg.stage == "vae":
        return VAETask(parts, kl_weight=cfg.kl_weight)
    if cfg.stage == "stage2":
        return Stage2Task(parts, full_llm=cfg.full_llm, rec_loss_scale=cfg.rec_loss_scale, rec_loss=cfg.rec_loss)
    common = dict(full_unet=cfg.full_unet, snr_gamma=cfg.snr_gamma, high_noise_weight=cfg.high_noise_weight)
    if cfg.stage == "stage1":
        return Stage1Task(parts, **common)
    return Stage3Task(parts, true_feature_fraction=cfg.true_feature_fraction, **common)


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) one stage end to end; returns where the outputs went.

    Example::

        result = train(TrainConfig.for_stage("stage2", output_dir="runs/s2", max_steps=50,
                                             mixed_precision="no"))
        result.checkpoint  # runs/s2/final, readable by load_components
    """
    task = build_task(cfg)
    state = PartialState()
    if isinstance(cfg.data, StoryStreamData):
        dataset, loader = storystream_batches(
            cfg.stage, cfg.data, task.parts, cfg.seed, rank=state.process_index, world_size=state.num_processes
        )
        return Trainer(cfg, task, loader, data_state=dataset).fit()
    if isinstance(cfg.data, PictureData):
        return Trainer(cfg, task, picture_batches(cfg.data, task.parts, cfg.seed + state.process_index)).fit()
    # Each data-parallel rank draws its own toy stream (StoryStream shards itself across ranks).
    batches = toy_batches(cfg.stage, cfg.data, task.parts, cfg.seed + state.process_index)
    return Trainer(cfg, task, batches).fit()
