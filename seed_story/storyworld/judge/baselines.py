"""The mini model held against baselines on held-out story-world stories, scored by the judge.

Every condition starts from the same ground-truth opening (frame 0: caption and picture) of stories of a world
seed the model never saw, and is judged on frames ``0..steps``:

* ``ground_truth``: the world's own pictures (the judge's ceiling, 1.0 by construction).
* ``upper_bound``: the de-tokenizer fed the ViT features of each ground-truth picture (reconstruction: no
  MLLM involved, the best the drawing half can do).
* ``story``: the MLLM illustrates the true captions with the whole story as context (pictures from its
  regressed features), as SEED-Story does.
* ``no_context``: each caption illustrated alone, after a blank opening (no earlier text or picture), so what
  the story context adds is visible as the gap to ``story``.
* ``written``: the MLLM writes its own story from the opening; judged on its own captions and pictures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import torch
from PIL import Image
from pydantic import Field

from seed_story.config import StrictModel
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.records import StoryRequest
from seed_story.storyworld.judge.detect import FrameDetection, detect_frame
from seed_story.storyworld.judge.metrics import Scores, judge_story
from seed_story.storyworld.world import StoryWorld

Condition = Literal["ground_truth", "upper_bound", "story", "no_context", "written"]
CONDITIONS: tuple[Condition, ...] = ("ground_truth", "upper_bound", "story", "no_context", "written")


class ConditionResult(StrictModel):
    condition: Condition
    stories: int
    scores: Scores
    reconstruction: float | None = Field(
        None, description="frames whose detected scene and slots equal the ground truth's (drawn conditions)"
    )
    seconds: float


class PictureAgreement(StrictModel):
    """Fractions of drawn pictures that show what their true pictures show, as the detector reads both."""

    scene: float = Field(description="frames with the true scene")
    slots: float = Field(description="frames with the true character, or nobody, in every slot")
    reconstruction: float = Field(description="frames with both (reconstruction_accuracy)")


def reconstruction_accuracy(truth: Sequence[FrameDetection], drawn: Sequence[FrameDetection]) -> float:
    """Fraction of frames where the drawn picture shows the true scene and the true character in every slot."""
    same = [t.scene == d.scene and t.slots == d.slots for t, d in zip(truth, drawn, strict=True)]
    return sum(same) / len(same) if same else 0.0


def picture_agreement(truth: Sequence[Image.Image], drawn: Sequence[Image.Image]) -> PictureAgreement:
    """Detect both sets of pictures (pairwise: ``drawn[i]`` should show ``truth[i]``) and compare them.

    Example::

        picture_agreement(story.pictures()[1:], pipe.draw(features)).reconstruction
    """
    true_found, drawn_found = [detect_frame(t) for t in truth], [detect_frame(d) for d in drawn]
    pairs = list(zip(true_found, drawn_found, strict=True))
    return PictureAgreement(
        scene=sum(t.scene == d.scene for t, d in pairs) / len(pairs) if pairs else 0.0,
        slots=sum(t.slots == d.slots for t, d in pairs) / len(pairs) if pairs else 0.0,
        reconstruction=reconstruction_accuracy(true_found, drawn_found),
    )


def evaluate_conditions(
    pipe: StoryPipeline,
    *,
    world_seed: int = 1,
    stories: int = 8,
    steps: int = 24,
    conditions: Sequence[Condition] = CONDITIONS,
) -> list[ConditionResult]:
    """Score each condition over ``stories`` held-out stories of ``steps`` steps after the opening.

    Example::

        results = evaluate_conditions(StoryPipeline.from_pretrained("models/seed-story-mini"), stories=4)
        {r.condition: r.scores.character_consistency.value for r in results}
    """
    world = StoryWorld(world_seed, frames=steps + 1)
    plots = [world.story(i) for i in range(stories)]
    truth = [s.pictures(pipe.config.detokenizer.image_size) for s in plots]
    captions = [[f.caption for f in s.frames] for s in plots]
    results = []
    for condition in conditions:
        start = time.perf_counter()
        frames, written = _frames(pipe, condition, captions, truth)
        scores = sum((judge_story(zip(c, f, strict=True)) for c, f in zip(written, frames, strict=True)), Scores())
        recon = None
        if condition in ("upper_bound", "story", "no_context"):  # frame 0 is the true opening: not drawn
            true_drawn = [im for story in truth for im in story[1:]], [im for story in frames for im in story[1:]]
            recon = picture_agreement(*true_drawn).reconstruction
        seconds = time.perf_counter() - start
        results.append(ConditionResult(condition=condition, stories=stories, scores=scores, reconstruction=recon,
                                       seconds=seconds))  # fmt: skip
    return results


def _frames(
    pipe: StoryPipeline, condition: Condition, captions: list[list[str]], truth: list[list[Image.Image]]
) -> tuple[list[list[Image.Image]], list[list[str]]]:
    """Pictures per story (frame 0 = the true opening) and the captions they are judged against."""
    if condition == "ground_truth":
        return truth, captions
    if condition == "upper_bound":
        pictures = [pipe.draw(pipe.encode_images(story[1:])) for story in truth]
        return [[story[0], *p] for story, p in zip(truth, pictures, strict=True)], captions
    openings = pipe.encode_images([story[0] for story in truth])
    if condition == "no_context":
        blank = pipe.negative_features[0]
        requests = [StoryRequest("", blank, num_steps=1, texts=[c]) for story in captions for c in story[1:]]
        features = [s.steps[0].features if s.steps else None for s in pipe.write_story(requests)]
        drawn = iter(_draw_or_blank(pipe, features))
        pictures = [[story[0], *(next(drawn) for _ in story[1:])] for story in truth]
        return pictures, captions
    steps = len(captions[0]) - 1
    texts = (lambda c: c[1:]) if condition == "story" else (lambda c: None)
    requests = [StoryRequest(c[0], f, num_steps=steps, texts=texts(c)) for c, f in zip(captions, openings, strict=True)]
    written = pipe.write_story(requests)
    pictures, judged = [], []
    for story, c, w in zip(truth, captions, written, strict=True):
        drawn = _draw_or_blank(pipe, [s.features for s in w.steps] + [None] * (steps - len(w.steps)))
        pictures.append([story[0], *drawn])
        own = [s.text for s in w.steps] + [""] * (steps - len(w.steps))
        judged.append(c if condition == "story" else [c[0], *own])
    return pictures, judged


def _draw_or_blank(pipe: StoryPipeline, features: list[torch.Tensor | None]) -> list[Image.Image]:
    """Draw the feature sets; a step the model never drew (it stopped early) counts as a blank picture."""
    size = pipe.config.detokenizer.image_size
    real = [f for f in features if f is not None]
    drawn = iter(pipe.draw(real) if real else [])
    return [next(drawn) if f is not None else Image.new("RGB", (size, size)) for f in features]
