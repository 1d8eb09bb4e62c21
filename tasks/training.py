"""Tasks of the training flows: a run lives in the store, its work happens in a local folder.

Everything a run keeps is under ``training/{stage}/{run_name}/`` in the store::

    checkpoints/checkpoint-{step}/   resumable state; trainer_state.json is put last, so it marks a whole copy
    metrics.jsonl, metrics.csv       one row per optimiser step (only complete lines while training runs)
    loss.png, final/                 the loss plot and the native checkpoint (seed_story.json put last)
    train_config.json                the resolved TrainConfig (with the local paths of the machine that ran it)
    summary.json                     ``TrainSummary``, written once the run reached ``max_steps``

The trainer resumes exactly from the newest checkpoint in its local output folder; ``pull_checkpoint_task`` puts
the store's newest one there first, so any machine can continue a run that another one started.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import Field, field_validator

from seed_story.checkpoints.native import MANIFEST
from seed_story.storage import ObjectNotFound, ObjectStore, check_key, get_model, join_key, key_uri, put_model
from seed_story.training import TrainConfig, TrainResult, load_train_config
from seed_story.training.config import data_values
from seed_story.training.launch import LaunchSettings, run_launched
from seed_story.training.publish import PublishResult, PublishTarget, publish_run
from seed_story.training.store_sync import (
    CheckpointPusher,
    mirror,
    pull_checkpoint,
    push_folder,
    push_metrics,
    sync_checkpoints,
)
from seed_story.training.summary import TrainSummary
from tasks.common import GPU_TAG, IO_TASK, StoreSettings

SUMMARY = "summary.json"
_RUN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class TrainFlowSettings(StoreSettings):
    """One training run: which config, which store keeps the run, where the machine works.

    Example (deployment parameters)::

        settings: {config: configs/train/george_stage2.yaml, store: s3://models/seed-story, run_name: george-w48}
    """

    config: str = Field(description="training config YAML/JSON, relative to the repo root (configs/train/...)")
    run_name: str | None = Field(
        None, pattern=_RUN_NAME, description="default: <config stem>-<ISO week of the scheduled start>, e.g. "
        "george_stage2-2026-W48, so a rerun in the same week resumes; set it to continue a run across weeks",
    )  # fmt: skip
    max_steps: int | None = Field(None, gt=0, description="override the config's max_steps")
    save_every: int | None = Field(None, gt=0, description="override the config's save_every (checkpoint interval)")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="other TrainConfig keys, e.g. {learning_rate: 5e-5, data: {batch_size: 8}} "
        "(data keys are merged into the file's data unless they name another kind)",
    )  # fmt: skip
    init_from: str | None = Field(None, description="store prefix of a final checkpoint (training/stage2/r1/final)")
    shards_from: str | None = Field(None, description="store prefix of StoryStream shards (ingest-storystream)")
    work_dir: str = Field("work", description="local folder for checkpoints, downloads and the trainer's outputs")
    sync_every_s: float = Field(60.0, gt=0, description="how often new checkpoints are pushed while training runs")
    publish: PublishTarget | None = Field(
        None, description="after training: gate against the alias, register in the store's models/, maybe promote"
    )
    model_cache: str = Field("~/.cache/seed-story/models", description="where the production version is fetched")
    launch: LaunchSettings = Field(
        default_factory=LaunchSettings,
        description="processes (default: one per visible GPU), machines, sharding (none = DDP, fsdp, zero2)",
    )

    @field_validator("init_from", "shards_from")
    @classmethod
    def _key_prefix(cls, value: str | None) -> str | None:
        return None if value is None else check_key(value.strip("/"))

    def resolved_run_name(self, when: datetime | None = None) -> str:
        if self.run_name:
            return self.run_name
        year, week, _ = (when or datetime.now(UTC)).isocalendar()
        return f"{Path(self.config).stem}-{year}-W{week:02d}"

    def input_folder(self, store: ObjectStore, prefix: str) -> Path:
        """Where the objects under ``prefix`` are read from: a local store's own folder, else a download folder."""
        return store.local_path(prefix) or Path(self.work_dir) / "inputs" / prefix


@task(name="load-train-config", cache_policy=NO_CACHE)
def load_config_task(settings: TrainFlowSettings, stage: str, prefix: str) -> TrainConfig:
    """The config file's stage defaults and keys, the overrides, and local paths: output, init, shards."""
    store = settings.open_store()
    values: dict[str, Any] = {**settings.overrides, "resume": True}
    values["output_dir"] = str(Path(settings.work_dir) / prefix)
    values |= {k: v for k in ("max_steps", "save_every") if (v := getattr(settings, k)) is not None}
    if settings.init_from:
        values["init"] = str(settings.input_folder(store, settings.init_from))
    if "data" in settings.overrides or settings.shards_from:
        values["data"] = data_values(settings.config, settings.overrides.get("data"))
    if settings.shards_from:
        if values["data"].get("kind") != "storystream":
            raise ValueError(f"shards_from needs a storystream data source; {settings.config} has {values['data']}")
        values["data"]["shards"] = str(settings.input_folder(store, settings.shards_from))
    return load_train_config(settings.config, stage, **values)


@task(name="finished-run", **IO_TASK)
def finished_run_task(settings: TrainFlowSettings, prefix: str, max_steps: int) -> TrainSummary | None:
    """The stored summary if the run already reached ``max_steps`` (nothing left to do), else None."""
    store = settings.open_store()
    try:
        summary = get_model(store, join_key(prefix, SUMMARY), TrainSummary)
    except ObjectNotFound:
        return None
    done = summary.steps >= max_steps and store.exists(join_key(prefix, "final", MANIFEST))
    return summary if done else None


@task(name="fetch-inputs", **IO_TASK)
def fetch_inputs_task(settings: TrainFlowSettings) -> int:
    """Download ``init_from`` and ``shards_from`` where the config expects them; returns the files fetched."""
    store = settings.open_store()
    prefixes = [p for p in (settings.init_from, settings.shards_from) if p]
    return sum(mirror(store, p, settings.input_folder(store, p)) for p in prefixes)


@task(name="pull-checkpoint", **IO_TASK)
def pull_checkpoint_task(settings: TrainFlowSettings, prefix: str, output_dir: str) -> int | None:
    """Bring the run's newest checkpoint from the store (if newer than the local one); returns its step."""
    step = pull_checkpoint(settings.open_store(), prefix, Path(output_dir))
    if step is not None:
        get_run_logger().info("resuming %s from step %d", prefix, step)
    return step


@task(name="train", tags=[GPU_TAG], cache_policy=NO_CACHE)
def train_task(settings: TrainFlowSettings, cfg: TrainConfig, prefix: str) -> TrainResult:
    """Launch the trainer's processes (exact resume from the newest local checkpoint), their log lines streamed
    into this task's log, pushing checkpoints as they appear; a failed launch fails the task with its log's tail."""
    store, log, launch = settings.open_store(), get_run_logger(), settings.launch
    log.info("%s: %d process(es) on each of %d machine(s), sharding %s", prefix, launch.local_processes(),
             launch.machines, launch.sharding)  # fmt: skip
    with CheckpointPusher(store, Path(cfg.output_dir), prefix, cfg.keep_checkpoints, settings.sync_every_s, log):
        return run_launched(cfg, launch, on_line=log.info)


@task(name="push-outputs", **IO_TASK)
def push_outputs_task(settings: TrainFlowSettings, cfg: TrainConfig, prefix: str) -> str:
    """Push what the store still lacks: checkpoints, metrics, plot, final weights (manifest last); returns the
    final checkpoint's URI."""
    store, out = settings.open_store(), Path(cfg.output_dir)
    sync_checkpoints(store, out, prefix, cfg.keep_checkpoints)
    push_metrics(store, out, prefix)
    if (out / "loss.png").is_file():
        store.put_file(join_key(prefix, "loss.png"), out / "loss.png")
    final = join_key(prefix, "final")
    if not push_folder(store, out / "final", final, last=MANIFEST):
        raise FileNotFoundError(f"the trainer wrote no final checkpoint in {out / 'final'}")
    put_model(store, join_key(prefix, "train_config.json"), cfg)
    return key_uri(store, final)


@task(name="publish", tags=[GPU_TAG], cache_policy=NO_CACHE)
def publish_task(settings: TrainFlowSettings, cfg: TrainConfig, result: TrainResult) -> PublishResult:
    """Gate the run's final weights against the alias, register them, promote them if the gate passed."""
    assert settings.publish is not None
    by = f"flow-run/{flow_run.get_id()}" if flow_run.get_id() else "seed-story"
    published = publish_run(settings.open_store(), Path(result.checkpoint), cfg, settings.publish, by=by,
                            cache_dir=Path(settings.model_cache).expanduser(),
                            metrics={"final_loss": result.losses[-1]} if result.losses else None)  # fmt: skip
    log = get_run_logger()
    if published.decision is not None:
        log.info(
            "gate %s: %s", "passed" if published.decision.passed else "failed", "; ".join(published.decision.reasons)
        )
    log.info("registered %s@%s; %s %s", published.name, published.version_id,
             settings.publish.alias, "moved to it" if published.promoted else "unchanged")  # fmt: skip
    return published


@task(name="write-train-summary", **IO_TASK)
def write_summary_task(settings: TrainFlowSettings, summary: TrainSummary) -> str:
    store = settings.open_store()
    put_model(store, key := join_key(summary.prefix, SUMMARY), summary)
    return key_uri(store, key)
