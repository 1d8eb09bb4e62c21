"""The evaluation gate between a fine-tune and production: held-out loss of both models, one rule, one decision.

Both models are scored on the same held-out StoryStream shards, never trained on (a deterministic pass: the
first ``batches`` batches of one epoch in shard order, the same seed for both), with the stage-2 objective the
model was trained with, teacher-forced and without gradients: next-token cross-entropy, the image regression
loss and their weighted sum. Lower is better. A story-world model's shards are StoryStream shards too, so the
same gate serves SEED-Story-Mini.

The rule: the candidate passes when, on every metric named, it is no worse than production by more than
``margin`` (relative): ``candidate <= production * (1 + margin)``. With no production yet it passes.

Example::

    gate = GateConfig(data={"kind": "storystream", "shards": "shards/heldout"}, batches=8)
    decision = decide(gate, candidate_dir, production_dir, candidate="3f2a...", production="91c0...")
    decision.passed, decision.reasons
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import torch

from seed_story.components import load_components
from seed_story.config import StrictModel
from seed_story.training.config import GateConfig
from seed_story.training.sources import storystream_batches
from seed_story.training.stages import Stage2Task

METRICS = ("heldout_loss", "heldout_lm_loss", "heldout_rec_loss")


class GateDecision(StrictModel):
    """What the gate decided, with both sets of numbers: kept in the candidate's version and an artifact."""

    candidate: str
    production: str | None
    candidate_metrics: dict[str, float]
    production_metrics: dict[str, float] | None
    margin: float
    metrics: list[str]
    passed: bool
    reasons: list[str]
    at: datetime


@torch.no_grad()
def heldout_metrics(model_dir: str | Path, gate: GateConfig) -> dict[str, float]:
    """Mean stage-2 losses of the checkpoint in ``model_dir`` over the gate's held-out batches (weighted by
    sequences), and how many sequences were scored."""
    parts = load_components(model_dir)
    task = Stage2Task(parts)  # the model's own objective (its config's loss scales and regression loss)
    task.module.eval()
    data = gate.data.model_copy(update={"epochs": 1, "num_workers": 0})  # one pass, in one order
    _, loader = storystream_batches("stage2", data, parts, seed=0)
    sums = dict.fromkeys(METRICS, 0.0)
    sequences = 0
    for number, batch in enumerate(loader):
        if number == gate.batches:
            break
        losses = task.loss(task.module, batch)
        size = int(batch.input_ids.shape[0])
        for metric, key in zip(METRICS, ("loss", "lm_loss", "rec_loss"), strict=True):
            sums[metric] += float(losses[key]) * size
        sequences += size
    if sequences == 0:
        raise ValueError(f"the held-out set {gate.data.shards} gave no sequence to score (all filtered out?)")
    return {**{k: v / sequences for k, v in sums.items()}, "heldout_sequences": float(sequences)}


def judge(
    gate: GateConfig,
    candidate: str,
    candidate_metrics: dict[str, float],
    production: str | None,
    production_metrics: dict[str, float] | None,
) -> GateDecision:
    """Apply the rule to metrics already measured."""
    reasons, passed = [], True
    if production is None or production_metrics is None:
        reasons.append("no production version yet")
    else:
        for metric in gate.metrics:
            ours, theirs = candidate_metrics[metric], production_metrics[metric]
            limit = theirs * (1 + gate.margin)
            ok = ours <= limit
            passed &= ok
            reasons.append(f"{metric} {ours:.4f} {'<=' if ok else '>'} {limit:.4f} (production {theirs:.4f})")
    return GateDecision(candidate=candidate, production=production, candidate_metrics=candidate_metrics,
                        production_metrics=production_metrics, margin=gate.margin, metrics=gate.metrics,
                        passed=passed, reasons=reasons, at=datetime.now(UTC))  # fmt: skip


def decide(
    gate: GateConfig,
    candidate_dir: str | Path,
    production_dir: str | Path | None,
    *,
    candidate: str,
    production: str | None,
) -> GateDecision:
    """Score both models on the held-out set and apply the rule (production ``None``: nothing to beat)."""
    unknown = set(gate.metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown gate metrics {sorted(unknown)}; known: {list(METRICS)}")
    ours = heldout_metrics(candidate_dir, gate)
    theirs = heldout_metrics(production_dir, gate) if production_dir is not None else None
    return judge(gate, candidate, ours, production if theirs is not None else None, theirs)
