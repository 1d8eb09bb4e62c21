"""The de-tokenizer's noise schedule, built from one ``SchedulerConfig``: Euler to draw, DDPM to train.

A property of the model (its betas and prediction type), so it sits with the networks: drawing
(:mod:`seed_story.generation.drawer`) and training both build from here.
"""

from __future__ import annotations

from diffusers import DDPMScheduler, EulerDiscreteScheduler

from seed_story.config import SchedulerConfig


def build_scheduler(cfg: SchedulerConfig) -> EulerDiscreteScheduler:
    """The inference scheduler (Euler, as the reference)."""
    return EulerDiscreteScheduler(**cfg.to_diffusers())


def build_noise_scheduler(cfg: SchedulerConfig) -> DDPMScheduler:
    """The training noise scheduler: DDPM with the inference scheduler's betas and prediction type."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        timestep_spacing=cfg.timestep_spacing,
        steps_offset=cfg.steps_offset,
    )
