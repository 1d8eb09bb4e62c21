"""The nightly generation flow for real: Prefect's local API, the toy checkpoint, a local folder or S3 on loopback."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from prefect import flow, task

from flows.nightly_generation import nightly_generation
from seed_story.batch.manifest import ManifestError
from seed_story.batch.pipelines import _load
from seed_story.batch.progress import read_progress
from seed_story.runstore.keys import RunKeys, StoryKeys
from seed_story.runstore.records import RunSummary, StepRecord, StoryRecord
from seed_story.runstore.sequence import SEQUENCE_SCHEMA
from seed_story.storage import S3Settings, StorageError, get_model, open_store
from tasks.common import storage_errors_only
from tests.nightly_support import good_rows, nightly_settings, write_jsonl


def _check_story(store, run_id: str, story_id: str, steps: int) -> StoryRecord:
    keys = StoryKeys(run_id, story_id)
    record = get_model(store, keys.story, StoryRecord)
    assert record.status == "complete" and len(record.steps) == steps
    for name in record.image_files():
        assert store.get_bytes(keys.key(name)).startswith(b"\x89PNG")
    table = pq.read_table(io.BytesIO(store.get_bytes(keys.sequence)))
    assert table.schema.equals(SEQUENCE_SCHEMA)
    rows = table.to_pylist()
    assert [r["step"] for r in rows] == list(range(steps + 1))
    assert [r["text"] for r in rows[1:]] == [s.text for s in record.steps]
    assert all(store.exists(r["feature_key"]) and store.exists(r["image_key"]) for r in rows)
    assert len({r["model_version"] for r in rows}) == 1 and json.loads(rows[0]["settings"])["draw"]["seed"] == 42
    assert store.get_bytes(keys.key("book.html")).lower().startswith(b"<!doctype html>")
    return record


def test_five_stories_into_s3(prefect_api, toy_checkpoint_dir, s3_bucket, tmp_path):
    rows = good_rows(tmp_path / "in")
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    store_uri = f"s3://{s3_bucket.name}/books"
    s3 = S3Settings(endpoint_url=s3_bucket.endpoint_url)
    settings = nightly_settings(manifest, store_uri, toy_checkpoint_dir, s3=s3, write_batch_size=2, draw_batch_size=5)
    loads = _load.cache_info().misses
    summary = nightly_generation(settings)
    assert _load.cache_info().misses - loads <= 1  # one model load per process, not one per task
    assert sorted(summary.completed) == [r["story_id"] for r in rows] and not summary.failed
    assert summary.steps_written == summary.pictures_drawn == 15 and summary.steps_resumed == 0
    store = open_store(store_uri, settings.s3)
    for row in rows:
        record = _check_story(store, "night-1", row["story_id"], 3)
        if "texts" in row:
            assert [s.text for s in record.steps] == row["texts"]
    assert store.exists("runs/night-1/index.html") and store.exists("runs/night-1/manifests/night.jsonl")
    assert get_model(store, RunKeys("night-1").summary(), RunSummary).completed == summary.completed
    progress = read_progress(store, "night-1")  # what a watcher reads: one small record, not a listing
    assert progress is not None and (progress.total_steps, progress.steps_written, progress.pictures_drawn) == (15,) * 3
    assert progress.stories_finished == 5
    exported = store.get_bytes("runs/night-1/storystream.jsonl").decode().splitlines()
    assert {json.loads(line)["id"] for line in exported} == {r["story_id"] for r in rows}
    # Everything is stored under the prefix; nothing else in the bucket.
    listed = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]
    assert all(o["Key"].startswith("books/runs/night-1/") for o in listed)

    # A second night with the same run id finds every story finished and does nothing.
    again = nightly_generation(settings)
    assert sorted(again.skipped_finished) == sorted(summary.completed)
    assert again.completed == [] and again.steps_written == 0 and again.pictures_drawn == 0


def test_bad_rows_are_skipped_and_reported(prefect_api, toy_checkpoint_dir, tmp_path):
    rows: list[dict | str] = list(good_rows(tmp_path / "in", count=2))
    rows += [
        "{not json",
        {"story_id": "no-text", "image": "opening_0.png"},
        {"story_id": "../escape", "image": "opening_0.png", "text": "Hi."},
        {"story_id": "url", "image": "https://example.com/a.png", "text": "Hi."},
        {"story_id": "too-long", "image": "opening_0.png", "text": "Hi.", "steps": 1000},
        {"story_id": "missing-picture", "image": "nowhere.png", "text": "Hi.", "steps": 2},
    ]
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    summary = nightly_generation(nightly_settings(manifest, str(tmp_path / "store"), toy_checkpoint_dir))
    assert sorted(summary.completed) == ["story-0", "story-1"]
    assert {p.line: p.story_id for p in summary.bad_rows} == {
        3: None,
        4: "no-text",
        5: "../escape",
        6: "url",
        7: "too-long",
    }
    reasons = {p.line: p.reason for p in summary.bad_rows}
    assert "invalid JSON" in reasons[3] and "text" in reasons[4] and "URLs are not fetched" in reasons[6]
    assert [(f.story_id, f.stage) for f in summary.failed] == [("missing-picture", "tokenizer")]
    assert "not found" in summary.failed[0].reason
    store = open_store(str(tmp_path / "store"))
    failed = get_model(store, StoryKeys("night-1", "missing-picture").story, StoryRecord)
    assert failed.status == "failed" and "not found" in failed.failure_reason
    gallery = store.get_bytes("runs/night-1/index.html").decode()
    assert '<li class="failed">' in gallery and "opening image not found" in gallery


def test_duplicate_ids_or_no_valid_row_stop_the_night_before_any_work(prefect_api, toy_checkpoint_dir, tmp_path):
    rows = good_rows(tmp_path / "in", count=2)
    rows[1]["story_id"] = rows[0]["story_id"]
    manifest = write_jsonl(tmp_path / "in" / "night.csv.jsonl", rows)
    with pytest.raises(ManifestError, match="duplicate story ids: 'story-0' \\(lines 1, 2\\)"):
        nightly_generation(nightly_settings(manifest, str(tmp_path / "store"), toy_checkpoint_dir))
    write_jsonl(manifest, [{**rows[0], "image": "../escape.png"}])
    with pytest.raises(ManifestError, match=r"no valid row in manifest .*: 1 bad rows"):
        nightly_generation(nightly_settings(manifest, str(tmp_path / "store"), toy_checkpoint_dir))
    assert not (tmp_path / "store").exists()


def test_a_story_resumes_from_its_stored_steps(prefect_api, toy_checkpoint_dir, tmp_path):
    # Simulate a crash after step 2 of story-1: drop its later steps, pictures and done marks.
    rows = good_rows(tmp_path / "in", count=2, steps=4)
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    settings = nightly_settings(manifest, str(tmp_path / "store"), toy_checkpoint_dir)
    first = nightly_generation(settings)
    store = open_store(str(tmp_path / "store"))
    keys = StoryKeys("night-1", "story-1")
    before = [get_model(store, keys.step(i), StepRecord) for i in (1, 2, 3, 4)]
    for key in store.list(keys.prefix + "/"):
        name = key.rsplit("/", 1)[1]
        if name in ("story.json", "written.json", "sequence.parquet") or name.startswith(("step_03", "step_04")):
            store.delete(key)
    second = nightly_generation(settings)
    assert second.completed == ["story-1"] and second.skipped_finished == ["story-0"]
    assert second.steps_resumed == 2 and second.steps_written == 2 and second.pictures_drawn == 2
    after = [get_model(store, keys.step(i), StepRecord) for i in (1, 2, 3, 4)]
    assert after[:2] == before[:2]  # kept, not recomputed
    assert [a.attempt for a in after[2:]] != [b.attempt for b in before[2:]]
    assert [a.token_ids for a in after] == [b.token_ids for b in before]  # resumed exactly where it stopped
    assert first.completed == ["story-0", "story-1"]


def test_storage_errors_are_retried_and_bad_data_is_not(prefect_api):
    calls = {"storage": 0, "data": 0}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=storage_errors_only)
    def flaky(kind: str) -> str:
        calls[kind] += 1
        if calls[kind] == 1:
            raise StorageError("503 from the store") if kind == "storage" else ValueError("bad row")
        return "ok"

    @flow
    def both() -> list[str]:
        return [flaky("storage"), flaky.submit("data").result(raise_on_failure=False).__class__.__name__]

    assert both() == ["ok", "ValueError"]
    assert calls == {"storage": 2, "data": 1}


def test_each_attempt_of_a_retried_flow_run_has_its_own_id(prefect_api):
    from prefect import flow

    from flows.nightly_generation import attempt_id

    seen: list[str] = []

    @flow(retries=1, retry_delay_seconds=0)
    def flaky() -> None:
        seen.append(attempt_id())
        if len(seen) == 1:
            raise RuntimeError("the first attempt crashes")

    flaky()
    assert len(seen) == 2 and seen[0] != seen[1]
    assert seen[0].rsplit(".", 1)[0] == seen[1].rsplit(".", 1)[0]  # one flow run, two attempts
