"""Training in several processes for real: ``accelerate launch`` (torchrun underneath) starts 2 CPU processes that
talk over gloo, exactly as a GPU node starts 8 that talk over NCCL.

Toy batches are split by rank (each rank keeps its share of the global batch) and stage 1/3 noise is seeded per
picture, so 2 processes with 2 samples each train on what 1 process with 4 does. What may differ:
- stages 1 and 3 (a mean over equally many pictures per rank): only float summation order;
- stage 2's token-level cross-entropy: DDP averages the two ranks' means, while one process takes the mean over
  all the batch's tokens, so ranks with unequal caption lengths weigh their tokens slightly differently.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from seed_story.components import build_random
from seed_story.presets import from_preset
from seed_story.training import TrainConfig, train
from seed_story.training.config import ToyData
from seed_story.training.launch import LaunchSettings, launch_command, run_launched, write_launched_config
from seed_story.training.sources import toy_batches
from seed_story.training.trainer import STATE_FILE

TWO = LaunchSettings(processes=2, cpu=True, threads_per_process=1)
PART = {"stage1": "detokenizer", "stage2": "mllm", "stage3": "detokenizer"}
# Relative tolerance on each step's loss (see the module docstring for why stage 2's is looser).
LOSS_RTOL = {"stage1": 1e-4, "stage2": 2e-2, "stage3": 1e-4}


def _cfg(stage: str, out: Path, init: Path | None = None, **values: Any) -> TrainConfig:
    base = dict(output_dir=str(out), preset="tiny", max_steps=3, save_every=3, learning_rate=1e-3, warmup_steps=0,
                mixed_precision="no", log_every=1, data={"kind": "toy", "batch_size": 2, "max_scenes": 3})  # fmt: skip
    if init is not None:
        base["init"] = str(init)
    return TrainConfig.for_stage(stage, **{**base, **values})


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # every step logged once
    return [r["loss"] for r in rows]


def _weights(out: Path, part: str) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / f"{part}.safetensors"))


def test_toy_batches_split_the_global_batch_between_ranks() -> None:
    toy_components = build_random(from_preset("tiny"))
    data = ToyData(batch_size=2, max_scenes=3)
    whole = next(toy_batches("stage1", data.model_copy(update={"batch_size": 4}), toy_components, seed=3))
    parts = [next(toy_batches("stage1", data, toy_components, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert torch.equal(torch.cat([p.images for p in parts]), whole.images)
    assert torch.equal(torch.cat([p.noise_seeds for p in parts]), whole.noise_seeds)
    assert len(set(whole.noise_seeds.tolist())) == 4  # no picture twice
    stories = [next(toy_batches("stage2", data, toy_components, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert not torch.equal(stories[0].input_ids, stories[1].input_ids)


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_two_processes_train_like_one_with_the_global_batch(stage: str, toy_checkpoint_dir: Path,
                                                            tmp_path: Path) -> None:  # fmt: skip
    init = toy_checkpoint_dir if stage == "stage3" else None
    one = train(_cfg(stage, tmp_path / "one", init, data={"kind": "toy", "batch_size": 4, "max_scenes": 3}))
    two = _cfg(stage, tmp_path / "two", init)
    run_launched(two, TWO)

    assert _losses(tmp_path / "two") == pytest.approx(one.losses, rel=LOSS_RTOL[stage])
    a, b = _weights(tmp_path / "one", PART[stage]), _weights(tmp_path / "two", PART[stage])
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < (1e-4 if stage != "stage2" else 2e-3), worst  # Adam steps are ~lr = 1e-3 per weight
    # The checkpoint was written once, whole: both ranks' RNG states, the trainer state last.
    ckpt = tmp_path / "two" / "checkpoints" / "checkpoint-3"
    assert {"random_states_0.pkl", "random_states_1.pkl", STATE_FILE} <= {p.name for p in ckpt.iterdir()}
    assert json.loads((ckpt / STATE_FILE).read_text())["step"] == 3


def test_a_killed_two_process_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    values = dict(max_steps=12, save_every=4, schedule_steps=12)
    run_launched(_cfg("stage2", tmp_path / "whole", **values), TWO)

    split = _cfg("stage2", tmp_path / "split", **values)
    command = launch_command(split, write_launched_config(split), TWO)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    first = tmp_path / "split" / "checkpoints" / "checkpoint-4" / STATE_FILE
    deadline = time.monotonic() + 120
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, mid-run
    proc.wait(timeout=30)
    assert first.is_file() and not (tmp_path / "split" / "final").exists(), "the run was not stopped mid-way"

    run_launched(split.model_copy(update={"resume": True}), TWO)
    whole, resumed = _weights(tmp_path / "whole", "mllm"), _weights(tmp_path / "split", "mllm")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)  # bit for bit
    assert _losses(tmp_path / "split") == _losses(tmp_path / "whole")


def test_a_failed_launch_raises_with_the_tail_of_its_log(tmp_path: Path) -> None:
    cfg = _cfg("stage3", tmp_path / "out", init=tmp_path / "no-such-checkpoint")
    with pytest.raises(
        RuntimeError, match=r"stage3 in 2 processes exited with status \d+: error: .*no-such-checkpoint"
    ):
        run_launched(cfg, TWO)


def test_launch_commands_for_one_node_many_nodes_and_each_sharding(tmp_path: Path, monkeypatch) -> None:
    cfg = _cfg("stage2", tmp_path / "out", mixed_precision="bf16")

    def flags(launch: LaunchSettings) -> dict[str, str | bool]:
        words = launch_command(cfg, tmp_path / "c.json", launch)
        cut = words.index("seed_story.cli.main")
        out: dict[str, str | bool] = {}
        for i, word in enumerate(words[:cut]):
            if word.startswith("--"):
                nxt = words[i + 1] if i + 1 < cut else ""
                out[word] = True if nxt.startswith("--") or nxt == "-m" else nxt
        out["sharding"] = words[words.index("--sharding") + 1]
        return out

    ddp = flags(LaunchSettings(processes=8, cpu=False))
    assert ddp["--num_processes"] == "8" and ddp["--multi_gpu"] is True and "--cpu" not in ddp
    assert ddp["--mixed_precision"] == "bf16" and ddp["sharding"] == "none"
    fsdp = flags(LaunchSettings(processes=8, machines=2, machine_rank=1, main_address="10.0.0.5", sharding="fsdp",
                                cpu=False))  # fmt: skip
    assert (fsdp["--num_processes"], fsdp["--num_machines"], fsdp["--machine_rank"]) == ("16", "2", "1")
    assert fsdp["--main_process_ip"] == "10.0.0.5" and fsdp["--multi_gpu"] is True and fsdp["sharding"] == "fsdp"
    assert fsdp["--main_process_port"] == "29500"  # several machines agree on the port; one machine takes a free one
    assert 0 < int(ddp["--main_process_port"]) < 65536 and LaunchSettings(main_port=1234).port() == 1234
    zero2 = flags(LaunchSettings(processes=8, sharding="zero2", cpu=False))
    assert zero2["--use_deepspeed"] is True and zero2["--zero_stage"] == "2" and "--multi_gpu" not in zero2
    assert flags(LaunchSettings(processes=1, cpu=True))["--cpu"] is True
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")  # a Kubernetes indexed Job's second pod
    assert flags(LaunchSettings(processes=8, machines=2, main_address="head", cpu=False))["--machine_rank"] == "1"
    with pytest.raises(ValueError, match="needs main_address"):
        LaunchSettings(machines=2, machine_rank=0)
    with pytest.raises(ValueError, match="machine_rank 2 is not below machines 2"):
        LaunchSettings(machines=2, machine_rank=2, main_address="head")
