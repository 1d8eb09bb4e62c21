"""``nightly_generation``: a manifest of story prompts in, stored story sequences and storybooks out.

read + validate manifest -> pin the model (a models:// alias is resolved once per run) -> plan (skip finished
stories, lease the rest: stories another live attempt holds are left to it) -> tokenizer (openings, mapped
over micro-batches) -> MLLM (stories in micro-batches, every step persisted; where the model draws alongside,
a GPU by default, each step's picture is drawn as soon as the step is stored) -> de-tokenizer (the stored
feature sets still undrawn: all of them on a CPU or with ``memory: low``, else those of steps an earlier attempt
wrote) -> finish (sequence.parquet + story.json) -> render books -> export -> summary + artifact.

A crash anywhere resumes on the next run with the same ``run_id``: finished stories are skipped, written steps
are replayed rather than decoded again, drawn pictures are kept.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from seed_story.batch.drawing import DrawReport
from seed_story.batch.leases import LeaseKeeper
from seed_story.batch.progress import ProgressPublisher
from seed_story.batch.summary import summary_markdown
from seed_story.batch.writing import WriteReport
from seed_story.runstore.keys import RunKeys
from seed_story.runstore.records import RunSummary, StoryFailure, StoryPlan, now
from seed_story.storage import put_model
from tasks.common import artifact_key
from tasks.generation import (
    detokenizer_task,
    export_task,
    finish_task,
    list_draws_task,
    mllm_task,
    pin_model_task,
    plan_task,
    read_manifest_task,
    render_task,
    tokenizer_task,
)
from tasks.settings import NightlySettings

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _gather(futures: list[PrefectFuture], batches: list[list[StoryPlan]], stage: str,
            failures: list[StoryFailure]) -> list[Any]:  # fmt: skip
    """Results of mapped tasks; a task that failed for good fails only the stories of its micro-batch."""
    results = []
    for future, batch in zip(futures, batches, strict=True):
        future.wait()
        state = future.state
        if state.is_completed():
            results.append(future.result())
            continue
        err = state.result(raise_on_failure=False)
        reason = f"{type(err).__name__}: {err}" if isinstance(err, Exception) else str(state.name)
        failures += [StoryFailure(story_id=p.story_id, stage=stage, reason=reason) for p in batch]
    return results


def attempt_id() -> str:
    """This attempt's id in the run's records: the flow run's id and its run count (a flow retry keeps the flow
    run's id, so the count tells a crashed attempt from its retry); a random id outside Prefect."""
    run = flow_run.get_id()
    return f"{run}.{flow_run.run_count}" if run else uuid.uuid4().hex


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[stage] = time.perf_counter() - start


@flow(name="nightly-generation")
def nightly_generation(settings: NightlySettings) -> RunSummary:
    """Generate every story of ``settings.manifest`` into ``settings.store`` and render the books."""
    log = get_run_logger()
    started, seconds = now(), {}
    attempt = attempt_id()
    if flow_run.get_id() and flow_run.run_count > settings.max_attempts:  # fails: not rescheduled again
        raise RuntimeError(f"attempt {flow_run.run_count} of a night allowed {settings.max_attempts}: giving up; "
                           "see the earlier attempts' logs")  # fmt: skip
    run_id = settings.resolved_run_id()
    settings = settings.model_copy(update={"run_id": run_id})  # every task sees the same run

    with _timed(seconds, "manifest"):
        manifest, data = read_manifest_task(settings)
        spec, version = pin_model_task(settings)
        settings = settings.model_copy(update={"model": spec})  # every task runs the pinned, local copy
    total = sum(e.row.num_steps for e in manifest.entries)
    # Tasks count what they persist; one small record tells watchers how far the run is.
    publisher = ProgressPublisher(settings.open_store(), run_id, settings.part, total_steps=total)
    # This attempt holds the stories it works on while it lives (another run skips them, or takes them over once
    # this one is gone); its writers stop writing a story it lost.
    keeper = LeaseKeeper(settings.open_store(), run_id, attempt, settings.lease_seconds)

    with keeper, publisher:
        with _timed(seconds, "plan"):
            plan = plan_task(settings, manifest, data, version, attempt)
        failures: list[StoryFailure] = list(plan.failed)

        def live() -> list[StoryPlan]:
            bad = {f.story_id for f in failures}
            return [p for p in plan.pending if p.story_id not in bad]

        with _timed(seconds, "tokenizer"):
            batches = chunks(live(), settings.encode_batch_size)
            futures = tokenizer_task.map([settings] * len(batches), batches, [attempt] * len(batches))
            failures += [f for found in _gather(futures, batches, "tokenizer", failures) for f in found]

        with _timed(seconds, "mllm"):  # and drawing alongside, where the model does
            write_batches = chunks(live(), settings.write_batch_size)
            futures = mllm_task.map([settings] * len(write_batches), write_batches, [attempt] * len(write_batches))
            written: list[tuple[WriteReport, DrawReport]] = _gather(futures, write_batches, "mllm", failures)
            reports, draws = [w for w, _ in written], [d for _, d in written]
            failures += [f for report in reports for f in report.failures]
            failures += [f for report in draws for f in report.failures]

        with _timed(seconds, "detokenizer"):  # what is left: every picture where none is drawn alongside
            going = {p.story_id for p in live()}
            item_batches = list_draws_task(settings, [[p for p in b if p.story_id in going] for b in write_batches])
            owners = {p.story_id: p for p in plan.pending}
            story_batches = [list({i.story_id: owners[i.story_id] for i in b}.values()) for b in item_batches]
            futures = detokenizer_task.map([settings] * len(item_batches), item_batches, [attempt] * len(item_batches))
            draws += _gather(futures, story_batches, "detokenizer", failures)
            failures += [f for report in draws[len(written) :] for f in report.failures]

        with _timed(seconds, "finish"):
            unique = list({f.story_id: f for f in failures}.values())
            completed, failed = finish_task(settings, plan.pending, [f for f in unique if f.story_id in owners],
                                             attempt)  # fmt: skip
            failed += [f for f in unique if f.story_id not in owners]  # conflicts: their folders are not touched
        lost = {f.story_id: f.reason for f in failed if f.stage == "lease"}  # taken over: the taker finishes them
        failed = [f for f in failed if f.stage != "lease"]

    with _timed(seconds, "render+export"):
        if settings.render is not None:
            render_task(settings)
        if settings.export_storystream:
            export_task(settings)

    summary = RunSummary(
        run_id=run_id,
        attempt=attempt,
        manifest=settings.manifest,
        model_version=plan.model_version,
        started_at=started,
        finished_at=now(),
        rows=len(manifest.entries) + len(manifest.problems),
        bad_rows=manifest.problems,
        skipped_finished=plan.finished,
        completed=completed,
        failed=failed,
        leased_elsewhere={**plan.leased_elsewhere, **lost},
        steps_written=sum(r.written for r in reports),
        steps_resumed=sum(r.resumed for r in reports),
        pictures_drawn=sum(r.drawn for r in draws),
        seconds=seconds,
    )
    put_model(settings.open_store(), RunKeys(run_id).attempt_summary(attempt), summary)
    put_model(settings.open_store(), RunKeys(run_id).summary(settings.part), summary)
    create_markdown_artifact(
        summary_markdown(summary), key=artifact_key("nightly", run_id, settings.part), description="Nightly run"
    )
    log.info("run %s: %d completed, %d failed, %d skipped (finished before), %d bad rows", run_id,
             len(completed), len(failed), len(plan.finished), len(manifest.problems))  # fmt: skip
    if summary.leased_elsewhere:
        log.warning("run %s: %d stories were held by another live attempt of this run and left to it", run_id,
                    len(summary.leased_elsewhere))  # fmt: skip
    return summary
