"""The tokenizer stage: read each story's opening picture, store it as PNG and its ViT features."""

from __future__ import annotations

import logging

from seed_story.batch.codecs import features_to_bytes, png_bytes
from seed_story.batch.sources import read_uri_bytes
from seed_story.generation.pipeline import StoryPipeline, load_image
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import StoryFailure, StoryPlan
from seed_story.storage import ObjectStore, S3Settings

logger = logging.getLogger(__name__)


def encode_openings(
    store: ObjectStore, plans: list[StoryPlan], pipeline: StoryPipeline, s3: S3Settings | None = None
) -> list[StoryFailure]:
    """Encode the openings not yet stored, in one ViT batch; an unreadable picture fails only its story.

    Storage errors propagate (the task retries them); picture errors are the row's fault and are returned.
    """
    todo, images, failures = [], [], []
    for plan in plans:
        keys = StoryKeys(plan.run_id, plan.story_id)
        if store.exists(keys.opening_features):
            continue
        try:
            images.append(load_image(read_uri_bytes(plan.image_uri, s3, "opening image")))
            todo.append(keys)
        except ValueError as err:
            failures.append(StoryFailure(story_id=plan.story_id, stage="tokenizer", reason=str(err)))
    if todo:
        features = pipeline.encode_images(images)
        for keys, image, feats in zip(todo, images, features, strict=True):
            store.put_bytes(keys.opening_image, png_bytes(image), content_type="image/png")
            store.put_bytes(keys.opening_features, features_to_bytes(feats))
        logger.info("encoded %d opening pictures", len(todo))
    return failures
