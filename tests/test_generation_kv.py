"""The batched story KV cache and the attention-sink layout, checked against plain forwards."""

from __future__ import annotations

import pytest
import torch

from seed_story.generation.decoder import LlamaDecoder, merge_lora_for_inference
from seed_story.generation.layout import RowLayout
from seed_story.generation.settings import SinkSettings
from seed_story.models.mllm import SeedStoryMLLM


@pytest.fixture
def mllm(tiny_config):
    model = SeedStoryMLLM(tiny_config.mllm).eval()
    for name, p in model.named_parameters():
        if "lora_B" in name or "modules_to_save" in name:
            torch.nn.init.normal_(p, mean=1.0 if "modules_to_save" in name else 0.0, std=0.05)
    return model


@pytest.fixture
def decoder(mllm):
    merge_lora_for_inference(mllm)
    return LlamaDecoder(mllm)


def _new_kv(decoder, batch_size):
    return decoder.new_cache(batch_size, torch.device("cpu"), torch.float32)


def _append(mllm, decoder, kv, chunks):
    width = max(len(c) for c in chunks)
    ids = torch.zeros(len(chunks), width, dtype=torch.long)
    valid = torch.zeros(len(chunks), width, dtype=torch.bool)
    for i, c in enumerate(chunks):
        if c:
            ids[i, width - len(c) :] = torch.tensor(c)
            valid[i, width - len(c) :] = True
    return decoder(mllm.language_model.embed_tokens(ids), kv, valid)


@torch.no_grad()
def test_ragged_incremental_batch_matches_separate_full_forwards(mllm, decoder):
    """The lean decoder over the story cache reproduces transformers' own forward of each story."""
    lm = mllm.language_model
    stories = [list(range(10, 31)), list(range(40, 47))]
    kv = _new_kv(decoder, 2)
    # Prefill different lengths, then feed uneven chunks, as the writer does.
    _append(mllm, decoder, kv, [stories[0][:12], stories[1][:3]])
    _append(mllm, decoder, kv, [stories[0][12:13], stories[1][3:6]])
    last = _append(mllm, decoder, kv, [stories[0][13:], stories[1][6:]])
    for row, story in enumerate(stories):
        full = lm(input_ids=torch.tensor([story])).last_hidden_state[0, -1]
        torch.testing.assert_close(last[row, -1], full, atol=1e-5, rtol=1e-4)
    assert kv.valid_counts().tolist() == [21, 7]


@torch.no_grad()
def test_truncate_then_continue_equals_never_having_generated(mllm, decoder):
    lm = mllm.language_model
    kv = _new_kv(decoder, 1)
    _append(mllm, decoder, kv, [[5, 6, 7, 8]])
    _append(mllm, decoder, kv, [[99]])  # a generated token we roll back
    kv.truncate_row(0, 4)
    last = _append(mllm, decoder, kv, [[9, 10]])
    full = lm(input_ids=torch.tensor([[5, 6, 7, 8, 9, 10]])).last_hidden_state
    torch.testing.assert_close(last[0, -1], full[0, -1], atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_eviction_repositions_keys_as_if_encoded_contiguously(mllm, decoder):
    tokens = list(range(20, 32))
    kv = _new_kv(decoder, 1)
    _append(mllm, decoder, kv, [tokens])
    kept = [0, 1, 7, 8, 9, 10, 11]
    kv.select([0], [torch.tensor(kept)])
    assert kv.pos[0].tolist() == list(range(len(kept))) and kv.next_pos.tolist() == [len(kept)]
    # Layer-0 keys and values depend only on the token and its position: compare with a fresh encode.
    fresh = _new_kv(decoder, 1)
    _append(mllm, decoder, fresh, [[tokens[i] for i in kept]])
    n = len(kept)
    torch.testing.assert_close(kv.keys[0][:, :, :n], fresh.keys[0][:, :, :n], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(kv.values[0][:, :, :n], fresh.values[0][:, :, :n])
    # Layer-1 keys saw the evicted tokens, so they must differ: the test can tell.
    assert not torch.allclose(kv.keys[1][:, :, :n], fresh.keys[1][:, :, :n], atol=1e-4)


def _story_layout(steps: int, text: int, image_tokens: int, sink: SinkSettings) -> tuple[RowLayout, int]:
    """Append ``steps`` steps of ``text`` tokens + a picture, evicting as the writer does; return peak n."""
    layout, peak = RowLayout(), 0
    for _ in range(steps):
        while len(layout.images) + 1 > sink.window_images:
            keep = layout.evict_oldest(sink)
            assert keep == sorted(set(keep))
        layout.append(text + image_tokens + 2, [text], image_tokens)
        peak = max(peak, layout.n)
    return layout, peak


def test_sink_keeps_start_head_and_tail_of_evicted_pictures():
    sink = SinkSettings(window_images=2, start_tokens=4, head_context=4, head_tokens=8, tail_tokens=9)
    layout = RowLayout()
    layout.append(30, [10], 16)  # step 0: 10 text tokens, <img> at 10, 16 slots, </img> at 27, 2 more
    layout.append(20, [2], 16)
    keep = layout.evict_oldest(sink)
    # start tokens 0..3, head 6..17 (4 before <img> at 10 .. 7 slots), tail 19..27 (8 slots + </img>)
    assert keep[:25] == [0, 1, 2, 3, *range(6, 18), *range(19, 28)]
    assert keep[25:] == list(range(28, 50))
    assert layout.start_tokens == 4 and layout.pieces == [21]
    assert layout.images == [(25 + 2 + 2, 25 + 2 + 2 + 17)]


def test_sink_bounds_the_cache_however_long_the_story():
    sink = SinkSettings(window_images=3, max_sink_images=4)
    _, peak_25 = _story_layout(25, text=30, image_tokens=16, sink=sink)
    layout, peak_200 = _story_layout(200, text=30, image_tokens=16, sink=sink)
    assert peak_200 == peak_25
    assert len(layout.pieces) == 4
    assert layout.n <= sink.sink_bound() + sink.window_images * (30 + 18)


def test_disabled_sink_is_a_sliding_window_that_keeps_bos():
    sink = SinkSettings(enabled=False, window_images=2)
    layout, _ = _story_layout(6, text=5, image_tokens=4, sink=sink)
    assert layout.start_tokens == 1 and layout.pieces == []
    assert layout.n == 1 + 2 * (5 + 6)
