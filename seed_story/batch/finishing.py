"""Finish stories: the story sequence as Parquet, ``story.json`` for the renderer, StoryStream export."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from seed_story.batch.leases import LeaseLost
from seed_story.batch.writing import stored_steps
from seed_story.runstore.keys import OPENING_IMAGE, RunKeys, StoryKeys, step_image_name, story_id_of
from seed_story.runstore.records import (
    DrawRecord,
    StepRecord,
    StoredStep,
    StoryFailure,
    StoryPlan,
    StoryRecord,
    WritingDone,
)
from seed_story.runstore.sequence import SEQUENCE_SCHEMA
from seed_story.storage import ObjectStore, get_model, put_model
from seed_story.tokenizer import INST


def display_text(text: str) -> str:
    """A step's text for readers: without the ``[INST]`` separator a model may write before it (the stored
    ``StepRecord`` keeps it, since resuming feeds the text back exactly as written)."""
    return " ".join(text.replace(INST, " ").split())


def finish_story(store: ObjectStore, plan: StoryPlan) -> StoryRecord | None:
    """Write ``sequence.parquet`` then ``story.json`` once every step is written and drawn; else ``None``."""
    keys = StoryKeys(plan.run_id, plan.story_id)
    if not store.exists(keys.written):
        return None
    done = get_model(store, keys.written, WritingDone)
    steps = stored_steps(store, keys)[: done.steps]
    names = set(store.list(keys.key("work/")))
    if len(steps) < done.steps or any(keys.drawn(s.step) not in names for s in steps):
        return None
    draws = [get_model(store, keys.drawn(s.step), DrawRecord) for s in steps]
    store.put_bytes(keys.sequence, _sequence_parquet(plan, steps, draws))
    row = plan.row
    record = StoryRecord(
        story_id=plan.story_id,
        title=row.book_title,
        author=row.author,
        style=row.style,
        opening_text=row.text,
        opening_image=OPENING_IMAGE,
        steps=[StoredStep(index=s.step, text=display_text(s.text), image=step_image_name(s.step)) for s in steps],
        language=row.language,
        model_version=plan.model_version,
        run_id=plan.run_id,
    )
    put_model(store, keys.story, record)
    return record


def fail_story(store: ObjectStore, plan: StoryPlan, failure: StoryFailure) -> None:
    """Mark a story failed (the gallery lists it with the reason); the next attempt tries it again."""
    record = StoryRecord(
        story_id=plan.story_id,
        title=plan.row.book_title,
        author=plan.row.author,
        status="failed",
        failure_reason=f"{failure.stage}: {failure.reason}",
        opening_text=plan.row.text,
        language=plan.row.language,
        model_version=plan.model_version,
        run_id=plan.run_id,
    )
    put_model(store, StoryKeys(plan.run_id, plan.story_id).story, record)


def finish_stories(
    store: ObjectStore, plans: list[StoryPlan], failures: list[StoryFailure]
) -> tuple[list[str], list[StoryFailure]]:
    """Finish every story that is whole, mark failed ones; a story left unfinished is failed too (the next attempt
    takes it up again). A story another run took over (stage ``lease``) is left to that run. Returns the completed
    story ids and the failures."""
    failed = {f.story_id: f for f in failures}
    completed, unfinished = [], []
    for plan in plans:
        try:
            if plan.story_id in failed:
                if failed[plan.story_id].stage != "lease":  # a story another run took over is that run's to mark
                    fail_story(store, plan, failed[plan.story_id])
            elif finish_story(store, plan) is not None:
                completed.append(plan.story_id)
            else:
                failure = StoryFailure(story_id=plan.story_id, stage="finish",
                                       reason="not every step was written/drawn")  # fmt: skip
                fail_story(store, plan, failure)
                unfinished.append(failure)
        except LeaseLost as err:
            unfinished.append(StoryFailure(story_id=plan.story_id, stage="lease", reason=str(err)))
    return completed, [*failed.values(), *unfinished]


def _sequence_parquet(plan: StoryPlan, steps: list[StepRecord], draws: list[DrawRecord]) -> bytes:
    keys = StoryKeys(plan.run_id, plan.story_id)
    settings = json.dumps(plan.settings, sort_keys=True)
    rows = [dict(step=0, text=plan.row.text, image_key=keys.opening_image, feature_key=keys.opening_features,
                 token_count=0, write_seconds=0.0, draw_seconds=0.0, attempt="")]  # fmt: skip
    for s, d in zip(steps, draws, strict=True):
        rows.append(dict(step=s.step, text=display_text(s.text), image_key=d.image_key, feature_key=s.feature_key,
                         token_count=len(s.token_ids), write_seconds=s.write_seconds, draw_seconds=d.draw_seconds,
                         attempt=s.attempt))  # fmt: skip
    for r in rows:
        r.update(story_id=plan.story_id, model_version=plan.model_version, seed=plan.row.seed, settings=settings)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SEQUENCE_SCHEMA), buffer)
    return buffer.getvalue()


def export_storystream(store: ObjectStore, run_id: str) -> tuple[str, int]:
    """Write the run's finished stories as StoryStream jsonl (image paths relative to the run folder), so
    ``seed-story data ingest-storystream`` can turn them into training shards. Returns (key, stories)."""
    run = RunKeys(run_id)
    lines = []
    for key in store.list(run.prefix + "/"):
        if story_id_of(key, run_id) is None:
            continue
        record = get_model(store, key, StoryRecord)
        if record.status != "complete":
            continue
        images = [f"{record.story_id}/{name}" for name in record.image_files()]
        captions = [record.opening_text, *(s.text for s in record.steps)]
        lines.append(json.dumps({"id": record.story_id, "images": images, "captions": captions}, ensure_ascii=False))
    key = run.export
    store.put_bytes(key, ("\n".join(lines) + "\n").encode() if lines else b"", content_type="application/jsonl")
    return key, len(lines)
