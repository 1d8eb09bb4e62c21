"""Story leases: two attempts on one run id never work on the same story; a dead holder's stories are taken over
once its lease expires; a holder that lost a story writes nothing more to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from seed_story.batch.leases import FencedStore, LeaseKeeper, LeaseLost, claim, holder_alive, newest_lease
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import DrawRecord, RunSummary, StoryRecord
from seed_story.storage import ObjectStore, S3Settings, get_model, open_store
from tests.nightly_support import good_rows, write_jsonl

RUN = "night-1"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket.name}/leases", S3Settings(endpoint_url=bucket.endpoint_url))


def test_a_live_holder_keeps_its_story_and_an_ended_one_frees_it(store: ObjectStore) -> None:
    with LeaseKeeper(store, RUN, "a.1", ttl=30):
        assert claim(store, RUN, "s1", "a.1", ttl=30).held
        assert claim(store, RUN, "s1", "a.1", ttl=30).seq == 1  # ours already: kept, not claimed again
        taken = claim(store, RUN, "s1", "b.1", ttl=30)
        assert not taken.held and taken.other == "a.1" and holder_alive(store, RUN, "a.1", 30)
    assert not holder_alive(store, RUN, "a.1", 30)  # ended with its block
    again = claim(store, RUN, "s1", "b.1", ttl=30)
    assert again.held and again.seq == 2
    lease = newest_lease(store, RUN, "s1")
    assert lease is not None and lease.holder == "b.1" and lease.took_over == "a.1"


def test_a_silent_holder_expires_and_racing_takers_get_one_winner(store: ObjectStore) -> None:
    keeper = LeaseKeeper(store, RUN, "dead.1", ttl=0.5)
    keeper.beat()  # one beat, then silence: a SIGKILLed process
    assert claim(store, RUN, "s1", "dead.1", ttl=0.5).held
    assert not claim(store, RUN, "s1", "x.1", ttl=0.5).held
    time.sleep(0.8)
    results: dict[str, bool] = {}

    def take(holder: str) -> None:
        results[holder] = claim(store, RUN, "s1", holder, ttl=0.5).held

    takers = [threading.Thread(target=take, args=(f"t{i}.1",)) for i in range(4)]
    for t in takers:
        t.start()
    for t in takers:
        t.join()
    assert sum(results.values()) == 1
    lease = newest_lease(store, RUN, "s1")
    assert lease is not None and lease.seq == 2 and results[lease.holder]


def test_a_holder_that_lost_its_story_writes_nothing_more(store: ObjectStore) -> None:
    keys = StoryKeys(RUN, "s1")
    assert claim(store, RUN, "s1", "old.1", ttl=0.2).held
    old = FencedStore(store, RUN, "old.1")
    old.put_bytes(keys.key("work/step_01.json"), b"old")
    with pytest.raises(LeaseLost, match="not leased to this run"):
        FencedStore(store, RUN, "stranger.1").put_bytes(keys.key("work/step_01.json"), b"x")
    time.sleep(0.3)  # old.1 never beat: expired
    assert claim(store, RUN, "s1", "new.1", ttl=0.2).held
    with pytest.raises(LeaseLost, match="taken over"):
        old.put_bytes(keys.key("work/step_02.json"), b"old")
    FencedStore(store, RUN, "new.1").put_bytes(keys.key("work/step_02.json"), b"new")
    assert store.get_bytes(keys.key("work/step_02.json")) == b"new"
    old.put_bytes(f"runs/{RUN}/index.html", b"<html>")  # outside story folders: not fenced


# --- two real `seed-story generate` processes on one run id ---


def _generate(
    manifest: Path, store: str, checkpoint: Path, lease: float, endpoint: str | None, draw_steps: int = 2
) -> list[str]:
    args = [sys.executable, "-m", "seed_story.cli.main", "generate", "--manifest", str(manifest), "--store", store,
            "--model", str(checkpoint), "--run-id", RUN, "--draw-steps", str(draw_steps), "--draw-batch", "2",
            "--format", "none", "--no-progress", "--write-batch", "1", "--lease-seconds", str(lease),
            "--json"]  # fmt: skip
    return args + (["--s3-endpoint-url", endpoint] if endpoint else [])


def _summaries(store: ObjectStore) -> list[RunSummary]:
    keys = [k for k in store.list(f"runs/{RUN}/_attempts/") if k.endswith(".summary.json")]
    return [get_model(store, k, RunSummary) for k in keys]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_two_generate_processes_on_one_run_draw_each_picture_once(
    kind: str, request: pytest.FixtureRequest, prefect_api: str, toy_checkpoint_dir: Path, tmp_path: Path
) -> None:
    rows = good_rows(tmp_path / "in", count=4, steps=3)
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    endpoint = None
    if kind == "local":
        uri = str(tmp_path / "store")
        store = open_store(uri)
    else:
        bucket = request.getfixturevalue("s3_bucket")
        uri, endpoint = f"s3://{bucket.name}/night", bucket.endpoint_url
        store = open_store(uri, S3Settings(endpoint_url=endpoint))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "OMP_NUM_THREADS": "1"}
    # Enough denoising steps that a night outlasts the other process's start (~1 s of work at 2 steps).
    args = _generate(manifest, uri, toy_checkpoint_dir, 30, endpoint, draw_steps=40)
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    printed = [RunSummary.model_validate(json.loads(out)) for out, _ in outs]
    assert sorted(s.attempt for s in _summaries(store)) == sorted(s.attempt for s in printed)

    ids = sorted(r["story_id"] for r in rows)
    done = [sid for s in printed for sid in s.completed]
    assert sorted(done) == ids, [
        s.model_dump(include={"completed", "leased_elsewhere", "skipped_finished"}) for s in printed
    ]  # every story finished once, by one of the two
    assert sum(s.pictures_drawn for s in printed) == 4 * 3  # and every picture drawn once
    assert sum(s.steps_written for s in printed) == 4 * 3
    assert any(s.leased_elsewhere for s in printed)  # they overlapped: one met the other's leases
    for s in printed:
        assert not s.failed
        others = set(s.leased_elsewhere) | set(s.skipped_finished)
        assert sorted(others | set(s.completed)) == ids
    for sid in ids:
        keys = StoryKeys(RUN, sid)
        assert get_model(store, keys.story, StoryRecord).status == "complete"
        drawn = {get_model(store, keys.drawn(i), DrawRecord).attempt for i in (1, 2, 3)}
        assert len(drawn) == 1  # one attempt drew the whole story


def test_a_sigkilled_holders_stories_wait_for_expiry_then_are_taken_over(
    prefect_api: str, toy_checkpoint_dir: Path, tmp_path: Path
) -> None:
    rows = good_rows(tmp_path / "in", count=3, steps=3)
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    uri = str(tmp_path / "store")
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "OMP_NUM_THREADS": "1"}
    lease = 6.0
    args = _generate(manifest, uri, toy_checkpoint_dir, lease, None)
    killed = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store_dir = Path(uri)
    deadline = time.monotonic() + 120
    while not any(store_dir.glob(f"runs/{RUN}/*/work/step_01.json")):
        assert killed.poll() is None, killed.stderr.read().decode()[-2000:] if killed.stderr else ""
        assert time.monotonic() < deadline, "nothing was written in time"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    killed.stderr.close() if killed.stderr else None
    store = open_store(uri)
    dead = newest_lease(store, RUN, rows[0]["story_id"])
    assert dead is not None

    # At once: the dead run still looks alive; its stories are left to it, nothing is written.
    early = subprocess.run(args, env=env, capture_output=True, timeout=300)
    assert early.returncode == 0, early.stderr.decode()[-3000:]
    first = RunSummary.model_validate_json(early.stdout)
    if first.leased_elsewhere:  # it may have started after the lease ran out on a slow machine
        assert set(first.leased_elsewhere.values()) == {dead.holder} and first.pictures_drawn == 0

    time.sleep(lease)
    late = subprocess.run(args, env=env, capture_output=True, timeout=300)
    assert late.returncode == 0, late.stderr.decode()[-3000:]
    second = RunSummary.model_validate_json(late.stdout)
    assert not second.leased_elsewhere and not second.failed
    finished = set(first.completed) | set(second.completed) | set(second.skipped_finished)
    assert finished == {r["story_id"] for r in rows}
    lease_now = newest_lease(store, RUN, rows[0]["story_id"])
    assert lease_now is not None and lease_now.holder != dead.holder and lease_now.took_over is not None


def test_an_attempt_waits_for_its_own_crashed_predecessor_only(store: ObjectStore) -> None:
    from seed_story.batch.leases import earlier_attempt, wait_until_gone

    assert earlier_attempt("9e06.2", "9e06.1") and not earlier_attempt("9e06.2", "9e06.3")
    assert not earlier_attempt("9e06.2", "77aa.1") and not earlier_attempt("cli-run", "9e06.1")
    LeaseKeeper(store, RUN, "9e06.1", ttl=0.5).beat()  # the crashed attempt's last beat
    start = time.monotonic()
    wait_until_gone(store, RUN, ["9e06.1"], ttl=0.5, timeout=5)
    assert time.monotonic() - start < 4 and not holder_alive(store, RUN, "9e06.1", 0.5)
