"""Drawing while writing and the low-memory mode: the order things happen in, the same pictures either way, and a
resume after a crash in the middle of both."""

from __future__ import annotations

import io
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flows.nightly_generation import nightly_generation
from seed_story.batch.codecs import features_from_bytes
from seed_story.batch.drawing import pending_draws
from seed_story.batch.openings import encode_openings
from seed_story.batch.pipelines import LoadedModel, ModelSpec, load_model, model_version
from seed_story.batch.planning import plan_run
from seed_story.batch.sources import load_manifest
from seed_story.batch.streaming import DrawAlongside
from seed_story.batch.writing import write_stories
from seed_story.generation.settings import DrawSettings
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import StepRecord, StoryRecord
from seed_story.storage import get_model, open_store
from tests.nightly_support import good_rows, nightly_settings, write_jsonl

STEPS = 3


def _night(tmp_path: Path, checkpoint: Path, store: Path, **model: object):
    rows = good_rows(tmp_path / "in", count=4, steps=STEPS)
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    settings = nightly_settings(manifest, str(store), checkpoint, write_batch_size=2, draw_batch_size=3)
    spec = settings.model.model_copy(update={"draw": DrawSettings(num_inference_steps=2, batch_size=2), **model})
    return settings.model_copy(update={"model": spec}), rows


def _outputs(store_root: Path, rows: list[dict]) -> dict[tuple[str, int], tuple[str, bytes, bytes]]:
    """(story, step) -> (text, features, picture PNG) of a finished run."""
    store, found = open_store(str(store_root)), {}
    for row in rows:
        keys = StoryKeys("night-1", row["story_id"])
        assert get_model(store, keys.story, StoryRecord).status == "complete"
        for step in range(1, STEPS + 1):
            record = get_model(store, keys.step(step), StepRecord)
            found[(row["story_id"], step)] = (record.text, store.get_bytes(record.feature_key),
                                              store.get_bytes(keys.step_image(step)))  # fmt: skip
    return found


def _record_uses(monkeypatch) -> list[tuple[str, str, frozenset[str]]]:
    """Log ("enter" | "exit", half, halves resident) of every use of the model's halves."""
    used: list[tuple[str, str, frozenset[str]]] = []
    original = LoadedModel.use

    @contextmanager
    def recording_use(self, half):
        with original(self, half) as pipeline:
            used.append(("enter", half, self.resident))
            try:
                yield pipeline
            finally:
                used.append(("exit", half, self.resident))

    monkeypatch.setattr(LoadedModel, "use", recording_use)
    return used


@pytest.fixture(scope="module")
def reference(prefect_api, toy_checkpoint_dir, tmp_path_factory):
    """A night drawn after writing (the CPU default), the pictures the other modes must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    settings, rows = _night(tmp, toy_checkpoint_dir, tmp / "store")
    assert not settings.model.draws_while_writing
    summary = nightly_generation(settings)
    assert len(summary.completed) == 4 and summary.pictures_drawn == 4 * STEPS
    return rows, _outputs(tmp / "store", rows)


def test_drawing_alongside_gives_the_same_stories_and_pictures_bit_for_bit(reference, toy_checkpoint_dir, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    rows, expected = reference
    settings, _ = _night(tmp_path, toy_checkpoint_dir, tmp_path / "store", draw_alongside=True)
    used = _record_uses(monkeypatch)
    summary = nightly_generation(settings)
    assert summary.pictures_drawn == 4 * STEPS
    assert _outputs(tmp_path / "store", rows) == expected
    # The first micro-batch's pictures are drawn before the second micro-batch's writing ends.
    last_write = max(i for i, (event, half, _) in enumerate(used) if (event, half) == ("exit", "writer"))
    assert any(half == "drawer" for _, half, _ in used[:last_write])


def test_low_memory_keeps_one_half_resident_and_gives_the_same_pictures(reference, toy_checkpoint_dir, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    rows, expected = reference
    settings, _ = _night(tmp_path, toy_checkpoint_dir, tmp_path / "store", memory="low")
    used = _record_uses(monkeypatch)
    nightly_generation(settings)
    assert _outputs(tmp_path / "store", rows) == expected
    assert all(resident == {half} for _, half, resident in used)  # only the half in use, whichever it is
    halves = [half for _, half, _ in used]
    assert "writer" in halves and "drawer" in halves
    assert "writer" not in halves[halves.index("drawer") :]  # every story written before anything is drawn


def test_pictures_are_drawn_while_the_writer_is_still_writing(toy_checkpoint_dir, tmp_path):
    """The writer waits, mid-story, until the first chunk of pictures is drawn: only drawing alongside lets it on."""
    settings, _ = _night(tmp_path, toy_checkpoint_dir, tmp_path / "store", draw_alongside=True)
    store, plan, model = _planned(settings)
    first_chunk = threading.Event()
    log: list[str] = []

    def drawn(count: int) -> None:
        log.append(f"drew {count}")
        first_chunk.set()

    drawer = DrawAlongside(store, model, plan.pending, "attempt-1", chunk=3, on_drawn=drawn)

    def stored(story_plan, step: int) -> None:
        log.append(f"stored {story_plan.story_id} {step}")
        drawer.stored(story_plan, step)
        if step == 2 and story_plan.story_id == plan.pending[0].story_id:
            assert first_chunk.wait(timeout=60), "nothing was drawn while the writer waited"

    with drawer, model.use("writer") as pipeline:
        report = write_stories(store, plan.pending, pipeline, "attempt-1", settings.limits, on_stored=stored)
    assert report.written == 4 * STEPS and drawer.report.drawn == 4 * STEPS and not drawer.report.failures
    assert log.index("drew 3") < max(i for i, line in enumerate(log) if line.startswith("stored"))
    assert pending_draws(store, plan.pending) == []


def _planned(settings):
    """A run planned and its openings encoded, as the flow's first stages leave it."""
    store = open_store(settings.store)
    manifest, data = load_manifest(settings.manifest, settings.s3, settings.image_roots, settings.limits)
    plan = plan_run(store, manifest, data, "night-1", settings.model, model_version(settings.model.path))
    model = load_model(settings.model)
    with model.use("writer") as pipeline:
        assert not encode_openings(store, plan.pending, pipeline, settings.s3, settings.limits)
    return store, plan, model


class Crash(BaseException):
    """What a SIGKILL does to a process, as far as the store can tell: everything stops at once."""


def test_a_crash_while_writing_and_drawing_resumes_without_redoing_work(reference, toy_checkpoint_dir, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    rows, expected = reference
    settings, _ = _night(tmp_path, toy_checkpoint_dir, tmp_path / "store", draw_alongside=True)
    store, plan, model = _planned(settings)
    # The night's first micro-batch as the flow's MLLM task runs it, until the process dies after its 5th stored
    # step, with a chunk of pictures drawn alongside by then.
    batch = plan.pending[:2]
    drawer = DrawAlongside(store, model, batch, "attempt-1", chunk=settings.draw_batch_size)
    stored = 0

    def stored_then_crash(story_plan, step: int) -> None:
        nonlocal stored
        drawer.stored(story_plan, step)
        stored += 1
        if stored == 5:
            deadline = time.monotonic() + 60
            while drawer.report.drawn < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            raise Crash

    with pytest.raises(Crash), drawer, model.use("writer") as pipeline:
        write_stories(store, batch, pipeline, "attempt-1", settings.limits, on_stored=stored_then_crash)
    pictures = [k for k in store.list("runs/night-1/") if re.search(r"/step_\d+\.png$", k)]
    drawn_before = {k: store.get_bytes(k) for k in pictures}
    assert len(drawn_before) == 3  # one chunk drawn; the steps queued after it stay undrawn, as after a SIGKILL

    summary = nightly_generation(settings)
    assert len(summary.completed) == 4 and summary.steps_resumed == 5
    assert summary.steps_written == 4 * STEPS - 5 and summary.pictures_drawn == 4 * STEPS - len(drawn_before)
    found = _outputs(tmp_path / "store", rows)
    for key, (text, features, picture) in found.items():
        # The stories go on with the same words; a replayed cache moves features by float rounding only.
        assert text == expected[key][0]
        torch.testing.assert_close(features_from_bytes(features), features_from_bytes(expected[key][1]))
        # Pictures drawn in other chunks after the resume may differ by one level (float sums in another batch).
        diff = np.abs(_pixels(picture) - _pixels(expected[key][2])).max()
        assert diff <= 1, key
    for key, png in drawn_before.items():
        assert store.get_bytes(key) == png  # nothing drawn before the crash was drawn again


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_model_spec_checks_its_memory_settings():
    with pytest.raises(ValueError, match="draw_device of its own needs memory: normal"):
        ModelSpec(path="m", device="cuda:0", draw_device="cuda:1", memory="low")
    with pytest.raises(ValueError, match="draw_alongside needs both halves resident"):
        ModelSpec(path="m", memory="low", draw_alongside=True)
    assert not ModelSpec(path="m").draws_while_writing  # both halves on the CPU's cores: in turn
    assert ModelSpec(path="m", device="cuda").draws_while_writing
    assert ModelSpec(path="m", device="cuda:0", draw_device="cuda:1").draws_while_writing
    assert not ModelSpec(path="m", device="cuda", memory="low").draws_while_writing
