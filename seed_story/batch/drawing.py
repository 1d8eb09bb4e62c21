"""The de-tokenizer stage: draw stored feature sets into pictures, in batches across stories."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from pydantic import BaseModel, Field

from seed_story.batch.codecs import features_from_bytes
from seed_story.batch.isolation import story_by_story
from seed_story.batch.leases import LeaseLost
from seed_story.batch.writing import writing_groups
from seed_story.generation.pipeline import StoryPipeline
from seed_story.provenance import Provenance, png_with_provenance
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import DrawRecord, StoryFailure, StoryPlan, WritingDone
from seed_story.storage import ObjectStore, get_model, put_model

logger = logging.getLogger(__name__)


class DrawItem(BaseModel):
    """One picture to draw: a story's step whose features are stored."""

    run_id: str
    story_id: str
    step: int
    model_version: str = Field(default="", description="stated in the picture's provenance")

    @classmethod
    def of(cls, plan: StoryPlan, step: int) -> DrawItem:
        return cls(run_id=plan.run_id, story_id=plan.story_id, step=step, model_version=plan.model_version)

    @property
    def story_keys(self) -> StoryKeys:
        return StoryKeys(self.run_id, self.story_id)


def pending_draws(store: ObjectStore, plans: list[StoryPlan]) -> list[DrawItem]:
    """Steps of stories the MLLM has finished whose pictures are not yet stored, in :func:`draw_order`."""
    items = []
    for plan in plans:
        keys = StoryKeys(plan.run_id, plan.story_id)
        if not store.exists(keys.written):
            continue
        done = get_model(store, keys.written, WritingDone)
        names = set(store.list(keys.key("work/")))
        items += [DrawItem.of(plan, i) for i in range(1, done.steps + 1) if keys.drawn(i) not in names]
    return draw_order(items, plans)


def draw_order(items: list[DrawItem], plans: list[StoryPlan]) -> list[DrawItem]:
    """The order pictures are drawn in, whether they are drawn while stories are written or after: by writing batch
    (:func:`~seed_story.batch.writing.writing_groups`), then by step, then story. The writer stores every story's
    step k together, so a drawer that follows it sees this order; drawn in the same chunks, the same pictures come
    out bit for bit (a batch's make-up moves float sums by up to one level of a pixel)."""
    return sorted(items, key=draw_key(plans))


def draw_key(plans: list[StoryPlan]) -> Callable[[DrawItem], tuple[int, int, int]]:
    """The sort key of :func:`draw_order`, computed once for ``plans``."""
    rank = {p.story_id: (g, i) for g, group in enumerate(writing_groups(plans)) for i, p in enumerate(group)}
    return lambda item: (rank[item.story_id][0], item.step, rank[item.story_id][1])


def draw_chunks(store: ObjectStore, batches: list[list[StoryPlan]], size: int) -> list[list[DrawItem]]:
    """The pictures still to draw, in the chunks drawing alongside the writer would have drawn them in (per writing
    micro-batch, ``size`` each): the same pictures whichever way they are drawn."""
    listed = [pending_draws(store, batch) for batch in batches]
    return [items[i : i + size] for items in listed for i in range(0, len(items), size)]


class DrawReport(BaseModel):
    drawn: int = 0
    failures: list[StoryFailure] = Field(default_factory=list)


def draw_items(store: ObjectStore, items: list[DrawItem], pipeline: StoryPipeline, attempt: str) -> DrawReport:
    """Draw ``items`` (in the pipeline's draw batches) and store each PNG, then its :class:`DrawRecord`.

    Each picture depends only on its features and the draw seed, so batching across stories and redrawing
    after a crash give the same pictures. A batch that raises is drawn again story by story: only a story whose
    pictures fail alone is failed.
    """
    report = DrawReport()
    by_story: dict[str, list[DrawItem]] = {}
    for item in items:
        by_story.setdefault(item.story_id, []).append(item)
    draw = partial(_draw, store, pipeline, attempt, report)
    report.failures = story_by_story(list(by_story.values()), draw, lambda group: group[0].story_id, "detokenizer")
    return report


def _draw(
    store: ObjectStore, pipeline: StoryPipeline, attempt: str, report: DrawReport, groups: list[list[DrawItem]]
) -> list[StoryFailure]:
    items = [item for group in groups for item in group]
    features = [features_from_bytes(store.get_bytes(item.story_keys.step_features(item.step))) for item in items]
    start = time.perf_counter()
    pictures = pipeline.draw(features)
    seconds = (time.perf_counter() - start) / len(items)
    lost: dict[str, str] = {}
    for item, picture in zip(items, pictures, strict=True):
        if item.story_id in lost:
            continue
        keys = item.story_keys
        record = DrawRecord(
            story_id=item.story_id, step=item.step, image_key=keys.step_image(item.step), draw_seconds=seconds,
            attempt=attempt,
        )  # fmt: skip
        try:
            stated = Provenance(model_version=item.model_version, run_id=item.run_id, story_id=item.story_id,
                                step=item.step)  # fmt: skip
            png = png_with_provenance(picture, stated)  # marked as made by a trained model
            store.put_bytes(keys.step_image(item.step), png, content_type="image/png")
            put_model(store, keys.drawn(item.step), record)
        except LeaseLost as err:  # another run took the story over: it draws the rest
            lost[item.story_id] = str(err)
            continue
        report.drawn += 1
    logger.info("drew %d pictures", len(items))
    return [StoryFailure(story_id=story, stage="lease", reason=reason) for story, reason in lost.items()]
