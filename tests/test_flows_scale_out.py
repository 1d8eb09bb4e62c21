"""Scale-out on a real Prefect server (127.0.0.1) with two process workers: the parent flow shards the night and
submits the shards as child flow runs of a deployment; the union is complete and no story is done twice."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.nightly_generation import nightly_generation
from flows.scale_out import ScaleOutSettings, nightly_scale_out
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import StepRecord, StoryRecord
from seed_story.storage import get_model, open_store
from tests.nightly_support import good_rows, nightly_settings, write_jsonl

REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # A session of its own, so teardown can stop the whole process group (server workers, flow-run children).
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real ``prefect server`` on a free loopback port, with its own home; yields (API URL, env for workers)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PREFECT_LOGGING_LEVEL": "INFO"}  # fmt: skip
    args = [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = _start(args, env, tmp_path / "srv.log")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "srv.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "prefect server did not become healthy in 90 s"
                time.sleep(0.5)
        yield url, env
    finally:
        _stop(server)


def test_two_workers_share_a_night(prefect_server, toy_checkpoint_dir, tmp_path):
    url, env = prefect_server
    rows = good_rows(tmp_path / "in", count=4)
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    night = nightly_settings(manifest, str(tmp_path / "store"), toy_checkpoint_dir)
    subprocess.run([*PREFECT, "work-pool", "create", "test-gpu", "--type", "process"], env=env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    workers = []
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            nightly_generation.from_source(str(REPO), "flows/nightly_generation.py:nightly_generation").deploy(
                "gpu-shard", work_pool_name="test-gpu", print_next_steps=False
            )
            for name in ("w1", "w2"):
                args = [*PREFECT, "worker", "start", "--pool", "test-gpu", "--name", name, "--limit", "1"]
                workers.append(_start(args, env, tmp_path / f"{name}.log"))
            summary = nightly_scale_out(ScaleOutSettings(nightly=night, shards=2, poll_seconds=1, shard_timeout_s=300))
    finally:
        for worker in workers:
            _stop(worker)

    ids = sorted(r["story_id"] for r in rows)
    assert sorted(summary.completed) == ids and not summary.failed
    store = open_store(str(tmp_path / "store"))
    attempts = {}
    for sid in ids:
        keys = StoryKeys("night-1", sid)
        assert get_model(store, keys.story, StoryRecord).status == "complete"
        steps = [get_model(store, keys.step(i), StepRecord) for i in (1, 2, 3)]
        assert len({s.attempt for s in steps}) == 1  # one flow run wrote the whole story
        attempts[sid] = steps[0].attempt
    # Two child flow runs, each with its own stories (round robin), on two different workers.
    assert len(set(attempts.values())) == 2
    assert attempts["story-0"] == attempts["story-2"] != attempts["story-1"] == attempts["story-3"]
    logs = [(tmp_path / f"{w}.log").read_text() for w in ("w1", "w2")]
    # Each worker started one shard (a worker that races for a run already taken is aborted by the server).
    ran = [re.findall(r"Flow run '(night-1-shard-\d+)' submitted to infrastructure", log) for log in logs]
    assert sorted(ran) == [["night-1-shard-00"], ["night-1-shard-01"]], logs
    assert store.exists("runs/night-1/index.html") and store.exists("runs/night-1/summary.json")
    assert sorted(store.list("runs/night-1/parts/")) == [
        "runs/night-1/parts/shard-00.progress.json", "runs/night-1/parts/shard-00.summary.json",
        "runs/night-1/parts/shard-01.progress.json", "runs/night-1/parts/shard-01.summary.json"
    ]  # fmt: skip
