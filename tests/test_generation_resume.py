"""Resuming a story from stored steps continues it as if it had never stopped."""

from __future__ import annotations

import random

import pytest
import torch

from seed_story.generation.records import ResumeStep, StoryRequest, WrittenStory
from seed_story.generation.settings import SamplingSettings, SinkSettings, WriterSettings
from seed_story.generation.writer import StoryWriter
from seed_story.storyworld.toy import sample_story, scene_features


def _opening(parts, seed: int) -> tuple[str, torch.Tensor]:
    scene = sample_story(random.Random(seed), 1)[0]
    v = parts.config.vision
    return scene.caption, scene_features(scene, v.n_queries, v.output_dim)


def _resume(story: WrittenStory, k: int) -> list[ResumeStep]:
    return [ResumeStep(s.text, s.features, s.generator_state, s.token_ids) for s in story.steps[:k]]


def _assert_continues(full: WrittenStory, resumed: WrittenStory, k: int) -> None:
    assert [s.index for s in resumed.steps] == list(range(k + 1, len(full.steps) + 1))
    for ref, step in zip(full.steps[k:], resumed.steps, strict=True):
        assert step.token_ids == ref.token_ids
        assert step.text == ref.text
        torch.testing.assert_close(step.features, ref.features, atol=1e-4, rtol=1e-4)
    assert resumed.stop_reason == full.stop_reason


def test_resumed_stories_continue_identically_in_one_batch(toy_components):
    parts = toy_components
    writer = StoryWriter(parts.mllm, parts.tokenizer)
    caption, feats = _opening(parts, 71)
    # 11 steps: resuming after 9 replays past the 8-picture window, so the sink evicts during the replay.
    [full] = writer.write([StoryRequest(caption, feats, num_steps=11)])
    assert len(full.steps) == 11
    cuts = [0, 3, 9]
    resumed = writer.write([StoryRequest(caption, feats, num_steps=11, resume=_resume(full, k)) for k in cuts])
    for k, story in zip(cuts, resumed, strict=True):
        _assert_continues(full, story, k)


def test_sampled_story_resumes_on_the_same_random_stream(toy_components):
    parts = toy_components
    hot = WriterSettings(sampling=SamplingSettings(do_sample=True, temperature=1.3, top_p=1.0, max_new_tokens=120))
    writer = StoryWriter(parts.mllm, parts.tokenizer, hot)
    caption, feats = _opening(parts, 72)
    [full] = writer.write([StoryRequest(caption, feats, num_steps=5, seed=9)])
    assert all(s.generator_state is not None for s in full.steps)
    [resumed] = writer.write([StoryRequest(caption, feats, num_steps=5, seed=9, resume=_resume(full, 2))])
    _assert_continues(full, resumed, 2)


def test_illustrated_story_resumes(toy_components):
    parts = toy_components
    writer = StoryWriter(parts.mllm, parts.tokenizer)
    caption, feats = _opening(parts, 73)
    texts = [s.caption for s in sample_story(random.Random(73), 6)[1:]]
    [full] = writer.write([StoryRequest(caption, feats, num_steps=len(texts), texts=texts)])
    [resumed] = writer.write([StoryRequest(caption, feats, num_steps=len(texts), texts=texts, resume=_resume(full, 2))])
    _assert_continues(full, resumed, 2)


def test_nothing_left_to_write_is_an_error(toy_components):
    parts = toy_components
    writer = StoryWriter(parts.mllm, parts.tokenizer)
    caption, feats = _opening(parts, 74)
    done = [ResumeStep("x", feats)] * 3
    with pytest.raises(ValueError, match="nothing is left to write"):
        writer.write([StoryRequest(caption, feats, num_steps=3, resume=done)])


def test_resume_without_token_ids_replays_the_retokenised_text(toy_components):
    # Records from elsewhere may lack token ids: the text is re-tokenised, and the story still continues.
    parts = toy_components
    writer = StoryWriter(parts.mllm, parts.tokenizer, WriterSettings(sink=SinkSettings(window_images=3)))
    caption, feats = _opening(parts, 75)
    [full] = writer.write([StoryRequest(caption, feats, num_steps=6)])
    bare = [ResumeStep(s.text, s.features) for s in full.steps[:4]]
    [resumed] = writer.write([StoryRequest(caption, feats, num_steps=6, resume=bare)])
    _assert_continues(full, resumed, 4)
