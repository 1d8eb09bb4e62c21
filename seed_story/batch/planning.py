"""Plan a run: which stories are finished, which go on, and what each one runs with."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

from pydantic import BaseModel, Field

from seed_story.batch.leases import claim, earlier_attempt, wait_until_gone
from seed_story.batch.manifest import Manifest, ManifestEntry
from seed_story.batch.pipelines import ModelSpec
from seed_story.runstore.keys import RunKeys, StoryKeys
from seed_story.runstore.records import StoryFailure, StoryPlan, StoryRecord
from seed_story.storage import ObjectStore, get_model, put_model

logger = logging.getLogger(__name__)


class RunPlan(BaseModel):
    """The stories of a run that need work, those already finished, and those that cannot run."""

    run_id: str
    model_version: str
    pending: list[StoryPlan]
    finished: list[str] = Field(default_factory=list)
    failed: list[StoryFailure] = Field(default_factory=list)
    leased_elsewhere: dict[str, str] = Field(default_factory=dict, description="story -> the live run that has it")


def story_plan(run_id: str, entry: ManifestEntry, spec: ModelSpec, version: str) -> StoryPlan:
    row = entry.row
    settings = spec.settings_json()
    if row.sampling is not None:
        settings["writer"]["sampling"] = row.sampling.model_dump(mode="json")
    return StoryPlan(
        run_id=run_id,
        story_id=row.story_id,
        line=entry.line,
        row=row,
        image_uri=entry.image_uri,
        model_version=version,
        settings=settings,
    )


def plan_run(
    store: ObjectStore,
    manifest: Manifest,
    manifest_bytes: bytes,
    run_id: str,
    spec: ModelSpec,
    version: str,
    lease: tuple[str, float] | None = None,
) -> RunPlan:
    """Record the manifest and each story's plan in the store; finished stories are skipped.

    A story folder that was started with a different row, model or settings is not touched: it is reported
    as failed ("conflict") so that a changed manifest never mixes two versions of one story. With ``lease``
    (holder, ttl seconds) every story to work on is claimed first (``seed_story.batch.leases``); one that a live
    run holds is left to it (``leased_elsewhere``), except one an earlier attempt of this same flow run holds (a
    crashed attempt whose process may still be winding down): that one is waited for, up to twice the lease time.
    """
    store.put_bytes(RunKeys(run_id).manifest_copy(PurePosixPath(manifest.source).name), manifest_bytes)
    plan = RunPlan(run_id=run_id, model_version=version, pending=[])
    waiting: dict[str, StoryPlan] = {}  # story -> plan, for stories an earlier attempt of this flow run holds
    earlier: set[str] = set()
    for entry in manifest.entries:
        wanted = story_plan(run_id, entry, spec, version)
        keys = StoryKeys(run_id, entry.row.story_id)
        if store.exists(keys.request):
            stored = get_model(store, keys.request, StoryPlan)
            if not stored.same_work(wanted):
                plan.failed.append(StoryFailure(story_id=keys.story_id, stage="plan", reason=(
                    "conflict: this run already holds the story with a different row, model or settings; "
                    "use a new run id or delete the story folder"
                )))  # fmt: skip
                continue
            if store.exists(keys.story):
                record = get_model(store, keys.story, StoryRecord)
                if record.status == "complete":
                    plan.finished.append(keys.story_id)
                    continue
        if lease is not None:
            got = claim(store, run_id, keys.story_id, *lease)
            if not got.held:
                if got.other is not None and earlier_attempt(lease[0], got.other):
                    waiting[keys.story_id] = wanted  # our own crashed attempt: its process is going, wait for it
                    earlier.add(got.other)
                else:
                    plan.leased_elsewhere[keys.story_id] = got.other or "another run"
                continue
        _start(store, plan, wanted)
    if waiting and lease is not None:
        logger.warning("run %s: waiting up to %.0f s for the earlier attempt(s) %s of this flow run to let go of "
                       "%d stories", run_id, 2 * lease[1], ", ".join(sorted(earlier)), len(waiting))  # fmt: skip
        wait_until_gone(store, run_id, sorted(earlier), lease[1], timeout=2 * lease[1] + 5)
        for wanted in waiting.values():
            got = claim(store, run_id, wanted.story_id, *lease)
            if got.held:
                _start(store, plan, wanted)
            else:
                plan.leased_elsewhere[wanted.story_id] = got.other or "another run"
    logger.info("run %s: %d stories to work on, %d already finished", run_id, len(plan.pending), len(plan.finished))
    if plan.leased_elsewhere:
        logger.warning("run %s: %d stories left to the live run that holds them (%s)", run_id,
                       len(plan.leased_elsewhere), ", ".join(sorted(set(plan.leased_elsewhere.values()))))  # fmt: skip
    return plan


def _start(store: ObjectStore, plan: RunPlan, wanted: StoryPlan) -> None:
    """A story this attempt holds: clear a failed attempt's mark, record its plan, work on it."""
    keys = StoryKeys(wanted.run_id, wanted.story_id)
    if store.exists(keys.story):
        store.delete(keys.story)  # a failed story gets another try
    put_model(store, keys.request, wanted)
    plan.pending.append(wanted)
