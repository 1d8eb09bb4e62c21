"""How far a run is, as one small record in the store that any process can read in one request.

The flow run keeps a :class:`ProgressPublisher`: it lists the run once at the start (what an earlier attempt
already stored), its tasks add what they persist (``count_progress``, from the threads the tasks run in), and a
background thread writes ``runs/{run_id}/progress.json`` (``parts/{part}.progress.json`` for a shard) when the
counts change, at most once per ``interval``. A watcher (``seed-story generate``'s bar) reads that one object per
refresh, never a listing of the run: on a big night a listing per second is thousands of S3 LIST pages.

Example::

    with ProgressPublisher(store, "2026-12-05", part=None, total_steps=480):
        ...                                  # tasks call count_progress("2026-12-05", None, steps=8)
    read_progress(store, "2026-12-05")       # ProgressRecord(steps_written=480, ...)
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

from pydantic import Field

from seed_story.config import StrictModel
from seed_story.runstore.keys import RunKeys, story_id_of
from seed_story.storage import ObjectNotFound, ObjectStore, get_model, put_model

_STEP = re.compile(r"/work/step_\d+\.json$")
_DRAWN = re.compile(r"/work/step_\d+\.drawn\.json$")
_ACTIVE: dict[tuple[str, str | None], ProgressPublisher] = {}
_ACTIVE_LOCK = threading.Lock()


class ProgressRecord(StrictModel):
    """Counts of what a run (or one shard of it) has persisted so far."""

    run_id: str
    part: str | None = None
    total_steps: int = Field(0, description="steps the run's stories ask for (0: unknown)")
    steps_written: int = 0
    pictures_drawn: int = 0
    stories_finished: int = 0
    updated_at: datetime


def read_progress(store: ObjectStore, run_id: str, part: str | None = None) -> ProgressRecord | None:
    """The run's progress record (one GET), or None before the flow has written one."""
    try:
        return get_model(store, RunKeys(run_id).progress(part), ProgressRecord)
    except ObjectNotFound:
        return None


def _stored(store: ObjectStore, run_id: str, part: str | None, total_steps: int) -> ProgressRecord:
    """What the store already holds for the run (one listing, once per flow run)."""
    found = store.list(RunKeys(run_id).prefix + "/")
    return ProgressRecord(
        run_id=run_id, part=part, total_steps=total_steps,
        steps_written=sum(bool(_STEP.search(k)) for k in found),
        pictures_drawn=sum(bool(_DRAWN.search(k)) for k in found),
        stories_finished=sum(story_id_of(k, run_id) is not None for k in found),
        updated_at=datetime.now(UTC),
    )  # fmt: skip


class ProgressPublisher:
    """Keeps a run's progress record current while the flow runs (a context manager)."""

    def __init__(
        self, store: ObjectStore, run_id: str, part: str | None = None, total_steps: int = 0, interval: float = 1.0
    ) -> None:
        self.store, self.run_id, self.part, self.interval = store, run_id, part, interval
        self.total_steps = total_steps
        self._lock = threading.Lock()
        self._record: ProgressRecord | None = None
        self._written: ProgressRecord | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def __enter__(self) -> ProgressPublisher:
        self._record = _stored(self.store, self.run_id, self.part, self.total_steps)
        with _ACTIVE_LOCK:
            _ACTIVE[(self.run_id, self.part)] = self
        self._publish()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE.pop((self.run_id, self.part), None)
        self._stop.set()
        self._thread.join()
        self._publish()

    def add(self, *, steps: int = 0, pictures: int = 0, stories: int = 0) -> None:
        with self._lock:
            assert self._record is not None
            r = self._record
            self._record = r.model_copy(update={
                "steps_written": r.steps_written + steps, "pictures_drawn": r.pictures_drawn + pictures,
                "stories_finished": r.stories_finished + stories, "updated_at": datetime.now(UTC),
            })  # fmt: skip

    def _publish(self) -> None:
        with self._lock:
            record = self._record
        if record is None or record == self._written:
            return
        put_model(self.store, RunKeys(self.run_id).progress(self.part), record)
        self._written = record

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._publish()
            except Exception:  # a store hiccup must not stop the night: the next tick, or __exit__, writes it
                continue


def count_progress(run_id: str, part: str | None, *, steps: int = 0, pictures: int = 0, stories: int = 0) -> None:
    """Add to the run's progress, if this process publishes it (tasks run in the flow run's process)."""
    with _ACTIVE_LOCK:
        publisher = _ACTIVE.get((run_id, part))
    if publisher is not None:
        publisher.add(steps=steps, pictures=pictures, stories=stories)
