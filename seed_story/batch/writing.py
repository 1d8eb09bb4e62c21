"""The MLLM stage: write stories in a micro-batch, persisting every step as soon as it is written.

A story interrupted by a crash resumes from its last stored step: stored steps are replayed into the cache
(:class:`seed_story.generation.records.ResumeStep`), never decoded again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from pydantic import BaseModel, Field

from seed_story.batch.codecs import encode_generator_state, features_from_bytes, features_to_bytes, generator_state
from seed_story.batch.isolation import failure_reason, story_by_story
from seed_story.batch.leases import LeaseLost
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.records import ResumeStep, StoryRequest, WrittenStep
from seed_story.generation.settings import InputLimits, WriterSettings
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import StepRecord, StoryFailure, StoryPlan, WritingDone
from seed_story.storage import ObjectStore, get_model, put_model

logger = logging.getLogger(__name__)


class WriteReport(BaseModel):
    written: int = 0
    resumed: int = Field(default=0, description="steps found in the store and replayed, not recomputed")
    failures: list[StoryFailure] = Field(default_factory=list)


def stored_steps(store: ObjectStore, keys: StoryKeys) -> list[StepRecord]:
    """The story's consecutive stored steps 1..k (a gap ends them: a later step cannot be trusted)."""
    names = set(store.list(keys.key("work/")))
    steps = []
    while keys.step(len(steps) + 1) in names:
        steps.append(get_model(store, keys.step(len(steps) + 1), StepRecord))
    return steps


def _request(store: ObjectStore, plan: StoryPlan, steps: list[StepRecord]) -> StoryRequest:
    keys = StoryKeys(plan.run_id, plan.story_id)
    resume = [
        ResumeStep(s.text, features_from_bytes(store.get_bytes(s.feature_key)), generator_state(s), s.token_ids)
        for s in steps
    ]
    row = plan.row
    return StoryRequest(
        opening_text=row.text,
        opening_features=features_from_bytes(store.get_bytes(keys.opening_features)),
        num_steps=row.num_steps,
        texts=row.texts,
        seed=row.seed,
        resume=resume,
    )


@contextmanager
def _writer_settings(pipeline: StoryPipeline, settings: WriterSettings) -> Iterator[None]:
    # Rows may bring their own sampling settings; the pipeline is shared, so restore them afterwards.
    previous = pipeline.writer.settings
    pipeline.writer.settings = settings
    try:
        yield
    finally:
        pipeline.writer.settings = previous


def write_stories(
    store: ObjectStore,
    plans: list[StoryPlan],
    pipeline: StoryPipeline,
    attempt: str,
    limits: InputLimits | None = None,
    on_stored: Callable[[StoryPlan, int], None] | None = None,
) -> WriteReport:
    """Write (or finish writing) every story of ``plans`` that the MLLM has not finished.

    Stories are grouped by writer settings (one batch per group). Each step's features are stored before its
    :class:`StepRecord`, which is the commit mark; the story's :class:`WritingDone` comes last. A story whose
    texts are over ``limits`` in tokens (checked before any batch is built) or whose features come out not finite
    fails alone; a batch that raises is retried story by story (each from its stored steps). ``on_stored(plan,
    step)`` hears of each step once it is committed (a drawer can start on it).
    """
    limits = limits or InputLimits()
    report = WriteReport()
    todo = []
    for plan in plans:
        if store.exists(StoryKeys(plan.run_id, plan.story_id).written):
            continue
        try:
            limits.check_tokens(plan.row.text, plan.row.texts, pipeline.writer.encode)
        except ValueError as err:
            report.failures.append(StoryFailure(story_id=plan.story_id, stage="mllm", reason=failure_reason(err)))
            continue
        todo.append(plan)
    for group in writing_groups(todo):
        with _writer_settings(pipeline, WriterSettings.model_validate(group[0].settings["writer"])):
            write = partial(_write_batch, store, pipeline, attempt, report, on_stored)
            report.failures += story_by_story(group, write, lambda plan: plan.story_id, "mllm")
    return report


def writing_groups(plans: list[StoryPlan]) -> list[list[StoryPlan]]:
    """The batches ``plans`` are written in: one per writer settings (a row may bring its own sampling), in order of
    first appearance, stories in plan order."""
    groups: dict[str, list[StoryPlan]] = {}
    for plan in plans:
        groups.setdefault(WriterSettings.model_validate(plan.settings["writer"]).model_dump_json(), []).append(plan)
    return list(groups.values())


def _write_batch(
    store: ObjectStore,
    pipeline: StoryPipeline,
    attempt: str,
    report: WriteReport,
    on_stored: Callable[[StoryPlan, int], None] | None,
    group: list[StoryPlan],
) -> list[StoryFailure]:
    """Write ``group`` as one batch, each story from its stored steps; returns the stories that failed."""
    requests, todo = [], []
    for plan in group:
        keys = StoryKeys(plan.run_id, plan.story_id)
        steps = stored_steps(store, keys)
        report.resumed += len(steps)
        if len(steps) >= plan.row.num_steps:  # crashed after its last step, before the done mark
            put_model(store, keys.written, WritingDone(story_id=plan.story_id, steps=len(steps),
                                                       stop_reason="steps", attempt=attempt))  # fmt: skip
            continue
        requests.append(_request(store, plan, steps))
        todo.append(plan)
    if not todo:
        return []
    bad: dict[int, tuple[str, str]] = {}
    stories = pipeline.write_story(requests, on_step=_persister(store, todo, attempt, report, bad, on_stored))
    failures = [StoryFailure(story_id=todo[i].story_id, stage=stage, reason=why) for i, (stage, why) in bad.items()]
    for i, (plan, request, story) in enumerate(zip(todo, requests, stories, strict=True)):
        if i in bad:
            continue
        total = len(request.resume) + len(story.steps)
        if total == 0:
            failures.append(StoryFailure(story_id=plan.story_id, stage="mllm", reason=(
                f"the model wrote no picture for the first step (stopped: {story.stop_reason})"
            )))  # fmt: skip
            continue
        done = WritingDone(story_id=plan.story_id, steps=total, stop_reason=story.stop_reason, attempt=attempt)
        put_model(store, StoryKeys(plan.run_id, plan.story_id).written, done)
    return failures


def _persister(
    store: ObjectStore,
    plans: list[StoryPlan],
    attempt: str,
    report: WriteReport,
    bad: dict[int, tuple[str, str]],
    on_stored: Callable[[StoryPlan, int], None] | None,
) -> Callable[[int, WrittenStep], None]:
    """The ``on_step`` callback that stores each written step: features first, then the step record.

    A step whose features are not finite is not stored, nor one of a story another run took over (its lease
    lost): the story goes into ``bad`` (index -> stage, reason) and nothing more of it is stored; the batch
    writes on for the others.
    """

    def persist(index: int, step: WrittenStep) -> None:
        if index in bad:
            return
        if not torch.isfinite(step.features).all():
            bad[index] = ("mllm", f"the features written for step {step.index} are not finite (NaN or inf)")
            return
        try:
            _store_step(store, plans[index], step, attempt)
        except LeaseLost as err:
            bad[index] = ("lease", str(err))
            return
        report.written += 1
        if on_stored is not None:
            on_stored(plans[index], step.index)

    return persist


def _store_step(store: ObjectStore, plan: StoryPlan, step: WrittenStep, attempt: str) -> None:
    """Store one written step: its features, then its record (the commit mark)."""
    keys = StoryKeys(plan.run_id, plan.story_id)
    feature_key = keys.step_features(step.index)
    store.put_bytes(feature_key, features_to_bytes(step.features))
    record = StepRecord(
        story_id=keys.story_id,
        step=step.index,
        text=step.text,
        token_ids=step.token_ids,
        feature_key=feature_key,
        generator_state=encode_generator_state(step.generator_state),
        prompt_tokens=step.prompt_tokens,
        kv_tokens=step.kv_tokens,
        write_seconds=step.seconds,
        attempt=attempt,
    )
    put_model(store, keys.step(step.index), record)
