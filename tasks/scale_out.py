"""Tasks of the scale-out flow: shard the manifest into the store, then merge what the shards did."""

from __future__ import annotations

from prefect import task

from seed_story.batch.layout import run_prefix, summary_key
from seed_story.batch.manifest import ManifestProblem
from seed_story.batch.records import RunSummary, StoryFailure, now
from seed_story.batch.shards import shard_manifest
from seed_story.batch.sources import load_manifest
from seed_story.config import StrictModel
from seed_story.storage import get_model, key_uri
from tasks.generation import IO_TASK
from tasks.settings import NightlySettings


class ShardPlan(StrictModel):
    """Where the shard manifests are and which stories each holds."""

    shards: list[str]
    story_ids: list[list[str]]
    bad_rows: list[ManifestProblem]
    rows: int


@task(name="shard-manifest", **IO_TASK)
def shard_task(settings: NightlySettings, shards: int) -> ShardPlan:
    """Validate the manifest and write its shards to ``runs/{run_id}/shards/shard-NN.jsonl`` in the store."""
    manifest, _ = load_manifest(settings.manifest, settings.s3)
    store, run_id = settings.open_store(), settings.resolved_run_id()
    uris, ids = [], []
    for i, data in enumerate(shard_manifest(manifest, shards)):
        key = f"{run_prefix(run_id)}/shards/shard-{i:02d}.jsonl"
        store.put_bytes(key, data)
        uris.append(key_uri(store, key))
        ids.append([e.row.story_id for j, e in enumerate(manifest.entries) if j % shards == i])
    return ShardPlan(shards=uris, story_ids=ids, bad_rows=manifest.problems,
                     rows=len(manifest.entries) + len(manifest.problems))  # fmt: skip


@task(name="merge-summaries", **IO_TASK)
def merge_task(
    settings: NightlySettings, plan: ShardPlan, parts: list[str], states: list[str], attempt: str, started: str
) -> RunSummary:
    """One summary of the whole run from the shards' summaries; a shard that left none fails its stories."""
    store, run_id = settings.open_store(), settings.resolved_run_id()
    found: list[RunSummary] = []
    failed: list[StoryFailure] = []
    for part, state, ids in zip(parts, states, plan.story_ids, strict=True):
        key = summary_key(run_id, part)
        if state != "COMPLETED" or not store.exists(key):
            reason = f"shard {part} ended as {state} without a summary"
            failed += [StoryFailure(story_id=s, stage="shard", reason=reason) for s in ids]
        else:
            found.append(get_model(store, key, RunSummary))
    seconds: dict[str, float] = {}
    for s in found:
        for stage, sec in s.seconds.items():
            seconds[f"{stage} (sum over shards)"] = seconds.get(f"{stage} (sum over shards)", 0.0) + sec
    return RunSummary(
        run_id=run_id,
        attempt=attempt,
        manifest=settings.manifest,
        model_version=next((s.model_version for s in found), ""),
        started_at=started,
        finished_at=now(),
        rows=plan.rows,
        bad_rows=plan.bad_rows,
        skipped_finished=[x for s in found for x in s.skipped_finished],
        completed=[x for s in found for x in s.completed],
        failed=[x for s in found for x in s.failed] + failed,
        steps_written=sum(s.steps_written for s in found),
        steps_resumed=sum(s.steps_resumed for s in found),
        pictures_drawn=sum(s.pictures_drawn for s in found),
        seconds=seconds,
    )
