"""Test builders. ``story_batch`` moved into the library (``seed_story.toy``); re-exported for old imports."""

from __future__ import annotations

from seed_story.toy import Batch, story_batch

__all__ = ["Batch", "story_batch"]
