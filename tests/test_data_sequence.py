"""The interleaved sequence builder (the release's decode_long_story_data) and its collate: golden layout, labels,
masks, k, drops."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from PIL import Image

from seed_story.data.sequence import (
    IGNORE_INDEX,
    SequenceSettings,
    build_caption_sample,
    build_sequence,
    collate,
    sample_length,
)
from seed_story.storyworld.toy import story_batch
from seed_story.tokenizer import ImageTokenIds, build_byte_tokenizer

N_TOKENS = 16
SETTINGS = SequenceSettings(num_image_tokens=N_TOKENS, image_size=28)


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer(N_TOKENS)


@pytest.fixture(scope="module")
def image_ids(tok):
    return ImageTokenIds.from_tokenizer(tok, N_TOKENS)


def pictures(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (12 + i, 10), (20 * i, 100, 200)) for i in range(n)]


def test_golden_layout_labels_and_masks(tok, image_ids):
    captions = ["Ab", "Cd", "Ef", "Gh"]
    sample = build_sequence(tok, image_ids, captions, pictures(4), None, SETTINGS, length=3)
    img = "<img>" + "".join(f"<img_{i:05d}>" for i in range(N_TOKENS)) + "</img>"
    assert sample.text == f"Ab{img}[INST]Cd{img}[INST]Ef{img}"
    ids = sample.input_ids
    # BOS, "Ab", picture 0 (1 + 16 + 1), "[INST]Cd", picture 1, "[INST]Ef", picture 2, EOS.
    assert len(ids) == 1 + 2 + 18 + 8 + 18 + 8 + 18 + 1 == 74
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert [int(i) for i in torch.nonzero(ids == image_ids.boi)] == [3, 29, 55]
    assert [int(i) for i in torch.nonzero(ids == image_ids.eoi)] == [20, 46, 72]
    supervised = ids[sample.labels != IGNORE_INDEX]
    assert tok.decode(supervised) == "[INST]Ef<img></s>"
    assert torch.equal(sample.labels[sample.labels != IGNORE_INDEX], supervised)
    assert torch.nonzero(sample.labels != IGNORE_INDEX).flatten().tolist() == [*range(47, 56), 73]
    assert torch.nonzero(sample.ids_cmp_mask).flatten().tolist() == [*range(4, 20), *range(30, 46)]
    assert torch.nonzero(sample.ids_gen_mask).flatten().tolist() == list(range(56, 72))
    assert sample.embeds_cmp_mask.tolist() == [True, True, False]
    assert sample.embeds_gen_mask.tolist() == [False, False, True]
    assert sample.images.shape == (3, 3, 28, 28) and sample.images.dtype == torch.float32
    assert sample.ids_cmp_mask.dtype == torch.bool and ids.dtype == torch.long


def test_two_pictures_have_no_inst_in_the_instruction(tok, image_ids):
    sample = build_sequence(tok, image_ids, ["Ab", "Cd", "Ef"], pictures(2), None, SETTINGS, length=2)
    assert sample.text.count("[INST]") == 1 and sample.text.startswith("Ab<img>")
    assert int(sample.ids_cmp_mask.sum()) == N_TOKENS and int(sample.ids_gen_mask.sum()) == N_TOKENS


def test_collate_matches_toy_story_batch(tok, image_ids):
    stories = [["The red fox runs.", "It hops.", "It stops."], ["A b", "C d"], ["x", "yy", "zzz", "w"]]
    samples = [build_sequence(tok, image_ids, s, pictures(len(s)), None, SETTINGS, length=len(s)) for s in stories]
    batch = collate(samples, tok.pad_token_id)
    oracle = story_batch(tok, image_ids, stories, vit_tokens=4, vit_dim=8)
    for name in ("input_ids", "attention_mask", "labels", "ids_cmp_mask", "ids_gen_mask"):
        assert torch.equal(getattr(batch, name), getattr(oracle, name)), name
    assert torch.equal(batch.embeds_cmp_mask, oracle.embeds_cmp_mask)
    assert torch.equal(batch.embeds_gen_mask, oracle.embeds_gen_mask)
    assert batch.images.shape == (9, 3, 28, 28)
    model_batch = batch.with_embeds(torch.zeros(9, 4, 8))
    assert model_batch.image_embeds.shape == (9, 4, 8)


def test_collate_pads_to_max_length(tok, image_ids):
    sample = build_sequence(tok, image_ids, ["Ab", "Cd"], pictures(2), None, SETTINGS, length=2)
    batch = collate([sample], tok.pad_token_id, pad_to=100)
    n = len(sample.input_ids)
    assert batch.input_ids.shape == (1, 100)
    assert (batch.input_ids[0, n:] == tok.pad_token_id).all() and (batch.labels[0, n:] == IGNORE_INDEX).all()
    assert batch.attention_mask[0].tolist() == [1] * n + [0] * (100 - n)
    assert not batch.ids_cmp_mask[0, n:].any() and not batch.ids_gen_mask[0, n:].any()
    with pytest.raises(ValueError, match="shorter"):
        collate([sample], tok.pad_token_id, pad_to=n - 1)


def test_k_is_uniform_over_2_to_n():
    rng = random.Random(0)
    draws = Counter(sample_length(rng, 10) for _ in range(9000))
    assert set(draws) == set(range(2, 11))
    chi2 = sum((c - 1000) ** 2 / 1000 for c in draws.values())
    assert chi2 < 26.1  # 8 degrees of freedom, p = 0.001


def test_rng_draws_k_deterministically(tok, image_ids):
    captions = [f"c{i}" for i in range(10)]
    a = build_sequence(tok, image_ids, captions, pictures(10), random.Random(3), SETTINGS)
    b = build_sequence(tok, image_ids, captions, pictures(10), random.Random(3), SETTINGS)
    assert torch.equal(a.input_ids, b.input_ids)
    assert len(a.embeds_gen_mask) == sample_length(random.Random(3), 10)


def test_drops_at_max_length(tok, image_ids):
    captions = ["Ab", "Cd", "Ef"]
    at = SequenceSettings(num_image_tokens=N_TOKENS, image_size=28, max_length=74)
    assert build_sequence(tok, image_ids, captions, pictures(3), None, at, length=3) is None
    above = at.model_copy(update={"max_length": 75})
    assert len(build_sequence(tok, image_ids, captions, pictures(3), None, above, length=3).input_ids) == 74


def test_caption_sample_generates_or_describes(tok, image_ids):
    img = "<img>" + "".join(f"<img_{i:05d}>" for i in range(N_TOKENS)) + "</img>"
    made = build_caption_sample(tok, image_ids, "Ab", pictures(1)[0], True, SETTINGS)
    assert made.text == f"Ab{img}" and len(made.input_ids) == 1 + 2 + 18 + 1
    assert tok.decode(made.input_ids[made.labels != IGNORE_INDEX]) == "<img></s>"
    assert torch.nonzero(made.ids_gen_mask).flatten().tolist() == list(range(4, 20)) and not made.ids_cmp_mask.any()
    assert made.embeds_gen_mask.tolist() == [True] and made.embeds_cmp_mask.tolist() == [False]
    told = build_caption_sample(tok, image_ids, "Ab", pictures(1)[0], False, SETTINGS)
    assert told.text == f"{img}Ab"
    assert tok.decode(told.input_ids[told.labels != IGNORE_INDEX]) == "Ab</s>"
    assert torch.nonzero(told.ids_cmp_mask).flatten().tolist() == list(range(2, 18)) and not told.ids_gen_mask.any()
    assert told.embeds_gen_mask.tolist() == [False] and told.embeds_cmp_mask.tolist() == [True]
    assert told.images.shape == (1, 3, 28, 28)
    # Stages 1 and 3 need a target picture: with SD pixels asked for, a pair always generates.
    with_sd = build_caption_sample(
        tok, image_ids, "Ab", pictures(1)[0], False, SETTINGS.model_copy(update={"sd_size": 16})
    )
    assert with_sd.embeds_gen_mask.tolist() == [True] and with_sd.sd_image.shape == (3, 16, 16)
    # Mixed with a story in one batch, the picture masks line up with the pictures.
    batch = collate([told, build_sequence(tok, image_ids, ["Ab", "Cd"], pictures(2), None, SETTINGS, length=2)], 0)
    assert batch.embeds_cmp_mask.tolist() == [True, True, False] and batch.embeds_gen_mask.tolist() == [
        False,
        False,
        True,
    ]
    too_long = SETTINGS.model_copy(update={"max_length": 21})
    assert build_caption_sample(tok, image_ids, "Ab", pictures(1)[0], True, too_long) is None
