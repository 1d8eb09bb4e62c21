"""Scale-out on a real Prefect server (127.0.0.1) with two process workers: the parent flow shards the night and
submits the shards as child flow runs of a deployment; the union is complete and no story is done twice."""

from __future__ import annotations

import re
import subprocess
import time

from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.nightly_generation import nightly_generation
from flows.scale_out import ScaleOutSettings, nightly_scale_out
from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import StepRecord, StoryRecord
from seed_story.storage import get_model, open_store
from tests.nightly_support import good_rows, nightly_settings, write_jsonl
from tests.prefect_server import PREFECT, REPO, start_logged, stop_group


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
                workers.append(start_logged(args, env, tmp_path / f"{name}.log"))
            summary = nightly_scale_out(ScaleOutSettings(nightly=night, shards=2, poll_seconds=1, shard_timeout_s=300))
    finally:
        for worker in workers:
            stop_group(worker)

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


def test_a_crashed_shard_is_waited_for_while_it_may_be_rescheduled(prefect_api):
    """The automation sets a crashed shard back to Scheduled within seconds: the parent must not give up on it
    at the first sight of Crashed, only once it stayed crashed for the grace period."""
    import threading

    from prefect import flow as make_flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Crashed, Scheduled

    from flows.scale_out import _wait_all

    @make_flow(name="shard-stand-in")
    def stand_in() -> None: ...

    with get_client(sync_client=True) as client:
        back, lost = (client.create_flow_run(stand_in, state=Crashed()) for _ in range(2))

        def reschedule_then_finish() -> None:
            time.sleep(1.0)
            client.set_flow_run_state(back.id, Scheduled(), force=True)
            client.set_flow_run_state(back.id, Completed(), force=True)

        helper = threading.Thread(target=reschedule_then_finish)
        helper.start()
        start = time.monotonic()
        states = _wait_all([back.id, lost.id], timeout_s=60, poll_s=1, crash_grace_s=4)
        helper.join()
    assert states == ["COMPLETED", "CRASHED"] and time.monotonic() - start >= 4
