"""One story's failure stays that story's: a batch that fails as a whole is retried story by story.

Stories share a GPU batch for speed, so one poisonous story (a picture or text no limit caught, features that
break a kernel, memory a batch of them does not fit in) could otherwise fail every story beside it. Storage
errors are not the stories' fault: they propagate, so the task retries them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from seed_story.batch.leases import LeaseLost
from seed_story.runstore.records import StoryFailure
from seed_story.storage import StorageError

logger = logging.getLogger(__name__)

T = TypeVar("T")
_MAX_REASON = 300


def failure_reason(err: BaseException) -> str:
    """A failure's reason on one line: a ``ValueError``'s message (written for users), else type and message."""
    text = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def story_by_story(
    stories: list[T],
    run: Callable[[list[T]], list[StoryFailure]],
    story_id: Callable[[T], str],
    stage: str,
) -> list[StoryFailure]:
    """``run(stories)`` as one batch; if it raises, ``run([story])`` for each story, failing only those that
    raise alone. Returns the failures ``run`` reported plus those raised.

    Example::

        failures = story_by_story(plans, lambda batch: write(batch), lambda p: p.story_id, "mllm")
    """
    if not stories:
        return []
    try:
        return run(stories)
    except StorageError:
        raise
    except Exception as err:
        if len(stories) == 1:
            lost = isinstance(err, LeaseLost)  # another run took the story over: not a failure of its own
            return [StoryFailure(story_id=story_id(stories[0]), stage="lease" if lost else stage,
                                 reason=str(err) if lost else failure_reason(err))]  # fmt: skip
        logger.warning("%s batch of %d stories failed (%s); retrying story by story", stage, len(stories),
                       failure_reason(err))  # fmt: skip
    failures = []
    for story in stories:
        failures += story_by_story([story], run, story_id, stage)
    return failures
