"""Tasks of the nightly generation flow. GPU tasks carry the ``gpu`` tag (a tag concurrency limit caps how many
run at once on a worker) and share one model per worker process (:func:`seed_story.batch.pipelines.load_model`),
each holding the half it uses. They pass records and store keys, never tensors.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from seed_story.batch.drawing import DrawItem, DrawReport, draw_chunks, draw_items
from seed_story.batch.finishing import export_storystream, finish_stories
from seed_story.batch.leases import FencedStore
from seed_story.batch.manifest import Manifest
from seed_story.batch.model_pin import pinned_model
from seed_story.batch.openings import encode_openings
from seed_story.batch.pipelines import ModelSpec, load_model
from seed_story.batch.planning import RunPlan, plan_run
from seed_story.batch.progress import count_progress
from seed_story.batch.sources import load_manifest
from seed_story.batch.streaming import write_and_draw
from seed_story.batch.writing import WriteReport
from seed_story.render.run import RunReport, render_run
from seed_story.runstore.records import StoryFailure, StoryPlan
from tasks.common import GPU_TAG, IO_TASK
from tasks.settings import NightlySettings


@task(name="read-manifest", **IO_TASK)
def read_manifest_task(settings: NightlySettings) -> tuple[Manifest, bytes]:
    """Read and validate the manifest (bad rows are reported, duplicate ids raise before any work)."""
    manifest, data = load_manifest(settings.manifest, settings.s3, settings.image_roots, settings.limits)
    for problem in manifest.problems:
        get_run_logger().warning("manifest line %d skipped: %s", problem.line, problem.reason)
    return manifest, data


@task(name="pin-model", **IO_TASK)
def pin_model_task(settings: NightlySettings) -> tuple[ModelSpec, str]:
    """The model the run uses: a folder as given, or the registry version pinned to the run, fetched locally."""
    spec, version = pinned_model(settings.open_store(), settings.resolved_run_id(), settings.model,
                                 settings.open_registry_store(), Path(settings.model_cache))  # fmt: skip
    get_run_logger().info("model %s", version)
    return spec, version


def story_store(settings: NightlySettings, attempt: str) -> FencedStore:
    """The run's store as this attempt's writers see it: writes into a story it lost to another run refused."""
    return FencedStore(settings.open_store(), settings.resolved_run_id(), attempt)


@task(name="plan-run", **IO_TASK)
def plan_task(settings: NightlySettings, manifest: Manifest, data: bytes, version: str, attempt: str) -> RunPlan:
    """Plan the run and claim a lease on every story this attempt will work on."""
    return plan_run(settings.open_store(), manifest, data, settings.resolved_run_id(), settings.model, version,
                    lease=(attempt, settings.lease_seconds))  # fmt: skip


@task(name="tokenizer", tags=[GPU_TAG], **IO_TASK)
def tokenizer_task(settings: NightlySettings, plans: list[StoryPlan], attempt: str) -> list[StoryFailure]:
    """ViT-encode a micro-batch of opening pictures into the store."""
    with load_model(settings.model).use("writer") as pipeline:
        return encode_openings(story_store(settings, attempt), plans, pipeline, settings.s3, settings.limits)


@task(name="mllm", tags=[GPU_TAG], **IO_TASK)
def mllm_task(settings: NightlySettings, plans: list[StoryPlan], attempt: str) -> tuple[WriteReport, DrawReport]:
    """Write a micro-batch of stories (text + regressed features per step), persisting every step; where the model
    draws while it writes, each step's picture is drawn alongside as soon as the step is stored."""
    run, part = settings.resolved_run_id(), settings.part
    report, drawn = write_and_draw(story_store(settings, attempt), load_model(settings.model), plans, attempt,
                                   settings.draw_batch_size, settings.limits,
                                   on_drawn=lambda n: count_progress(run, part, pictures=n))  # fmt: skip
    count_progress(run, part, steps=report.written)
    get_run_logger().info("wrote %d steps (%d resumed from the store), drew %d pictures alongside", report.written,
                          report.resumed, drawn.drawn)  # fmt: skip
    return report, drawn


@task(name="list-draws", **IO_TASK)
def list_draws_task(settings: NightlySettings, batches: list[list[StoryPlan]]) -> list[list[DrawItem]]:
    return draw_chunks(settings.open_store(), batches, settings.draw_batch_size)


@task(name="detokenizer", tags=[GPU_TAG], **IO_TASK)
def detokenizer_task(settings: NightlySettings, items: list[DrawItem], attempt: str) -> DrawReport:
    """Draw a chunk of stored feature sets (from any stories) into pictures."""
    with load_model(settings.model).use("drawer") as pipeline:
        report = draw_items(story_store(settings, attempt), items, pipeline, attempt)
    count_progress(settings.resolved_run_id(), settings.part, pictures=report.drawn)
    return report


@task(name="finish-stories", **IO_TASK)
def finish_task(
    settings: NightlySettings, plans: list[StoryPlan], failures: list[StoryFailure], attempt: str
) -> tuple[list[str], list[StoryFailure]]:
    """Write sequence + story.json of every finished story; mark failed ones; report the rest as unfinished."""
    completed, failed = finish_stories(story_store(settings, attempt), plans, failures)
    count_progress(settings.resolved_run_id(), settings.part, stories=len(completed))
    return completed, failed


@task(name="render-books", **IO_TASK)
def render_task(settings: NightlySettings) -> RunReport | None:
    if settings.render is None:
        return None
    r = settings.render
    return render_run(settings.open_store(), settings.resolved_run_id(), r.formats, r.print_settings,
                      self_contained=r.self_contained)  # fmt: skip


@task(name="export-storystream", **IO_TASK)
def export_task(settings: NightlySettings) -> tuple[str, int]:
    return export_storystream(settings.open_store(), settings.resolved_run_id())
