"""deploy/prefect.yaml as the operations guide runs it on a bare host: deployed from a clone in a temporary folder
onto a real ``prefect server``, a process worker whose working directory comes from SEED_STORY_HOME, and the
automation that reschedules a crashed night. The worker is SIGKILLed mid-run; another worker finishes the night
with no human action and nothing written twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from seed_story.runstore.keys import RunKeys, StoryKeys
from seed_story.runstore.records import DrawRecord, RunSummary, StepRecord, StoryRecord
from seed_story.storage import get_model, open_store
from tests.nightly_support import good_rows, nightly_settings, write_jsonl
from tests.prefect_server import PREFECT, REPO, start_logged, stop_group

RUN = "night-1"
STORIES, STEPS = 4, 4


def _prefect(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run([*PREFECT, "--no-prompt", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done.stdout


async def _flow_run(run_id: object) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(run_id)  # type: ignore[arg-type]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The committed repo, cloned as an operator would (no venv inside: the worker's Python has the package)."""
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True, timeout=120)
    return target


def test_a_crashed_night_is_rescheduled_and_finished_by_another_worker(
    prefect_server: tuple[str, dict[str, str]], clone: Path, toy_checkpoint_dir: Path, tmp_path: Path
) -> None:
    url, env = prefect_server
    env = {**env, "SEED_STORY_HOME": str(clone)}
    env.pop("AWS_ENDPOINT_URL", None)
    for pool in ("gpu", "cpu", "train"):
        _prefect(["work-pool", "create", pool, "--type", "process", "--overwrite"], env, clone)
    _prefect(["deploy", "--all", "--prefect-file", "deploy/prefect.yaml"], env, clone)
    assert "seed-story-reschedule-crashed-nights" in _prefect(
        ["automation", "create", "--from-file", "deploy/prefect.yaml"], env, clone
    ) + _prefect(["automation", "ls"], env, clone)

    rows = good_rows(tmp_path / "in", count=STORIES, steps=STEPS)
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    night = nightly_settings(manifest, str(tmp_path / "store"), toy_checkpoint_dir, lease_seconds=3.0)
    slow = night.model.draw.model_copy(update={"num_inference_steps": 40})  # a night long enough to kill mid-way
    night = night.model_copy(update={"model": night.model.model_copy(update={"draw": slow}), "render": None})
    store_dir = tmp_path / "store"
    worker_args = [*PREFECT, "worker", "start", "--pool", "gpu", "--limit", "1"]
    # Workers start outside the clone: the flow run finds its code through SEED_STORY_HOME alone.
    first = start_logged([*worker_args, "--name", "w1"], env, tmp_path / "w1.log", cwd=tmp_path)
    second = None
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            started = run_deployment("nightly-generation/nightly-generation",
                                     parameters={"settings": night.model_dump(mode="json")}, timeout=0)  # fmt: skip
            deadline = time.monotonic() + 180
            while not list(store_dir.glob(f"runs/{RUN}/*/work/step_*.drawn.json")):
                assert first.poll() is None, (tmp_path / "w1.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "w1.log").read_text()[-3000:]
                time.sleep(0.05)
            os.kill(first.pid, signal.SIGKILL)  # the worker only: its flow-run process is on its own now
            second = start_logged([*worker_args, "--name", "w2"], env, tmp_path / "w2.log", cwd=tmp_path)
            deadline = time.monotonic() + 300
            while not (run := asyncio.run(_flow_run(started.id))).state.is_final() or run.state.is_crashed():
                assert time.monotonic() < deadline, (
                    f"still {run.state.name}: {(tmp_path / 'w2.log').read_text()[-3000:]}"
                )
                time.sleep(1)
    finally:
        stop_group(first)
        if second is not None:
            stop_group(second)

    logs = (tmp_path / "w2.log").read_text()
    assert run.state.is_completed(), logs[-3000:]
    assert run.run_count == 2  # the crashed attempt, then the rescheduled one on the other worker
    store = open_store(str(store_dir))
    crashed, retry = f"{started.id}.1", f"{started.id}.2"
    summary = get_model(store, RunKeys(RUN).summary(), RunSummary)
    assert summary.attempt == retry and not summary.failed and not summary.leased_elsewhere
    steps, draws = [], []
    for row in rows:
        keys = StoryKeys(RUN, row["story_id"])
        assert get_model(store, keys.story, StoryRecord).status == "complete"
        steps += [get_model(store, keys.step(i), StepRecord).attempt for i in range(1, STEPS + 1)]
        draws += [get_model(store, keys.drawn(i), DrawRecord).attempt for i in range(1, STEPS + 1)]
    assert set(steps) <= {crashed, retry} and crashed in steps and crashed in draws
    # Nothing written twice: the retry wrote and drew exactly what the crashed attempt had not.
    assert summary.steps_written == steps.count(retry) == STORIES * STEPS - steps.count(crashed)
    assert summary.pictures_drawn == draws.count(retry) == STORIES * STEPS - draws.count(crashed)
