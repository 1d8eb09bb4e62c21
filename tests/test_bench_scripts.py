"""The benchmark scripts stay runnable (tiny sizes on the CPU); they are measured by hand, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_profile_runs_on_cpu_at_tiny_size(tmp_path):
    out = tmp_path / "profile.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "gpu_profile.py"),
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--story-steps",
        "3",
        "--image-steps",
        "2",
        "--text-tokens",
        "8",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in (
        "vit_ms_per_image_b1",
        "decode_tokens_per_s_b4",
        "unet_step_ms_b1",
        "engine_story_seconds_b1",
        "reference_story_seconds_b1",
        "kv_mib_per_story",
    ):
        assert report[key] > 0, key
    assert report["decoder_vs_transformers_max_rel_diff"] < 1e-4


def test_mini_eval_runs_on_the_toy_model(toy_checkpoint_dir, tmp_path):
    out = tmp_path / "mini_eval.json"
    cmd = [sys.executable, str(ROOT / "bench" / "mini_eval.py"), "--model", str(toy_checkpoint_dir), "--stories", "1",
           "--steps", "2", "--draw-steps", "2", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["condition"] for r in report["results"]][:2] == ["ground_truth", "upper_bound"]
    assert out.with_suffix(".png").stat().st_size > 0


def test_sampler_curve_runs_on_the_toy_model(toy_checkpoint_dir, tmp_path):
    out = tmp_path / "samplers.json"
    cmd = [sys.executable, str(ROOT / "bench" / "samplers.py"), "--model", str(toy_checkpoint_dir), "--stories", "1",
           "--steps", "1", "--samplers", "euler", "dpm++2m", "--draw-steps", "2", "3", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(r["sampler"], r["steps"]) for r in report["rows"]] == [("euler", 2), ("euler", 3), ("dpm++2m", 2),
                                                                     ("dpm++2m", 3)]  # fmt: skip
    assert report["chosen"] in report["rows"] and out.with_suffix(".png").stat().st_size > 0


def test_throughput_runs_on_the_toy_model(toy_checkpoint_dir, tmp_path):
    out = tmp_path / "throughput.json"
    cmd = [sys.executable, str(ROOT / "bench" / "throughput.py"), "--model", str(toy_checkpoint_dir), "--steps", "2",
           "--batches", "1", "2", "--lengths", "1", "2", "--length-batch", "2", "--draw-steps", "2",
           "--reference-draw-steps", "3", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["speedup"] > 0 and report["speedup_same_drawing"] > 0
    assert [r["stories"] for r in report["engine_by_batch"]] == [1, 2]
    for row in report["engine_by_batch"]:  # the toy model, not trained on the story world, may end a story early
        assert row["completed"] + row["failed"] == row["stories"] and row["pictures"] == row["steps_written"]
    assert [r["steps"] for r in report["reference_by_length"]] == [1, 2] and report["reference"]["draw"] == ["euler", 3]
    assert out.with_suffix(".png").stat().st_size > 0
