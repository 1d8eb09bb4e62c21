"""The tokenizer stage: read each story's opening picture, store it as PNG and its ViT features."""

from __future__ import annotations

import logging
from functools import partial

import torch
from PIL import Image

from seed_story.batch.codecs import features_to_bytes, png_bytes
from seed_story.batch.isolation import failure_reason, story_by_story
from seed_story.batch.sources import read_uri_bytes
from seed_story.generation.pipeline import StoryPipeline, load_image
from seed_story.generation.settings import InputLimits
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import StoryFailure, StoryPlan
from seed_story.storage import ObjectStore, S3Settings

logger = logging.getLogger(__name__)


def encode_openings(
    store: ObjectStore,
    plans: list[StoryPlan],
    pipeline: StoryPipeline,
    s3: S3Settings | None = None,
    limits: InputLimits | None = None,
) -> list[StoryFailure]:
    """Encode the openings not yet stored, in one ViT batch; a story fails alone when its picture is missing,
    corrupt or over ``limits`` (checked before it is decoded) or its features are not finite.

    Storage errors propagate (the task retries them); the rest is the row's fault and is returned.
    """
    limits = limits or InputLimits()
    ready, failures = [], []
    for plan in plans:
        if store.exists(StoryKeys(plan.run_id, plan.story_id).opening_features):
            continue
        try:
            data = read_uri_bytes(plan.image_uri, s3, "opening image", check_size=limits.check_picture_bytes)
            ready.append((plan, load_image(data, limits)))
        except ValueError as err:
            failures.append(StoryFailure(story_id=plan.story_id, stage="tokenizer", reason=failure_reason(err)))
    return failures + story_by_story(
        ready, partial(_encode, store, pipeline), lambda item: item[0].story_id, "tokenizer"
    )


def _encode(
    store: ObjectStore, pipeline: StoryPipeline, batch: list[tuple[StoryPlan, Image.Image]]
) -> list[StoryFailure]:
    features = pipeline.encode_images([image for _, image in batch])
    failures = []
    for (plan, image), feats in zip(batch, features, strict=True):
        if not torch.isfinite(feats).all():
            reason = "the opening picture's features are not finite (NaN or inf)"
            failures.append(StoryFailure(story_id=plan.story_id, stage="tokenizer", reason=reason))
            continue
        keys = StoryKeys(plan.run_id, plan.story_id)
        store.put_bytes(keys.opening_image, png_bytes(image), content_type="image/png")
        store.put_bytes(keys.opening_features, features_to_bytes(feats))
    logger.info("encoded %d opening pictures", len(batch) - len(failures))
    return failures
