"""Judge every story of a stored run: ``runs/{run_id}/{story_id}/story.json`` and its pictures.

A story's frames are its opening (``opening_text``, ``opening_image``) then its steps in order. Failed stories
and stories whose files cannot be read are listed in ``skipped`` with the reason, never scored.

The metrics mean something only for stories that start in the story world, so a run is refused
(:class:`NotStoryWorldRun`) when a story's opening text is not a story-world caption, unless ``force`` is given.

Example::

    report = evaluate_run(open_store("/data/store"), "2026-11-26")
    report.overall.character_consistency.value, len(report.stories)
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image
from pydantic import Field

from seed_story.config import StrictModel
from seed_story.runstore import StoryKeys, StoryRecord, StoryStore
from seed_story.storage import ObjectStore
from seed_story.storyworld.judge.captions import is_world_caption
from seed_story.storyworld.judge.detect import detect_frame
from seed_story.storyworld.judge.metrics import Scores, score_story


class NotStoryWorldRun(ValueError):
    """A run whose stories do not start in the story world: the judge's scores would mean nothing."""


class StoryScores(StrictModel):
    story_id: str
    scores: Scores


class SkippedStory(StrictModel):
    story_id: str
    reason: str


class EvalReport(StrictModel):
    """The metrics of each judged story and of the run (pooled over its stories)."""

    store: str
    run_id: str
    stories: list[StoryScores] = Field(default_factory=list)
    skipped: list[SkippedStory] = Field(default_factory=list)
    not_storyworld: list[str] = Field(
        default_factory=list, description="stories scored under ``force`` whose opening is not a story-world caption"
    )
    overall: Scores = Scores()


def story_frames(stories: StoryStore, run_id: str, record: StoryRecord) -> list[tuple[str, Image.Image]]:
    """``(text, picture)`` of the opening and of every step, in story order."""
    prefix = StoryKeys(run_id, record.story_id).prefix
    texts = [record.opening_text] + [s.text for s in record.steps]
    frames = []
    for text, name in zip(texts, record.image_files(), strict=True):
        data = stories.objects.get_bytes(f"{prefix}/{name}")
        with Image.open(io.BytesIO(data)) as image:
            frames.append((text, image.convert("RGB")))
    return frames


def _read_story(stories: StoryStore, run_id: str, story_id: str) -> StoryRecord | SkippedStory:
    try:
        record = stories.read_story(run_id, story_id)
    except (ValueError, OSError) as err:  # a missing or invalid story.json
        return SkippedStory(story_id=story_id, reason=f"{type(err).__name__}: {err}")
    if record.status != "complete":
        return SkippedStory(story_id=story_id, reason=f"status {record.status}")
    return record


def _judge_story(stories: StoryStore, run_id: str, record: StoryRecord) -> StoryScores | SkippedStory:
    try:
        frames = story_frames(stories, run_id, record)
    except (ValueError, OSError) as err:  # a missing or undecodable picture
        return SkippedStory(story_id=record.story_id, reason=f"{type(err).__name__}: {err}")
    scores = score_story([(text, detect_frame(image)) for text, image in frames])
    return StoryScores(story_id=record.story_id, scores=scores)


def evaluate_run(
    objects: ObjectStore, run_id: str, progress: Callable[[int, int], None] | None = None, *, force: bool = False
) -> EvalReport:
    """Score every complete story of ``run_id`` in ``objects`` (see the module docstring); ``progress(done,
    total)`` is called after each story. Raises :class:`NotStoryWorldRun` unless every complete story opens with a
    story-world caption; ``force`` scores it anyway and lists those stories in ``not_storyworld``.

    Example::

        evaluate_run(open_store("s3://books/prod"), "2026-11-26").overall.text_coherence
    """
    stories = StoryStore(objects)
    read = [_read_story(stories, run_id, story_id) for story_id in stories.story_ids(run_id)]
    records = [r for r in read if isinstance(r, StoryRecord)]
    skipped = [r for r in read if isinstance(r, SkippedStory)]
    foreign = [r.story_id for r in records if not is_world_caption(r.opening_text)]
    if foreign and not force:
        raise NotStoryWorldRun(
            f"run {run_id} is not a story-world run: {len(foreign)} of {len(records)} stories open with text the "
            f"story world does not write (first: {foreign[0]}); the judge's scores would mean nothing"
        )
    judged = []
    for done, record in enumerate(records, start=1):
        result = _judge_story(stories, run_id, record)
        (judged if isinstance(result, StoryScores) else skipped).append(result)
        if progress is not None:
            progress(done, len(records))
    overall = sum((s.scores for s in judged), Scores())
    return EvalReport(store=objects.uri, run_id=run_id, stories=judged, skipped=skipped, not_storyworld=foreign,
                      overall=overall)  # fmt: skip
