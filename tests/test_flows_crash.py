"""Kill the nightly flow's process (SIGKILL) mid-run, run it again: every story finishes exactly once, and what
was stored before the kill is kept, not recomputed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flows.nightly_generation import nightly_generation
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import DrawRecord, StepRecord, StoryRecord
from seed_story.storage import get_model, open_store
from tests.nightly_support import good_rows, nightly_settings, write_jsonl

RUN = "night-1"


LEASE = 1.0  # seconds a killed run holds its stories before the next one may take them over


def _run_until(args: list[str], env: dict[str, str], store: Path, pattern: str, timeout: float = 120) -> None:
    """Start the CLI and SIGKILL it as soon as a file matching ``pattern`` appears in the store; return once its
    stories' leases have expired."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not any(store.glob(pattern)):
            assert proc.poll() is None, f"the flow ended before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "nothing was stored in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(LEASE * 1.5)


def test_sigkill_mid_run_then_resume(prefect_api, toy_checkpoint_dir, tmp_path):
    rows = good_rows(tmp_path / "in", count=5, steps=4)
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    store_dir = tmp_path / "store"
    args = [
        sys.executable, "-m", "seed_story.cli.main", "generate", "--manifest", str(manifest), "--store", str(store_dir),
        "--model", str(toy_checkpoint_dir), "--run-id", RUN, "--draw-steps", "2", "--draw-batch", "2", "--format",
        "none", "--no-progress", "--write-batch", "1", "--lease-seconds", str(LEASE),
    ]  # fmt: skip
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "OMP_NUM_THREADS": "1"}
    run = store_dir / "runs" / RUN

    # 1. Killed while the MLLM writes (after the first stored step), 2. killed while the de-tokenizer draws.
    _run_until(args, env, store_dir, f"runs/{RUN}/*/work/step_01.json")
    store = open_store(str(store_dir))
    written_1 = {k: get_model(store, k, StepRecord) for k in store.list(f"runs/{RUN}/") if _is_step(k)}
    assert written_1 and not list(run.glob("*/story.json"))
    _run_until(args, env, store_dir, f"runs/{RUN}/*/work/step_*.drawn.json")
    drawn_2 = {k: get_model(store, k, DrawRecord) for k in store.list(f"runs/{RUN}/") if k.endswith(".drawn.json")}
    written_2 = {k: get_model(store, k, StepRecord) for k in store.list(f"runs/{RUN}/") if _is_step(k)}
    assert written_2.items() >= written_1.items()  # the second run kept the first one's steps
    assert drawn_2 and not list(run.glob("*/story.json"))

    # 3. The next run finishes the night.
    summary = nightly_generation(nightly_settings(manifest, str(store_dir), toy_checkpoint_dir, lease_seconds=LEASE))
    ids = sorted(r["story_id"] for r in rows)
    assert sorted(summary.completed) == ids and not summary.failed and not summary.skipped_finished, summary
    for key, record in written_2.items():
        assert get_model(store, key, StepRecord) == record  # written before a kill: kept as is
    for key, record in drawn_2.items():
        assert get_model(store, key, DrawRecord) == record  # drawn before the second kill: not drawn again
    assert summary.pictures_drawn == 20 - len(drawn_2)
    assert summary.steps_written == 20 - len(written_2)
    for sid in ids:
        keys = StoryKeys(RUN, sid)
        record = get_model(store, keys.story, StoryRecord)
        assert [s.index for s in record.steps] == [1, 2, 3, 4]
        assert sorted(k for k in store.list(keys.key("work/")) if _is_step(k)) == [keys.step(i) for i in range(1, 5)]


def _is_step(key: str) -> bool:
    name = key.rsplit("/", 1)[1]
    return name.startswith("step_") and name.endswith(".json") and not name.endswith(".drawn.json")
