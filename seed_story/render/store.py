"""Where rendering reads stories from and writes books to: any ``ObjectStore`` (a local folder or S3).

Stories live under ``runs/{run_id}/{story_id}/`` (see ``records.py``); ``StoryStore`` is the thin adapter that
knows this layout, so renderers never see a bucket and the object store never sees a story.
"""

from __future__ import annotations

from pathlib import Path

from seed_story.render.records import StoryRecord, check_safe_name
from seed_story.storage import LocalObjectStore, ObjectNotFound, ObjectStore, get_model

STORY_FILE = "story.json"
RUNS = "runs"


class StoryStore:
    """The stories of each run in an object store.

    Example::

        stories = StoryStore(open_store("s3://books/prod"))
        for sid in stories.story_ids("2026-11-26"):
            record = stories.read_story("2026-11-26", sid)
    """

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.objects.uri!r})"

    def run_key(self, run_id: str) -> str:
        """The key prefix of a run's folder, ``runs/{run_id}``."""
        return f"{RUNS}/{check_safe_name(run_id, 'run_id')}"

    def story_key(self, run_id: str, story_id: str) -> str:
        """The key prefix of a story's folder, ``runs/{run_id}/{story_id}``."""
        return f"{self.run_key(run_id)}/{check_safe_name(story_id, 'story_id')}"

    def story_ids(self, run_id: str) -> list[str]:
        """Every story folder of the run that holds a ``story.json``, sorted; ``ObjectNotFound`` for an empty run."""
        prefix = self.run_key(run_id) + "/"
        keys = self.objects.list(prefix)
        if not keys:
            raise ObjectNotFound(f"no run {run_id!r} in {self.objects.uri} (nothing under {prefix})")
        ids = []
        for key in keys:
            story_id, _, rest = key[len(prefix) :].partition("/")
            if rest == STORY_FILE:
                ids.append(story_id)
        return sorted(ids)

    def read_story(self, run_id: str, story_id: str) -> StoryRecord:
        key = f"{self.story_key(run_id, story_id)}/{STORY_FILE}"
        record = get_model(self.objects, key, StoryRecord)
        if record.story_id != story_id:
            raise ValueError(f"{key} says story_id={record.story_id!r}, but lives in folder {story_id!r}")
        return record


class LocalStore(StoryStore):
    """A ``StoryStore`` on a local folder holding ``runs/{run_id}/{story_id}/story.json``.

    Example::

        store = LocalStore("/data/store")
        for sid in store.story_ids("2026-11-26"):
            record = store.read_story("2026-11-26", sid)
    """

    def __init__(self, root: str | Path) -> None:
        objects = LocalObjectStore(root)
        super().__init__(objects)
        self.root = objects.root

    def run_dir(self, run_id: str) -> Path:
        return self.root / self.run_key(run_id)

    def story_dir(self, run_id: str, story_id: str) -> Path:
        return self.root / self.story_key(run_id, story_id)
