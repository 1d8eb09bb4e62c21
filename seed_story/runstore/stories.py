"""Reading a run's stories from any object store (a local folder or S3).

``StoryStore`` knows the run layout, so renderers and the judge never see a bucket and the object store never
sees a story.
"""

from __future__ import annotations

from seed_story.runstore.keys import RunKeys, StoryKeys, story_id_of
from seed_story.runstore.records import StoryRecord
from seed_story.storage import ObjectNotFound, ObjectStore, get_model


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

    def story_ids(self, run_id: str) -> list[str]:
        """Every story folder of the run that holds a ``story.json``, sorted; ``ObjectNotFound`` for an empty run."""
        prefix = RunKeys(run_id).prefix + "/"
        keys = self.objects.list(prefix)
        if not keys:
            raise ObjectNotFound(f"no run {run_id!r} in {self.objects.uri} (nothing under {prefix})")
        return sorted(sid for key in keys if (sid := story_id_of(key, run_id)) is not None)

    def read_story(self, run_id: str, story_id: str) -> StoryRecord:
        key = StoryKeys(run_id, story_id).story
        record = get_model(self.objects, key, StoryRecord)
        if record.story_id != story_id:
            raise ValueError(f"{key} says story_id={record.story_id!r}, but lives in folder {story_id!r}")
        return record
