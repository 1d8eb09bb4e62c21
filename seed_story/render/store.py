"""Where rendering reads stories from and writes books to.

Only a local folder exists today. An S3 backend will implement the same small protocol (it can stage a
story folder locally, render, and upload the outputs), so renderers never see a bucket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from seed_story.render.records import StoryRecord, check_safe_name

STORY_FILE = "story.json"


class StoryStore(Protocol):
    """The few operations rendering needs from a store."""

    def story_ids(self, run_id: str) -> list[str]: ...

    def read_story(self, run_id: str, story_id: str) -> StoryRecord: ...

    def story_dir(self, run_id: str, story_id: str) -> Path: ...

    def run_dir(self, run_id: str) -> Path: ...


class LocalStore:
    """A store rooted at a local folder holding ``runs/{run_id}/{story_id}/story.json``.

    Example::

        store = LocalStore("/data/store")
        for sid in store.story_ids("2026-11-26"):
            record = store.read_story("2026-11-26", sid)
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / check_safe_name(run_id, "run_id")

    def story_dir(self, run_id: str, story_id: str) -> Path:
        return self.run_dir(run_id) / check_safe_name(story_id, "story_id")

    def story_ids(self, run_id: str) -> list[str]:
        run = self.run_dir(run_id)
        if not run.is_dir():
            raise FileNotFoundError(f"no run folder {run}")
        return sorted(p.name for p in run.iterdir() if (p / STORY_FILE).is_file())

    def read_story(self, run_id: str, story_id: str) -> StoryRecord:
        path = self.story_dir(run_id, story_id) / STORY_FILE
        record = StoryRecord.model_validate_json(path.read_text(encoding="utf-8"))
        if record.story_id != story_id:
            raise ValueError(f"{path} says story_id={record.story_id!r}, but lives in folder {story_id!r}")
        return record
