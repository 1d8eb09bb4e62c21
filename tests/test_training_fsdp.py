"""Sharded training (torch's ``fully_shard``, FSDP2) in 2 launched CPU processes over gloo, on the ``tiny`` preset.

Each rank keeps its share of the toy global batch, so FSDP, DDP and one process with the whole batch train on the
same samples. FSDP and DDP compute the same per-rank gradients and average them (reduce-scatter vs all-reduce),
so they agree to float rounding; one process differs in stage 2's token-level cross-entropy, a mean over the whole
batch's tokens rather than the mean of the two ranks' means (see test_training_multiprocess.py).
"""

from __future__ import annotations

import json
import math
import shutil
import socket
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint import FileSystemReader

from seed_story.components import build_random, load_components
from seed_story.models.detokenizer import build_detokenizer
from seed_story.models.mllm import SeedStoryMLLM
from seed_story.presets import from_preset
from seed_story.training import TrainConfig, train
from seed_story.training.launch import LaunchSettings, run_launched
from seed_story.training.run import build_task
from seed_story.training.sharding import SHARDED_STATE, mixed_precision_policy, shard_units
from seed_story.training.trainer import STATE_FILE, Trainer

# Measured on these 4 steps: FSDP vs DDP, losses and gradient norms agree to 2e-7 relative and every weight to
# 9e-8. FSDP vs one process: losses to 4e-5 relative (the bound is test_training_multiprocess.py's for the token
# weighting above), weights to 2e-6 on average; single weights whose gradients are near zero (LoRA's B starts at 0)
# differ by up to ~2e-3, as Adam turns tiny gradient differences into steps of ~lr = 1e-3.
DDP_LOSS_RTOL, DDP_WEIGHT_ATOL = 1e-5, 1e-6
ONE_LOSS_RTOL, ONE_WEIGHT_MEAN = 2e-2, 2e-5


def _launch(sharding: str) -> LaunchSettings:
    with socket.socket() as s:  # a free port: other test runs on this machine may be launching too
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return LaunchSettings(processes=2, sharding=sharding, cpu=True, threads_per_process=1, main_port=port)


def _cfg(out: Path, stage: str = "stage2", **values: Any) -> TrainConfig:
    # Two batches a step, so FSDP accumulates gradients without reducing them in between.
    base = dict(output_dir=str(out), preset="tiny", max_steps=4, save_every=2, learning_rate=1e-3,
                warmup_steps=0, gradient_accumulation_steps=2, mixed_precision="no", log_every=1,
                data={"kind": "toy", "batch_size": 2, "max_scenes": 3})  # fmt: skip
    return TrainConfig.for_stage(stage, **{**base, **values})


def _rows(out: Path) -> list[dict[str, float]]:
    """Each step's metrics but its duration."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # every step logged once
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _mllm(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / "mllm.safetensors"))


def _differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    assert a.keys() == b.keys()
    return torch.cat([(a[k] - b[k]).abs().flatten() for k in a])


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four uninterrupted stage-2 steps (two batches each) in 2 FSDP processes."""
    out = tmp_path_factory.mktemp("fsdp") / "whole"
    run_launched(_cfg(out), _launch("fsdp"))
    return out


def test_fsdp_trains_like_ddp_and_like_one_process(fsdp_run: Path, tmp_path: Path) -> None:
    run_launched(_cfg(tmp_path / "ddp"), _launch("none"))
    one = train(_cfg(tmp_path / "one", data={"kind": "toy", "batch_size": 4, "max_scenes": 3}))

    fsdp, ddp = _rows(fsdp_run), _rows(tmp_path / "ddp")
    for key in ("loss", "lm_loss", "rec_loss", "grad_norm"):  # the clipped norm is the global one
        assert [r[key] for r in fsdp] == pytest.approx([r[key] for r in ddp], rel=DDP_LOSS_RTOL), key
    assert [r["loss"] for r in fsdp] == pytest.approx(one.losses, rel=ONE_LOSS_RTOL)
    assert _differences(_mllm(fsdp_run), _mllm(tmp_path / "ddp")).max() < DDP_WEIGHT_ATOL
    assert _differences(_mllm(fsdp_run), _mllm(tmp_path / "one")).mean() < ONE_WEIGHT_MEAN
    # The gathered export is a whole checkpoint, as an unsharded run writes it.
    loaded = load_components(fsdp_run / "final").mllm.state_dict()
    torch.testing.assert_close(loaded, _mllm(fsdp_run), rtol=0, atol=0)


def test_a_killed_fsdp_run_resumes_to_the_same_weights(fsdp_run: Path, tmp_path: Path) -> None:
    # What a run killed while writing its step-4 checkpoint leaves: the rows of steps 3 and 4, checkpoint-2
    # complete, checkpoint-4 without the trainer_state.json that would have marked it complete, no final/.
    out = tmp_path / "killed"
    shutil.copytree(fsdp_run, out, ignore=shutil.ignore_patterns("final", "loss.png"))
    (out / "checkpoints" / "checkpoint-4" / STATE_FILE).unlink()
    ckpt = out / "checkpoints" / "checkpoint-2"
    # Complete: the sharded module and AdamW state of both ranks, the schedule, both ranks' RNG, the state last.
    names = {p.name for p in ckpt.iterdir()}
    assert {"scheduler.bin", "random_states_0.pkl", "random_states_1.pkl", SHARDED_STATE, STATE_FILE} <= names
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= {p.name for p in (ckpt / SHARDED_STATE).iterdir()}

    written = {p.name: p.stat().st_mtime_ns for p in ckpt.rglob("*")}

    run_launched(_cfg(out, resume=True), _launch("fsdp"))
    # It continued from step 2 (a run started over would have rewritten checkpoint-2 and come to the same weights).
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.rglob("*")} == written
    assert (out / "checkpoints" / "checkpoint-4" / STATE_FILE).is_file()
    whole, resumed = _mllm(fsdp_run), _mllm(out)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)  # bit for bit
    assert _rows(out) == _rows(fsdp_run)  # steps 3 and 4 again: the same losses, norms and learning rates


def test_each_process_holds_half_of_the_trained_state(fsdp_run: Path, tiny_config: Any) -> None:
    task = build_task(_cfg(Path("unused")), build_random(tiny_config))
    trained = {name for name, p in task.module.named_parameters() if p.requires_grad}
    ckpt = fsdp_run / "checkpoints" / "checkpoint-4" / SHARDED_STATE
    # Every process wrote the shards it holds: count each file's bytes of trained weights and their Adam moments.
    held: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for index, info in FileSystemReader(ckpt).read_metadata().storage_data.items():
        kind, _, name = index.fqn.partition(".")
        name = name.removeprefix("state.").removesuffix(".exp_avg").removesuffix(".exp_avg_sq")
        if name in trained and not index.fqn.endswith(".step"):
            held[kind][info.relative_path] += info.length
    for kind in ("model", "optimizer"):
        shares = sorted(held[kind].values())
        assert len(shares) == 2 and shares[0] > 0.45 * sum(shares), (kind, shares)


def test_stage1_trains_sharded_in_bf16_with_checkpointing(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "stage1", max_steps=2, save_every=2, mixed_precision="bf16", gradient_checkpointing=True)
    run_launched(cfg, _launch("fsdp"))
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in _rows(tmp_path))
    before = build_random(from_preset("tiny")).detokenizer.state_dict()
    after = load_components(tmp_path / "final").detokenizer.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("to_k.weight", "to_v.weight")) or k.startswith("resampler.") for k in changed)
    assert after["resampler.proj_in.weight"].dtype == torch.float32  # the shards stay fp32; bf16 is only gathered


def _unit_sizes(module: torch.nn.Module) -> list[int]:
    """Parameters each FSDP unit gathers at once (its own, not those of the units inside it), the root last."""
    claimed: set[torch.nn.Parameter] = set()
    sizes = []
    for unit in [*shard_units(module), module]:
        own = set(unit.parameters()) - claimed
        sizes.append(sum(p.numel() for p in own))
        claimed |= own
    return sizes


def test_units_of_the_released_model_are_blocks(george_config: Any) -> None:
    with torch.device("meta"):
        mllm, detokenizer = SeedStoryMLLM(george_config.mllm), build_detokenizer(george_config.detokenizer)
    mllm_units, unet_units = _unit_sizes(mllm), _unit_sizes(detokenizer)
    assert len(mllm_units) == 32 + 3  # decoder layers, embed_tokens, lm_head, the root (resamplers, norm)
    # No process gathers more than one of SDXL's deepest Transformer2DModels (~351 M parameters) at once.
    assert max(mllm_units) < 210e6 and max(unet_units) < 360e6, (mllm_units, unet_units)


def test_a_run_refuses_a_checkpoint_of_the_other_sharding(tmp_path: Path, tiny_config: Any) -> None:
    ckpt = tmp_path / "checkpoints" / "checkpoint-2"
    (ckpt / SHARDED_STATE).mkdir(parents=True)
    (ckpt / STATE_FILE).write_text(json.dumps({"stage": "stage2", "step": 2, "batches_consumed": 4}))
    cfg = _cfg(tmp_path, resume=True)
    with pytest.raises(ValueError, match="written by a sharded"):
        Trainer(cfg, build_task(cfg, build_random(tiny_config)), []).fit()


def test_fsdp_refuses_fp16() -> None:
    with pytest.raises(ValueError, match="bf16"):
        mixed_precision_policy("fp16")
