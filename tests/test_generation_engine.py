"""The story engine against a plain implementation of the released algorithm (tests/reference_generation.py)."""

from __future__ import annotations

import random

import pytest
import torch

from seed_story.generation.records import StoryRequest
from seed_story.generation.settings import SamplingSettings, SinkSettings, WriterSettings
from seed_story.generation.writer import StoryWriter
from seed_story.storyworld.toy import sample_story, scene_features
from seed_story.tokenizer import ImageTokenIds
from tests.reference_generation import reference_illustrate, reference_write


def _opening(parts, seed: int) -> tuple[str, torch.Tensor]:
    scene = sample_story(random.Random(seed), 1)[0]
    v = parts.config.vision
    return scene.caption, scene_features(scene, v.n_queries, v.output_dim)


def _texts(seed: int, n: int) -> list[str]:
    return [s.caption for s in sample_story(random.Random(seed), n + 1)[1:]]


@pytest.fixture(scope="module")
def parts(toy_components):
    return toy_components


@pytest.fixture(scope="module")
def image_ids(parts) -> ImageTokenIds:
    return ImageTokenIds.from_tokenizer(parts.tokenizer, parts.config.mllm.num_image_tokens)


def _strip_eos(ids: list[int], eos: int) -> list[int]:
    return ids[:-1] if ids and ids[-1] == eos else ids


def _assert_same(reference, written, eos: int) -> None:
    assert len(written.steps) == len(reference)
    for ref, step in zip(reference, written.steps, strict=True):
        assert step.token_ids == _strip_eos(ref.token_ids, eos)
        assert step.text == ref.text
        torch.testing.assert_close(step.features, ref.features, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_write_matches_the_reference_algorithm(parts, image_ids, seed):
    caption, feats = _opening(parts, seed)
    # 8 steps: the last one is generated with 8 pictures in context, the most the window holds.
    reference = reference_write(parts.mllm, parts.tokenizer, image_ids, feats[None], caption, num_steps=8)
    [story] = StoryWriter(parts.mllm, parts.tokenizer).write([StoryRequest(caption, feats, num_steps=8)])
    assert story.stop_reason == "steps"
    _assert_same(reference, story, parts.tokenizer.eos_token_id)


@pytest.mark.parametrize("inst_separator", [True, False])
def test_illustrate_matches_the_reference_algorithm(parts, image_ids, inst_separator):
    caption, feats = _opening(parts, 21)
    texts = _texts(21, 6)
    reference = reference_illustrate(
        parts.mllm, parts.tokenizer, image_ids, feats[None], caption, texts, inst_separator=inst_separator
    )
    writer = StoryWriter(parts.mllm, parts.tokenizer, WriterSettings(inst_separator=inst_separator))
    [story] = writer.write([StoryRequest(caption, feats, num_steps=len(texts), texts=texts)])
    assert [s.text for s in story.steps] == texts[: len(story.steps)]
    for ref, step in zip(reference, story.steps, strict=True):
        assert step.token_ids == _strip_eos(ref.token_ids, parts.tokenizer.eos_token_id)
        torch.testing.assert_close(step.features, ref.features, atol=1e-4, rtol=1e-4)
    assert len(story.steps) == len(reference)


def test_a_batch_of_ragged_stories_equals_each_story_alone(parts):
    writer = StoryWriter(parts.mllm, parts.tokenizer)
    requests = []
    for i, steps in enumerate([3, 12, 5, 9]):
        caption, feats = _opening(parts, 30 + i)
        texts = _texts(30 + i, steps) if i == 2 else None  # one illustrated story among written ones
        requests.append(StoryRequest(caption, feats, num_steps=steps, texts=texts))
    batched = writer.write(requests)
    for request, together in zip(requests, batched, strict=True):
        [alone] = writer.write([request])
        assert [s.token_ids for s in together.steps] == [s.token_ids for s in alone.steps]
        assert together.stop_reason == alone.stop_reason
        for a, b in zip(together.steps, alone.steps, strict=True):
            torch.testing.assert_close(a.features, b.features, atol=1e-4, rtol=1e-4)
    assert [len(s.steps) for s in batched] == [3, 12, 5, 9]


def test_sink_keeps_fifty_steps_bounded(parts):
    settings = WriterSettings(
        sink=SinkSettings(window_images=4, max_sink_images=2), sampling=SamplingSettings(max_new_tokens=120)
    )
    writer = StoryWriter(parts.mllm, parts.tokenizer, settings)
    caption, feats = _opening(parts, 41)
    [short] = writer.write([StoryRequest(caption, feats, num_steps=25)])
    [long] = writer.write([StoryRequest(caption, feats, num_steps=50)])
    assert long.stop_reason == "steps" and len(long.steps) == 50
    # The bound: sink + a full window of steps + the step being written (settings.kv_bound).
    longest = max(len(parts.tokenizer.encode(s.text)) for s in long.steps) + len(parts.tokenizer.encode(caption))
    bound = settings.kv_bound(parts.config.mllm.num_image_tokens, longest)
    assert long.peak_kv_tokens <= bound
    assert long.peak_kv_tokens <= short.peak_kv_tokens + 2 * longest  # does not grow with the story
    assert max(s.kv_tokens for s in long.steps[30:]) <= max(s.kv_tokens for s in long.steps[:25]) + longest


def test_without_sink_the_cache_grows_with_the_story(parts):
    sink_off = WriterSettings(sink=SinkSettings(window_images=100), sampling=SamplingSettings(max_new_tokens=120))
    caption, feats = _opening(parts, 41)
    [story] = StoryWriter(parts.mllm, parts.tokenizer, sink_off).write([StoryRequest(caption, feats, num_steps=12)])
    sizes = [s.kv_tokens for s in story.steps]
    assert sizes == sorted(sizes) and sizes[-1] > 10 * sizes[0] / 2


def test_sampling_is_reproducible_per_story_seed(parts):
    hot = WriterSettings(sampling=SamplingSettings(do_sample=True, temperature=1.5, top_p=1.0, max_new_tokens=120))
    writer = StoryWriter(parts.mllm, parts.tokenizer, hot)
    caption, feats = _opening(parts, 51)
    runs = [writer.write([StoryRequest(caption, feats, num_steps=4, seed=s)])[0] for s in (1, 1, 2)]
    ids = [[st.token_ids for st in r.steps] for r in runs]
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]


def test_stop_rules(parts):
    caption, feats = _opening(parts, 61)
    tight = WriterSettings(sampling=SamplingSettings(max_new_tokens=5))
    [story] = StoryWriter(parts.mllm, parts.tokenizer, tight).write([StoryRequest(caption, feats, num_steps=3)])
    assert story.stop_reason == "max_new_tokens" and story.steps == []
