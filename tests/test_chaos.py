"""Chaos: a 12-story night on the S3 test server behind a proxy that fails a share of requests, SIGKILLed at five
random moments (while writing, drawing and rendering) and resumed after each. Every story ends complete exactly
once, no object stored before a kill is changed afterwards, and nothing temporary or half-uploaded is left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from seed_story.runstore.keys import StoryKeys
from seed_story.runstore.records import DrawRecord, StepRecord, StoryRecord
from seed_story.storage import S3Settings, get_model, open_store
from seed_story.storage.base import RESERVED_PREFIX
from tests.conftest import S3Bucket
from tests.nightly_support import good_rows, write_jsonl
from tests.s3_faults import FaultProxy

RUN = "chaos"
STORIES, STEPS = 12, 3
PREFIX = "night"
LEASE = 1.0
# Objects that are rewritten by design as a night goes on; everything else is written once and never changes.
MUTABLE = ("/_holders/", "/progress.json", "/summary.json", "/index.html", "/storystream.jsonl", "/_attempts/")


def _faults(n: int, method: str) -> str | None:
    """About one request in thirty fails: a 503, a dropped connection or a truncated answer (all retried)."""
    if n % 131 == 0:
        return "drop"
    if n % 89 == 0:
        return "truncate" if method == "GET" else "503"
    return "503" if n % 67 == 0 else None


def _objects(bucket: S3Bucket) -> dict[str, str]:
    """Every object of the night, key -> ETag, read straight from the server (not through the proxy)."""
    found, token = {}, None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=f"{PREFIX}/", **extra)
        found |= {o["Key"]: o["ETag"] for o in page.get("Contents", [])}
        if not page.get("IsTruncated"):
            return found
        token = page["NextContinuationToken"]


def _count(objects: dict[str, str], suffix: str) -> int:
    return sum(key.endswith(suffix) for key in objects)


def test_a_night_killed_five_times_under_s3_faults_finishes_exactly_once(
    s3_bucket: S3Bucket, prefect_api: str, toy_checkpoint_dir: Path, tmp_path: Path
) -> None:
    rows = good_rows(tmp_path / "in", count=STORIES, steps=STEPS)
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    rng = random.Random(20261206)
    total = STORIES * STEPS
    # Five moments, in the order a night passes them: two while writing, two while drawing, one while rendering.
    moments = [
        ("writing", "/work/step_", rng.randint(2, total // 3)),
        ("writing", "/work/step_", rng.randint(total // 2, total - 4)),
        ("drawing", ".drawn.json", rng.randint(2, total // 3)),
        ("drawing", ".drawn.json", rng.randint(total // 2, total - 4)),
        ("rendering", "/book.pdf", rng.randint(1, STORIES // 2)),
    ]
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "OMP_NUM_THREADS": "1"}
    with FaultProxy(s3_bucket.endpoint_url, _faults) as proxy:
        args = [sys.executable, "-m", "seed_story.cli.main", "generate", "--manifest", str(manifest),
                "--store", f"s3://{s3_bucket.name}/{PREFIX}", "--s3-endpoint-url", proxy.url, "--model",
                str(toy_checkpoint_dir), "--run-id", RUN, "--draw-steps", "2", "--draw-batch", "4", "--write-batch",
                "2", "--format", "pdf", "--no-progress", "--lease-seconds", str(LEASE)]  # fmt: skip
        before: dict[str, str] = {}
        kills = []
        for phase, suffix, threshold in moments:
            if suffix == "/work/step_":
                threshold_of = lambda objs: sum("/work/step_" in k and not k.endswith(".drawn.json") for k in objs)  # noqa: E731
            else:
                threshold_of = lambda objs, s=suffix: _count(objs, s)  # noqa: E731
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 240
            while proc.poll() is None and threshold_of(_objects(s3_bucket)) < threshold:
                assert time.monotonic() < deadline, f"no progress to the {phase} moment"
                time.sleep(0.3)  # each listing is work for the S3 server in this process: not too often
            if proc.poll() is None:
                snapshot = _objects(s3_bucket)  # everything stored up to the kill (and a little after)
                proc.send_signal(signal.SIGKILL)
                kills.append((phase, threshold_of(snapshot)))
            stderr = proc.communicate(timeout=60)[1].decode()
            assert proc.returncode in (0, -signal.SIGKILL), stderr[-3000:]
            after = _objects(s3_bucket)
            before |= {k: v for k, v in after.items() if not any(m in k for m in MUTABLE)}
            time.sleep(LEASE * 1.5)  # the killed attempt's leases lapse
        done = subprocess.run(args, env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert proxy.faults > 10  # the store really met faults on the way

    assert len(kills) >= 4, kills  # (the render moment may pass before the watcher sees it on a fast machine)
    final = _objects(s3_bucket)
    changed = {k for k, etag in before.items() if final.get(k) != etag}
    assert not changed, sorted(changed)[:10]  # nothing stored before a kill was rewritten differently or lost
    assert not [k for k in final if RESERVED_PREFIX in k]
    uploads = s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", [])
    assert not uploads

    store = open_store(f"s3://{s3_bucket.name}/{PREFIX}", S3Settings(endpoint_url=s3_bucket.endpoint_url))
    for row in rows:
        keys = StoryKeys(RUN, row["story_id"])
        record = get_model(store, keys.story, StoryRecord)
        assert record.status == "complete" and [s.index for s in record.steps] == list(range(1, STEPS + 1))
        for i in range(1, STEPS + 1):
            step = get_model(store, keys.step(i), StepRecord)
            drawn = get_model(store, keys.drawn(i), DrawRecord)
            assert step.step == i and drawn.image_key == keys.step_image(i)
        assert store.exists(keys.key("book.pdf")) and store.exists(keys.sequence)
        assert len(store.list(keys.key("lease/"))) <= 1 + len(kills)  # one claim, at most one takeover per kill
