"""Tasks of the ingest flow: StoryStream jsonl + images -> Parquet shards under a store prefix.

A local store gets the shards written straight into its folder (each shard is renamed into place whole); a
remote one gets them written to a local staging folder first, then uploaded with ``ingest-report.json`` last.
Shards of an earlier, larger ingest that the new one did not rewrite are deleted, so readers of the prefix
see exactly the new dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field, field_validator

from seed_story.data.ingest import expand_jsonl, ingest_storystream, publish_shards
from seed_story.data.storystream import IngestReport
from seed_story.storage import ObjectStore, check_key
from tasks.common import IO_TASK, StoreSettings


class IngestSettings(StoreSettings):
    """Which StoryStream release to read and where its shards go.

    Example (deployment parameters)::

        settings: {jsonl: ["/data/StoryStream/george/*.jsonl"], image_dir: /data/StoryStream/image/george_full,
                   store: s3://datasets/seed-story, prefix: storystream/george}
    """

    jsonl: list[str] = Field(description="jsonl files or globs ('**' allowed) on the worker's disk")
    image_dir: str = Field(description="the release's image folder on the worker's disk")
    allowed_roots: list[str] = Field(
        default_factory=list, description="folders besides image_dir that image paths may lead into (absolute ones)"
    )
    prefix: str = Field("datasets/storystream", description="key prefix of the shards (training's shards_from)")
    chunk_length: int = Field(10, ge=2, description="pictures per chunk (reference: 10)")
    shard_size: int = Field(1000, ge=1, description="chunks per shard")
    row_group_size: int = Field(32, ge=1, description="chunks per row group")
    work_dir: str = Field("work", description="local staging folder for shards bound to a remote store")

    @field_validator("jsonl", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        return check_key(value.strip("/"))

    def shard_folder(self, store: ObjectStore) -> Path:
        """Where the shards are written: a local store's own folder, else a staging folder."""
        return store.local_path(self.prefix) or Path(self.work_dir) / "ingest" / self.prefix


@task(name="ingest-shards", cache_policy=NO_CACHE)
def ingest_task(settings: IngestSettings) -> IngestReport:
    """Validate, chunk and write every story into the shard folder (bad lines are reported, not fatal)."""
    files = expand_jsonl(settings.jsonl)
    if not files:
        raise FileNotFoundError(f"no jsonl file matches {settings.jsonl}")
    store = settings.open_store()
    folder = settings.shard_folder(store)
    if store.local_path(settings.prefix) is None:
        shutil.rmtree(folder, ignore_errors=True)  # a staging folder holds this ingest only
    report = ingest_storystream(files, settings.image_dir, folder, chunk_length=settings.chunk_length,
                                shard_size=settings.shard_size, row_group_size=settings.row_group_size,
                                allowed_roots=settings.allowed_roots)  # fmt: skip
    get_run_logger().info("%d files, %d stories -> %d chunks in %d shards; skipped: %s", report.files,
                          report.stories, report.chunks_written, len(report.shards), report.counts())  # fmt: skip
    return report


@task(name="publish-shards", **IO_TASK)
def publish_task(settings: IngestSettings, report: IngestReport) -> list[str]:
    """Upload the shards (report last) unless they are already in the store; delete shards the report does not
    name; returns the store keys of the shards."""
    store = settings.open_store()
    folder = settings.shard_folder(store)
    keys, stale = publish_shards(store, folder, report, settings.prefix)
    if stale:
        get_run_logger().info("deleted %d shards of an earlier ingest", stale)
    if store.local_path(settings.prefix) is None:
        shutil.rmtree(folder, ignore_errors=True)
    return keys
