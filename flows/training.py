"""``train_stage1`` / ``train_stage2`` / ``train_stage3``: one training stage, kept in a store, resumable anywhere.

load config -> done already? (summary.json says max_steps were reached: return it) -> fetch init/shards ->
pull the newest checkpoint -> train (exact resume; checkpoints pushed as they appear) -> push metrics, plot and
final weights -> with ``publish``: gate against the alias, register, maybe promote -> summary.json + artifact.

Run it again with the same ``run_name`` after a crash, a cancellation or on another machine and it continues
from the newest checkpoint in the store (or a newer one left in the local work folder), bit for bit as if it
had never stopped.

Example::

    train_stage2(TrainFlowSettings(config="configs/train/tiny_stage2.yaml", store="s3://models/seed-story",
                                   run_name="tiny", max_steps=30))
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from seed_story.training.store_sync import training_prefix
from seed_story.training.summary import TrainSummary, summary_markdown
from tasks.common import artifact_key
from tasks.training import (
    TrainFlowSettings,
    fetch_inputs_task,
    finished_run_task,
    load_config_task,
    publish_task,
    pull_checkpoint_task,
    push_outputs_task,
    train_task,
    write_summary_task,
)


def _train(stage: str, settings: TrainFlowSettings) -> TrainSummary:
    log = get_run_logger()
    started = time.perf_counter()
    # The scheduled start, not the clock: a retry of Sunday's run on Monday still names the same run.
    run_name = settings.resolved_run_name(flow_run.scheduled_start_time)
    prefix = training_prefix(stage, run_name)

    cfg = load_config_task(settings, stage, prefix)
    done = finished_run_task(settings, prefix, cfg.max_steps)
    if done is not None:
        log.info("%s already reached step %d: nothing to do (final weights %s)", prefix, done.steps, done.final_weights)
        return done
    fetch_inputs_task(settings)
    resumed_from = pull_checkpoint_task(settings, prefix, cfg.output_dir)
    result = train_task(settings, cfg, prefix)
    final = push_outputs_task(settings, cfg, prefix)
    published = publish_task(settings, cfg, result) if settings.publish is not None else None

    store_uri = settings.open_store().uri.rstrip("/")
    summary = TrainSummary(
        stage=stage,
        run_name=run_name,
        store=store_uri,
        prefix=prefix,
        steps=result.steps,
        max_steps=cfg.max_steps,
        resumed_from=resumed_from,
        new_steps=result.steps - (resumed_from or 0),
        final_loss=result.losses[-1] if result.losses else None,
        final_weights=final,
        metrics=f"{store_uri}/{prefix}/metrics.csv",
        seconds=round(time.perf_counter() - started, 3),
        finished_at=datetime.now(UTC),
        model_version=f"{published.name}@{published.version_id}" if published else None,
        promoted=published.promoted if published else None,
        gate=published.decision.reasons if published and published.decision else None,
    )
    write_summary_task(settings, summary)
    create_markdown_artifact(summary_markdown(summary), key=artifact_key("train", stage, run_name),
                             description=f"Training {stage}")  # fmt: skip
    log.info("%s: %d steps (%d new), final loss %s, weights %s", prefix, summary.steps, summary.new_steps,
             summary.final_loss, final)  # fmt: skip
    return summary


@flow(name="train-stage1")
def train_stage1(settings: TrainFlowSettings) -> TrainSummary:
    """Stage 1, de-tokenizer pre-training: reconstruct pictures from the frozen ViT's features."""
    return _train("stage1", settings)


@flow(name="train-stage2")
def train_stage2(settings: TrainFlowSettings) -> TrainSummary:
    """Stage 2, MLLM instruction tuning on interleaved stories (the weekly fine-tune)."""
    return _train("stage2", settings)


@flow(name="train-stage3")
def train_stage3(settings: TrainFlowSettings) -> TrainSummary:
    """Stage 3, de-tokenizer adaptation to the stage-2 MLLM (``init_from``: stage 2's final folder)."""
    return _train("stage3", settings)
