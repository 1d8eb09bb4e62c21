"""How far a run is, read from the store alone (so any process can watch any worker's run)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from seed_story.runstore.keys import RunKeys, story_id_of
from seed_story.storage import ObjectStore

_STEP = re.compile(r"/work/step_\d+\.json$")
_DRAWN = re.compile(r"/work/step_\d+\.drawn\.json$")


@dataclass(frozen=True)
class RunProgress:
    steps_written: int
    pictures_drawn: int
    stories_finished: int


def run_progress(store: ObjectStore, run_id: str) -> RunProgress:
    """Counts of written steps, drawn pictures and stories with a ``story.json`` (one listing of the run)."""
    keys = store.list(RunKeys(run_id).prefix + "/")
    return RunProgress(
        steps_written=sum(bool(_STEP.search(k)) for k in keys),
        pictures_drawn=sum(bool(_DRAWN.search(k)) for k in keys),
        stories_finished=sum(story_id_of(k, run_id) is not None for k in keys),
    )
