"""Tasks of the scale-out flow: shard the manifest into the store, then merge what the shards did."""

from __future__ import annotations

from prefect import task

from seed_story.batch.shards import ShardPlan, write_manifest_shards
from seed_story.batch.sources import load_manifest
from seed_story.batch.summary import merge_summaries
from seed_story.runstore.records import RunSummary
from tasks.common import IO_TASK
from tasks.settings import NightlySettings


@task(name="shard-manifest", **IO_TASK)
def shard_task(settings: NightlySettings, shards: int) -> ShardPlan:
    """Validate the manifest and write its shards to ``runs/{run_id}/shards/shard-NN.jsonl`` in the store."""
    manifest, _ = load_manifest(settings.manifest, settings.s3, settings.image_roots, settings.limits)
    return write_manifest_shards(settings.open_store(), manifest, settings.resolved_run_id(), shards)


@task(name="merge-summaries", **IO_TASK)
def merge_task(
    settings: NightlySettings, plan: ShardPlan, parts: list[str], states: list[str], attempt: str, started: str
) -> RunSummary:
    """One summary of the whole run from the shards' summaries; a shard that left none fails its stories."""
    return merge_summaries(settings.open_store(), plan, parts, states, run_id=settings.resolved_run_id(),
                           attempt=attempt, manifest=settings.manifest, started=started)  # fmt: skip
