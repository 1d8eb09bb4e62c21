"""``seed-story demo`` end to end, this tree against an earlier commit, side by side in one run.

The earlier commit is checked out into a temporary git worktree and run with this venv (``PYTHONPATH`` puts its
packages first); runs alternate (earlier, this, earlier, this, ...) so that the machine's drift hits both alike.
Each run writes into a fresh folder and is timed from process start to exit. Writes
bench/results/demo_time.json with the medians and ``speedup`` (earlier / this) at the top level.

.venv/bin/python bench/demo_time.py [--baseline 05583b8] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The last commit before the throughput work (issue 22): the demo as it was measured at ~27 s.
BASELINE = "05583b8"


def timed_demo(source: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(source)}
    env.pop("PREFECT_API_URL", None)  # both start the way a new user's first run does
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "seed_story.cli.main", "demo", "--out", str(out)], env=env,
                          cwd=out.parent, capture_output=True, text=True, timeout=600)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"demo from {source} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help="git commit (or ref) to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "demo_time.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="seed-story-demo-time-"))
    baseline = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline], check=True,
                   capture_output=True)  # fmt: skip
    times: dict[str, list[float]] = {"baseline": [], "this": []}
    try:
        for run in range(args.runs):
            for name, source in (("baseline", baseline), ("this", ROOT)):
                out = work / f"{name}-{run}"
                times[name].append(round(timed_demo(source, out), 2))
                shutil.rmtree(out, ignore_errors=True)
                print(f"run {run + 1}/{args.runs} {name}: {times[name][-1]} s", flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    report = {
        "speedup": round(medians["baseline"] / medians["this"], 2),
        "baseline_commit": args.baseline,
        "median_seconds": medians,
        "seconds": times,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
