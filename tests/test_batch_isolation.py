"""One bad story fails only itself: limits checked before work, bad batches retried story by story.

The stages run as the nightly flow runs them (tokenizer, MLLM, de-tokenizer, finish), as library calls on the toy
checkpoint and a local store, without Prefect.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageFile

from seed_story.batch.codecs import features_from_bytes
from seed_story.batch.drawing import draw_items, pending_draws
from seed_story.batch.finishing import finish_stories
from seed_story.batch.isolation import failure_reason, story_by_story
from seed_story.batch.manifest import parse_manifest
from seed_story.batch.openings import encode_openings
from seed_story.batch.pipelines import ModelSpec, load_model
from seed_story.batch.planning import plan_run
from seed_story.batch.writing import write_stories
from seed_story.generation.pipeline import StoryPipeline, load_image
from seed_story.generation.records import StoryRequest, WrittenStep, WrittenStory
from seed_story.generation.settings import DrawSettings, InputLimits
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import StoryFailure, StoryPlan, StoryRecord
from seed_story.storage import LocalObjectStore, ObjectStore, StorageError, get_model
from tests.nightly_support import good_rows

RUN = "night-1"
OnStep = Callable[[int, WrittenStep], None]


def png_declaring(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header (IHDR) declares ``width`` x ``height`` pixels; its data holds 64x64."""
    buffer = io.BytesIO()
    Image.new("L", (64, 64)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR data follows the signature, length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Sizes of the pictures PIL decodes during the test."""
    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def recording(self: ImageFile.ImageFile) -> object:
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording)
    return sizes


def _spec(checkpoint: Path) -> ModelSpec:
    return ModelSpec(path=str(checkpoint), draw=DrawSettings(num_inference_steps=2, batch_size=4))


@pytest.fixture(scope="module")
def pipeline(toy_checkpoint_dir: Path) -> StoryPipeline:
    return load_model(_spec(toy_checkpoint_dir)).pipeline


def _plans(store: ObjectStore, folder: Path, rows: list[dict], model: Path, limits: InputLimits) -> list[StoryPlan]:
    data = "\n".join(json.dumps(r) for r in rows).encode()
    manifest = parse_manifest(data, "night.jsonl", str(folder), limits=limits)
    assert not manifest.problems, manifest.problems
    return plan_run(store, manifest, data, RUN, _spec(model), "toy").pending


def _night(
    store: ObjectStore, plans: list[StoryPlan], pipeline: StoryPipeline, limits: InputLimits
) -> tuple[list[str], dict[str, StoryFailure]]:
    """The flow's stages on one micro-batch each; returns the completed story ids and the failures by story."""
    failures = encode_openings(store, plans, pipeline, limits=limits)

    def live() -> list[StoryPlan]:
        return [p for p in plans if p.story_id not in {f.story_id for f in failures}]

    failures += write_stories(store, live(), pipeline, "a1", limits).failures
    failures += draw_items(store, pending_draws(store, live()), pipeline, "a1").failures
    completed, failed = finish_stories(store, plans, failures)
    return completed, {f.story_id: f for f in failed}


def test_pictures_over_the_limits_fail_only_their_story_and_are_never_decoded(
    pipeline, toy_checkpoint_dir, tmp_path, decoded
):
    folder = tmp_path / "in"
    rows = good_rows(folder, count=2, steps=2)
    (folder / "bomb.png").write_bytes(png_declaring(20000, 20000))  # PIL itself refuses this one
    (folder / "big.png").write_bytes(png_declaring(13000, 13000))  # PIL would open this one
    # Cut short: an error even though weasyprint (imported with the tasks) turned PIL's truncated loading on.
    (folder / "broken.png").write_bytes((folder / "opening_0.png").read_bytes()[:60])
    (folder / "heavy.png").write_bytes(b"\0" * 3000)
    bad = {"bomb": "20000x20000", "big": "13000x13000", "broken": "cannot be read", "heavy": "max_picture_bytes"}
    rows += [{"story_id": name, "image": f"{name}.png", "text": rows[0]["text"], "steps": 2} for name in bad]
    limits = InputLimits(max_picture_bytes=2000)
    store = LocalObjectStore(tmp_path / "store")

    completed, failed = _night(store, _plans(store, folder, rows, toy_checkpoint_dir, limits), pipeline, limits)

    assert sorted(completed) == ["story-0", "story-1"]
    assert sorted(failed) == sorted(bad)
    for name, words in bad.items():
        assert failed[name].stage == "tokenizer" and words in failed[name].reason, failed[name]
        assert "\n" not in failed[name].reason
    assert failed["bomb"].reason == (
        "opening image is 20000x20000 (400,000,000 pixels), over the limit of 40,000,000 (max_picture_pixels)"
    )  # the limit decides, not PIL's bomb check (it would refuse this one with its own error)
    assert max(w * h for w, h in decoded) <= 64 * 64  # nothing over the limit was ever decoded
    record = get_model(store, StoryKeys(RUN, "big").story, StoryRecord)
    assert record.status == "failed" and "13000x13000" in record.failure_reason


def test_the_pixel_limit_decides_before_pil_and_files_are_sized_before_reading(tmp_path, decoded):
    with pytest.raises(ValueError, match=r"is 13000x13000 \(169,000,000 pixels\), over the limit of 40,000,000 "):
        load_image(png_declaring(13000, 13000))
    with pytest.raises(ValueError, match=r"is 30x30 \(900 pixels\), over the limit of 800 \(max_picture_pixels\)"):
        load_image(png_declaring(30, 30), InputLimits(max_picture_pixels=800))
    assert load_image(png_declaring(30, 20), InputLimits(max_picture_pixels=600)).size == (30, 20)
    assert set(decoded) == {(30, 20)}
    path = tmp_path / "p.png"
    path.write_bytes(png_declaring(8, 8) + b"\0" * 2000)
    with pytest.raises(ValueError, match="max_picture_bytes"):
        load_image(path, InputLimits(max_picture_bytes=1000))
    assert Image.MAX_IMAGE_PIXELS is not None  # PIL's own guard is back on for everyone else


def test_a_megabyte_opening_text_is_a_bad_row_and_never_reaches_the_writer():
    rows = [
        {"story_id": "ok", "image": "a.png", "text": "George wakes up.", "steps": 10},
        {"story_id": "huge", "image": "a.png", "text": "x" * 1_000_000, "steps": 2},
        {"story_id": "long-texts", "image": "a.png", "text": "Hi.", "texts": ["ok", "y" * 4001]},
        {"story_id": "many", "image": "a.png", "text": "Hi.", "texts": ["t"] * 11},
    ]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    manifest = parse_manifest(data, "night.jsonl", "/in", limits=InputLimits(max_steps=10))
    assert [r.story_id for r in manifest.rows] == ["ok"]  # only valid rows become plans, so reach a writer
    assert {p.story_id: (p.line, p.reason) for p in manifest.problems} == {
        "huge": (2, "opening text has 1000000 characters, over the limit of 4000 (max_text_chars)"),
        "long-texts": (3, "text 2 has 4001 characters, over the limit of 4000 (max_text_chars)"),
        "many": (4, "11 texts to illustrate, over the limit of 10 (max_steps)"),
    }


def test_a_text_over_the_token_limit_fails_only_its_story(pipeline, toy_checkpoint_dir, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    rows = good_rows(folder, count=2, steps=2)
    rows.append({"story_id": "wordy", "image": "opening_0.png", "text": "George plays. " * 150, "steps": 2})
    written: list[str] = []
    write = pipeline.write_story

    def spy(requests: list[StoryRequest], on_step: OnStep) -> list[WrittenStory]:
        written.extend(r.opening_text for r in requests)
        return write(requests, on_step=on_step)

    monkeypatch.setattr(pipeline, "write_story", spy)
    store = LocalObjectStore(tmp_path / "store")
    limits = InputLimits()  # 2100 characters fit; 2100 byte tokens do not

    completed, failed = _night(store, _plans(store, folder, rows, toy_checkpoint_dir, limits), pipeline, limits)

    assert sorted(completed) == ["story-0", "story-1"] and list(failed) == ["wordy"]
    assert failed["wordy"].stage == "mllm"
    assert failed["wordy"].reason == "opening text has 2100 tokens, over the limit of 1024 (max_text_tokens)"
    assert written and all("George plays." not in t for t in written)  # refused before any batch was built


def test_a_story_whose_drawing_raises_fails_alone_after_a_story_by_story_retry(
    pipeline, toy_checkpoint_dir, tmp_path, monkeypatch
):
    folder = tmp_path / "in"
    rows = good_rows(folder, count=3, steps=2)
    store = LocalObjectStore(tmp_path / "store")
    limits = InputLimits()
    plans = _plans(store, folder, rows, toy_checkpoint_dir, limits)
    assert not encode_openings(store, plans, pipeline) and not write_stories(store, plans, pipeline, "a1").failures
    poison = features_from_bytes(store.get_bytes(StoryKeys(RUN, "story-1").step_features(2)))
    batches: list[int] = []
    draw = pipeline.draw

    def poisoned(features: list[torch.Tensor]) -> list[Image.Image]:
        batches.append(len(features))
        if any(torch.equal(f, poison) for f in features):
            raise RuntimeError("CUDA error: an illegal memory access was encountered\n(more lines)")
        return draw(features)

    monkeypatch.setattr(pipeline, "draw", poisoned)
    report = draw_items(store, pending_draws(store, plans), pipeline, "a1")

    assert batches == [6, 2, 2, 2]  # the whole batch, then each story alone
    assert report.drawn == 4 and [(f.story_id, f.stage) for f in report.failures] == [("story-1", "detokenizer")]
    assert (
        report.failures[0].reason == "RuntimeError: CUDA error: an illegal memory access was encountered (more lines)"
    )
    completed, failed = finish_stories(store, plans, report.failures)
    assert sorted(completed) == ["story-0", "story-2"] and [f.story_id for f in failed] == ["story-1"]


def test_non_finite_features_fail_only_their_story(pipeline, toy_checkpoint_dir, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    rows = good_rows(folder, count=4, steps=2)
    encode, write = pipeline.encode_images, pipeline.write_story

    def nan_opening(images: list[Image.Image]) -> torch.Tensor:
        features = encode(images)
        features[1, 0, 0] = float("nan")  # the ViT's features of story-1's opening
        return features

    def inf_step(requests: list[StoryRequest], on_step: OnStep) -> list[WrittenStory]:
        def poisoned(index: int, step: WrittenStep) -> None:
            if index == 1 and step.index == 2:  # story-2 (story-1 failed before writing): its second step
                step.features[0, 0] = float("inf")
            on_step(index, step)

        return write(requests, on_step=poisoned)

    monkeypatch.setattr(pipeline, "encode_images", nan_opening)
    monkeypatch.setattr(pipeline, "write_story", inf_step)
    store = LocalObjectStore(tmp_path / "store")
    limits = InputLimits()

    completed, failed = _night(store, _plans(store, folder, rows, toy_checkpoint_dir, limits), pipeline, limits)

    assert sorted(completed) == ["story-0", "story-3"] and sorted(failed) == ["story-1", "story-2"]
    assert (failed["story-1"].stage, failed["story-2"].stage) == ("tokenizer", "mllm")
    assert "opening picture's features are not finite" in failed["story-1"].reason
    assert failed["story-2"].reason == "the features written for step 2 are not finite (NaN or inf)"
    keys = StoryKeys(RUN, "story-2")
    assert store.exists(keys.step(1)) and not store.exists(keys.step(2)) and not store.exists(keys.written)


def test_story_by_story_fails_only_what_fails_alone_and_leaves_storage_errors_to_the_task():
    calls: list[list[int]] = []

    def run(batch: list[int]) -> list[StoryFailure]:
        calls.append(batch)
        if 2 in batch:
            raise MemoryError("out of memory")
        return [StoryFailure(story_id="4", stage="s", reason="its own")] if 4 in batch else []

    failures = story_by_story([1, 2, 3, 4], run, str, "s")
    assert calls == [[1, 2, 3, 4], [1], [2], [3], [4]]
    assert [(f.story_id, f.reason) for f in failures] == [("2", "MemoryError: out of memory"), ("4", "its own")]

    def storage(batch: list[int]) -> list[StoryFailure]:
        raise StorageError("S3 is down")

    with pytest.raises(StorageError):
        story_by_story([1, 2], storage, str, "s")
    assert failure_reason(ValueError("x" * 400)).endswith("...") and len(failure_reason(ValueError("x" * 400))) == 300
