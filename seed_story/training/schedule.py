"""The reference's learning-rate schedule: linear warm-up, then cosine decay to a floor (the release's training
scripts)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def cosine_factor(step: int, *, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate after ``step`` optimiser steps.

    Linear 0 -> 1 over ``warmup_steps``, then ``max(0, 0.5 * ((1 + r) + (1 - r) * cos(pi * progress)))``
    with ``progress`` 0 -> 1 over the remaining steps, so it ends at ``r = min_lr_ratio``.

    Example::

        cosine_factor(100, warmup_steps=100, max_steps=6000, min_lr_ratio=0.05)  # 1.0
    """
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    r = min_lr_ratio
    return max(0.0, 0.5 * ((1.0 + r) + (1.0 - r) * math.cos(math.pi * progress)))


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, max_steps: int, min_lr_ratio: float
) -> LambdaLR:
    """A ``LambdaLR`` stepping :func:`cosine_factor` once per optimiser step."""

    def factor(step: int) -> float:
        return cosine_factor(step, warmup_steps=warmup_steps, max_steps=max_steps, min_lr_ratio=min_lr_ratio)

    return LambdaLR(optimizer, factor)
