"""Library pieces the flows call through thin tasks: manifest shards, merged summaries, finishing, publishing."""

from __future__ import annotations

import json

import pytest

from seed_story.batch.manifest import ManifestError, parse_manifest
from seed_story.batch.shards import write_manifest_shards
from seed_story.batch.sources import load_manifest
from seed_story.batch.summary import merge_summaries, summary_markdown
from seed_story.data.ingest import publish_shards
from seed_story.data.storystream import IngestReport
from seed_story.runstore.keys import RunKeys
from seed_story.runstore.records import RunSummary, StoryFailure
from seed_story.storage import LocalObjectStore, put_model


def _manifest(count: int, bad: int = 0) -> bytes:
    rows = [json.dumps({"story_id": f"s{i}", "image": f"{i}.png", "text": "Hi."}) for i in range(count)]
    return "\n".join(rows + ['{"story_id": "bad", "image": "x.png", "text": " "}'] * bad).encode() + b"\n"


def _summary(run_id: str, completed: list[str], seconds: float) -> RunSummary:
    return RunSummary(run_id=run_id, attempt="a", manifest="m", model_version="v1", started_at="t0",
                      finished_at="t1", rows=len(completed), bad_rows=[], skipped_finished=[], completed=completed,
                      failed=[], steps_written=2 * len(completed), steps_resumed=0, pictures_drawn=2 * len(completed),
                      seconds={"mllm": seconds})  # fmt: skip


def test_manifest_shards_are_round_robin_with_absolute_images(tmp_path):
    store = LocalObjectStore(tmp_path)
    manifest = parse_manifest(_manifest(5, bad=1), "night.jsonl", "/in")
    plan = write_manifest_shards(store, manifest, "r1", 2)
    assert plan.story_ids == [["s0", "s2", "s4"], ["s1", "s3"]]
    assert plan.rows == 6 and [p.line for p in plan.bad_rows] == [6]
    first = [json.loads(line) for line in store.get_bytes(RunKeys("r1").shard(0)).decode().splitlines()]
    assert [r["story_id"] for r in first] == ["s0", "s2", "s4"] and first[0]["image"] == "/in/0.png"
    assert len(plan.shards) == 2 and plan.shards[1].endswith("runs/r1/shards/shard-01.jsonl")
    # A shard's run allows the manifest's folder, where its absolute image paths lead (the scale-out flow).
    shard, _ = load_manifest(plan.shards[0], image_roots=[plan.image_root])
    assert [e.image_uri for e in shard.entries] == ["/in/0.png", "/in/2.png", "/in/4.png"]
    with pytest.raises(ManifestError, match="no valid row"):
        load_manifest(plan.shards[0])


def test_merged_summary_sums_the_shards_and_fails_a_silent_shards_stories(tmp_path):
    store = LocalObjectStore(tmp_path)
    plan = write_manifest_shards(store, parse_manifest(_manifest(4), "m.jsonl", "/in"), "r1", 2)
    put_model(store, RunKeys("r1").summary("p0"), _summary("r1", ["s0", "s2"], 3.0))
    merged = merge_summaries(store, plan, ["p0", "p1"], ["COMPLETED", "CRASHED"], run_id="r1", attempt="x",
                             manifest="m.jsonl", started="t")  # fmt: skip
    assert merged.completed == ["s0", "s2"] and merged.steps_written == 4
    assert merged.failed == [StoryFailure(story_id=s, stage="shard", reason="shard p1 ended as CRASHED without a "
                                          "summary") for s in ("s1", "s3")]  # fmt: skip
    assert merged.seconds == {"mllm (sum over shards)": 3.0} and merged.model_version == "v1"
    assert "| failed | 2 |" in summary_markdown(merged)


def test_publishing_shards_deletes_an_earlier_ingests_extra_shards(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    staged = tmp_path / "staged"
    staged.mkdir()
    for name in ("shard-00000.parquet", "ingest-report.json"):
        (staged / name).write_bytes(b"x")
    store.put_bytes("data/shard-00001.parquet", b"old")  # the earlier ingest had two shards
    keys, stale = publish_shards(store, staged, IngestReport(shards=["shard-00000.parquet"]), "data")
    assert keys == ["data/shard-00000.parquet"] and stale == 1
    assert sorted(store.list("data/")) == ["data/ingest-report.json", "data/shard-00000.parquet"]


def test_progress_is_one_record_a_watcher_reads_without_listing_the_run(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from seed_story.batch.progress import ProgressPublisher, count_progress, read_progress
    from seed_story.storage import LocalObjectStore

    class Counting(LocalObjectStore):
        lists = 0

        def list(self, prefix: str = "") -> list[str]:
            Counting.lists += 1
            return super().list(prefix)

    store = Counting(tmp_path)
    store.put_bytes("runs/r1/a/work/step_01.json", b"{}")  # an earlier attempt's step
    assert read_progress(store, "r1") is None
    with ProgressPublisher(store, "r1", total_steps=9, interval=0.01):
        with ThreadPoolExecutor(4) as pool:  # tasks count from the flow's worker threads
            list(pool.map(lambda _: count_progress("r1", None, steps=2, pictures=1), range(4)))
        count_progress("r1", None, stories=1)
        count_progress("r2", None, steps=5)  # another run's tasks: not this publisher's
    record = read_progress(store, "r1")
    assert (record.total_steps, record.steps_written, record.pictures_drawn, record.stories_finished) == (9, 9, 4, 1)
    assert Counting.lists == 1  # the publisher listed the run once, at the start; reading never lists
    for _ in range(5):
        read_progress(store, "r1")
    assert Counting.lists == 1
