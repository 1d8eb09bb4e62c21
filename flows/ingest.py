"""``ingest_storystream``: a StoryStream release (jsonl + images) in, Parquet shards under a store prefix out.

ingest (validate, chunk, write shards locally or straight into a local store) -> publish (upload, report last;
delete stale shards) -> markdown artifact with the counts. The shards are what ``train-stage*`` reads with
``shards_from: <prefix>``.

Example::

    ingest_storystream(IngestSettings(jsonl=["george/*.jsonl"], image_dir="image/george_full",
                                      store="s3://datasets/seed-story", prefix="storystream/george"))
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from seed_story.data.ingest import report_markdown
from seed_story.data.storystream import IngestReport
from tasks.common import artifact_key
from tasks.ingest import IngestSettings, ingest_task, publish_task


@flow(name="ingest-storystream")
def ingest_storystream(settings: IngestSettings) -> IngestReport:
    """Turn a StoryStream release into Parquet shards in ``settings.store`` under ``settings.prefix``."""
    report = ingest_task(settings)
    publish_task(settings, report)
    where = f"{settings.open_store().uri.rstrip('/')}/{settings.prefix}"
    key = artifact_key("ingest", settings.prefix)
    create_markdown_artifact(report_markdown(report, where), key=key, description="StoryStream ingest")
    return report
