"""The evaluation gate between a fine-tune and production: both models scored the same way, one rule, one decision.

Two sources of metrics, each named in the config (``GateConfig``):

* ``heldout_*``: both models on the same held-out StoryStream shards, never trained on (a deterministic pass: the
  first ``batches`` batches of one epoch in shard order), with the stage-2 objective the model was trained with,
  teacher-forced and without gradients: next-token cross-entropy, the image regression loss and their weighted
  sum. Lower is better. Any StoryStream model, SEED-Story-Mini included.
* ``judge_*``: a story-world model (SEED-Story-Mini) illustrates the true captions of held-out story-world
  stories from their true openings; the story-world judge reads the pictures back: ``judge_reconstruction``
  (frames showing the true scene and cast), ``judge_character_consistency``, ``judge_cast_accuracy``,
  ``judge_scene_accuracy``, ``judge_style_consistency``, ``judge_text_image_agreement``. Higher is better. Same
  stories, same seeds, same denoising steps for both models.

The rule: the candidate passes when, on every metric named, it is no worse than production by more than
``margin`` (relative): ``candidate <= production * (1 + margin)`` for a loss, ``candidate >= production *
(1 - margin)`` for a score. With no production yet it passes.

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
from seed_story.storyworld.judge.metrics import Ratio
from seed_story.training.config import GateConfig
from seed_story.training.sources import storystream_batches
from seed_story.training.stages import Stage2Task

HELDOUT = ("heldout_loss", "heldout_lm_loss", "heldout_rec_loss")
JUDGED = ("character_consistency", "cast_accuracy", "scene_accuracy", "style_consistency", "text_image_agreement")
JUDGE = ("judge_reconstruction", *(f"judge_{m}" for m in JUDGED))
METRICS = HELDOUT + JUDGE


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
    if gate.data is None:
        raise ValueError("gate.data is not configured")
    parts = load_components(model_dir)
    task = Stage2Task(parts)  # the model's own objective (its config's loss scales and regression loss)
    task.module.eval()
    data = gate.data.model_copy(update={"epochs": 1, "num_workers": 0})  # one pass, in one order
    _, loader = storystream_batches("stage2", data, parts, seed=0)
    sums = dict.fromkeys(HELDOUT, 0.0)
    sequences = 0
    for number, batch in enumerate(loader):
        if number == gate.batches:
            break
        losses = task.loss(task.module, batch)
        size = int(batch.input_ids.shape[0])
        for metric, key in zip(HELDOUT, ("loss", "lm_loss", "rec_loss"), strict=True):
            sums[metric] += float(losses[key]) * size
        sequences += size
    if sequences == 0:
        raise ValueError(f"the held-out set {data.shards} gave no sequence to score (all filtered out?)")
    return {**{k: v / sequences for k, v in sums.items()}, "heldout_sequences": float(sequences)}


def judge_metrics(model_dir: str | Path, gate: GateConfig) -> dict[str, float]:
    """The judge's scores of the model in ``model_dir`` illustrating the gate's held-out story-world stories."""
    from seed_story.generation.pipeline import StoryPipeline  # the drawing half: only story-world gates need it
    from seed_story.generation.settings import DrawSettings
    from seed_story.storyworld.judge.baselines import evaluate_conditions

    if gate.judge is None:
        raise ValueError("gate.judge is not configured")
    spec = gate.judge
    draw = DrawSettings(num_inference_steps=spec.draw_steps, guidance_scale=spec.guidance)
    pipe = StoryPipeline(load_components(model_dir), draw_settings=draw)
    torch.manual_seed(0)
    (result,) = evaluate_conditions(
        pipe, world_seed=spec.world_seed, stories=spec.stories, steps=spec.steps, conditions=("story",)
    )
    scores = {f"judge_{m}": _score(getattr(result.scores, m)) for m in JUDGED}
    return {"judge_reconstruction": float(result.reconstruction or 0.0), **scores,
            "judge_frames": float(result.scores.frames)}  # fmt: skip


def _score(value: Ratio | float) -> float:
    if isinstance(value, Ratio):  # nothing to count (e.g. no two-character frame) is no failure
        return 1.0 if value.value is None else value.value
    return float(value)


def measure(model_dir: str | Path, gate: GateConfig) -> dict[str, float]:
    """Every metric the gate's sources give (a source is used only when configured)."""
    found: dict[str, float] = {}
    if gate.data is not None:
        found |= heldout_metrics(model_dir, gate)
    if gate.judge is not None:
        found |= judge_metrics(model_dir, gate)
    return found


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
            if metric in HELDOUT:  # a loss: lower is better
                limit, ok = theirs * (1 + gate.margin), ours <= theirs * (1 + gate.margin)
                sign = "<=" if ok else ">"
            else:  # a judge score: higher is better
                limit, ok = theirs * (1 - gate.margin), ours >= theirs * (1 - gate.margin)
                sign = ">=" if ok else "<"
            passed &= ok
            reasons.append(f"{metric} {ours:.4f} {sign} {limit:.4f} (production {theirs:.4f})")
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
    ours = measure(candidate_dir, gate)
    theirs = measure(production_dir, gate) if production_dir is not None else None
    return judge(gate, candidate, ours, production if theirs is not None else None, theirs)
