"""The trainer and the three stages on the ``tiny`` preset: losses fall, resume is exact, outputs load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from pydantic import ValidationError
from safetensors.torch import load_file
from typer.testing import CliRunner

from seed_story.checkpoints.native import load_part, read_manifest, save_checkpoint
from seed_story.cli.main import app
from seed_story.components import build_random, load_components
from seed_story.data.sequence import TrainBatch
from seed_story.generation.decoder import merge_lora_for_inference
from seed_story.training import TrainConfig, train
from seed_story.training.launch import LaunchSettings, run_launched
from seed_story.training.run import build_task
from seed_story.training.schedule import cosine_factor
from seed_story.training.sources import toy_batches
from seed_story.training.stages import Stage2Task
from seed_story.training.trainer import StateDictModule, Trainer, cast_frozen


def _cfg(stage: str, out: Path, **values: Any) -> TrainConfig:
    base = dict(
        output_dir=str(out),
        max_steps=15,
        learning_rate=3e-3,
        warmup_steps=2,
        mixed_precision="no",
        save_every=100,
        gradient_accumulation_steps=1,
        data={"kind": "toy", "batch_size": 4, "max_scenes": 4},
    )
    return TrainConfig.for_stage(stage, **{**base, **values})


def _falls(losses: list[float]) -> tuple[float, float]:
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last, losses)
    return first, last


@pytest.fixture(scope="module")
def stage2_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return train(_cfg("stage2", tmp_path_factory.mktemp("s2"), max_steps=20))


def test_stage2_loss_falls_and_outputs_load(stage2_run: Any, tiny_config: Any) -> None:
    _falls(stage2_run.losses)
    assert stage2_run.metrics_csv.read_text().splitlines()[0].startswith("step,lr,loss,lm_loss,rec_loss")
    assert len(stage2_run.metrics_jsonl.read_text().splitlines()) == 20
    assert stage2_run.plot.stat().st_size > 0
    assert read_manifest(stage2_run.checkpoint).metadata["stage"] == "stage2"
    mllm = build_random(tiny_config).mllm
    load_part(stage2_run.checkpoint, "mllm", mllm)
    parts = load_components(stage2_run.checkpoint)
    torch.testing.assert_close(parts.mllm.state_dict(), mllm.state_dict(), rtol=0, atol=0)


def test_stage2_trains_only_its_parameters(stage2_run: Any, tiny_config: Any) -> None:
    before = build_random(tiny_config).mllm.state_dict()  # the run started from this (seed 0)
    after = load_file(str(stage2_run.checkpoint / "mllm.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora_A" in k for k in changed) and any("modules_to_save" in k for k in changed)
    assert any("embed_tokens" in k for k in changed) and any("output_resampler" in k for k in changed)
    frozen = [k for k in before if "base_layer" in k or "original_module" in k or k.endswith("pos_embed")]
    assert frozen and not changed & set(frozen)


def test_stage2_unmerges_a_merged_model(tiny_config: Any) -> None:
    parts = build_random(tiny_config)
    merge_lora_for_inference(parts.mllm)
    Stage2Task(parts)
    assert not any(getattr(m, "merged", False) for m in parts.mllm.modules())


def test_a_run_may_stop_before_its_schedule_ends(tmp_path: Path) -> None:
    cfg = _cfg("stage2", tmp_path, max_steps=4, schedule_steps=20, log_every=1)
    train(cfg)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # The logged rate is the one each step used: step s ran at factor(s - 1) of the 20-step schedule.
    expected = [3e-3 * cosine_factor(s, warmup_steps=2, max_steps=20, min_lr_ratio=cfg.min_lr_ratio) for s in range(4)]
    assert lrs == pytest.approx(expected)


def test_stage1_loss_falls(tmp_path: Path) -> None:
    result = train(_cfg("stage1", tmp_path, full_unet=True, data={"kind": "toy", "batch_size": 8}))
    _falls(result.losses)


def test_stage1_trains_resampler_and_to_k_to_v_by_default(tiny_config: Any) -> None:
    task = build_task(_cfg("stage1", Path("unused")), build_random(tiny_config))
    names = {n for n, p in task.module.named_parameters() if p.requires_grad}
    unet = {n for n in names if n.startswith("detokenizer.unet.")}
    assert unet and all(n.endswith(("to_k.weight", "to_v.weight")) for n in unet)
    assert any(n.startswith("detokenizer.resampler.") for n in names)


def test_stage1_config_carries_the_timestep_bias(tiny_config: Any) -> None:
    task = build_task(_cfg("stage1", Path("unused"), high_noise_weight=3.0), build_random(tiny_config))
    assert task.module.high_noise_weight == 3.0
    assert build_task(_cfg("stage1", Path("unused")), build_random(tiny_config)).module.high_noise_weight == 1.0


def test_stage2_config_sets_the_regression_loss(tiny_config: Any) -> None:
    cfg = _cfg("stage2", Path("unused"), rec_loss_scale=5.0)
    task = build_task(cfg, build_random(tiny_config))
    assert task.parts.config.mllm.rec_loss_scale == 5.0  # what an exported checkpoint records
    torch.manual_seed(0)
    out = task.loss(task.module, next(toy_batches("stage2", cfg.data, task.parts, seed=0)))
    assert out["rec_loss"] > 0
    torch.testing.assert_close(out["loss"], out["lm_loss"] + 5.0 * out["rec_loss"])
    default = build_task(_cfg("stage2", Path("unused")), build_random(tiny_config))
    assert default.module.cfg.rec_loss_scale == 1.0 and default.module.cfg.rec_loss == "cosine"
    centered = build_task(_cfg("stage2", Path("unused"), rec_loss="centered_cosine"), build_random(tiny_config))
    assert centered.parts.config.mllm.rec_loss == "centered_cosine" and centered.module.cfg.rec_loss_scale == 1.0


def test_stage3_reads_stage2_and_loss_falls(stage2_run: Any, tmp_path: Path) -> None:
    result = train(_cfg("stage3", tmp_path, init=str(stage2_run.checkpoint), full_unet=True))
    _falls(result.losses)
    s2, s3 = (load_file(str(p / "mllm.safetensors")) for p in (stage2_run.checkpoint, result.checkpoint))
    assert all(torch.equal(s2[k], s3[k]) for k in s2)  # the MLLM stays frozen
    with pytest.raises(ValueError, match="stage 2's output"):
        train(_cfg("stage3", tmp_path / "none"))


def test_stage3_can_keep_some_targets_on_their_true_features(stage2_run: Any) -> None:
    def conditions(fraction: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = _cfg("stage3", Path("unused"), init=str(stage2_run.checkpoint), true_feature_fraction=fraction)
        task = build_task(cfg)
        batch = next(toy_batches("stage3", cfg.data, task.parts, seed=0))
        torch.manual_seed(0)
        regressed = task.parts.mllm(**vars(batch.sequence), return_recon_image_embeds=True).recon_image_embeds
        true = batch.sequence.image_embeds[batch.sequence.embeds_gen_mask]
        return task.condition(batch), regressed.float(), true.float()

    got, regressed, true = conditions(0.0)  # the reference: the MLLM's regression only
    torch.testing.assert_close(got, regressed)
    got, regressed, true = conditions(1.0)  # stage 1's task
    torch.testing.assert_close(got, true)
    got, regressed, true = conditions(0.5)  # per target, one or the other
    rows = [torch.equal(g, t) or torch.allclose(g, r) for g, t, r in zip(got, true, regressed, strict=True)]
    assert all(rows) and not torch.allclose(regressed, true)
    with pytest.raises(ValidationError):
        _cfg("stage3", Path("unused"), true_feature_fraction=1.5)


class _Interrupted(Exception):
    pass


def _interrupt_after(batches: Any, count: int) -> Any:
    for i, batch in enumerate(batches):
        if i == count:
            raise _Interrupted
        yield batch


def _run(cfg: TrainConfig, interrupt_after: int | None = None) -> Any:
    task = build_task(cfg)
    batches = toy_batches(cfg.stage, cfg.data, task.parts, cfg.seed)
    if interrupt_after is not None:
        batches = _interrupt_after(batches, interrupt_after)
    return Trainer(cfg, task, batches).fit()


@pytest.mark.parametrize(
    ("stage", "accumulation"), [("stage2", 2), ("stage1", 1)], ids=["stage2-accumulate", "stage1-noise-rng"]
)
def test_interrupt_and_resume_is_exact(stage: str, accumulation: int, tmp_path: Path) -> None:
    data = {"kind": "toy", "batch_size": 2}
    values = dict(max_steps=6, save_every=3, gradient_accumulation_steps=accumulation, data=data)
    whole = _run(_cfg(stage, tmp_path / "whole", **values))
    with pytest.raises(_Interrupted):
        _run(_cfg(stage, tmp_path / "split", **values), interrupt_after=3 * accumulation)
    resumed = _run(_cfg(stage, tmp_path / "split", resume=True, **values))
    assert resumed.losses == whole.losses  # bit-identical, with the metrics of steps 1-3 kept
    part = "mllm" if stage == "stage2" else "detokenizer"
    a, b = (load_file(str(r.checkpoint / f"{part}.safetensors")) for r in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_trains_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "s2.yaml"
    values = dict(stage="stage2", output_dir=str(tmp_path / "out"), max_steps=2, save_every=1, warmup_steps=0)
    config.write_text(yaml.safe_dump({**values, "mixed_precision": "no", "data": {"kind": "toy", "batch_size": 1}}))
    result = CliRunner().invoke(app, ["train", "stage2", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "final" / "seed_story.json").is_file()
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-2"]
    again = CliRunner().invoke(app, ["train", "stage2", "--config", str(config), "--resume"])
    assert again.exit_code == 0 and "2 steps" in again.output
    wrong = CliRunner().invoke(app, ["train", "stage1", "--config", str(config)])
    flat = " ".join(wrong.output.replace("│", " ").split())
    assert wrong.exit_code == 2 and "stage2 config, not stage1" in flat, flat


def test_stage2_encodes_pixel_images_with_the_frozen_vit(tiny_config: Any) -> None:
    parts = build_random(tiny_config)
    task = Stage2Task(parts)
    batch = next(toy_batches("stage2", _cfg("stage2", Path("unused")).data, parts, seed=0))
    fields = {k: v for k, v in vars(batch).items() if k != "image_embeds"}
    n, size = batch.image_embeds.shape[0], tiny_config.vision.image_size
    b = batch.input_ids.shape[0]
    pixels = TrainBatch(**fields, images=torch.randn(n, 3, size, size), texts=[""] * b, meta=[{}] * b)
    losses = task.loss(parts.mllm.train(), pixels)
    losses["loss"].backward()
    assert parts.mllm.input_resampler.query.grad is not None
    assert all(p.grad is None for p in parts.visual_tokenizer.parameters())


def test_gathered_state_dict_exports_like_the_module(tiny_config: Any, tmp_path: Path) -> None:
    detok = build_random(tiny_config).detokenizer
    state = {f"detokenizer.{k}": v for k, v in detok.state_dict().items()}
    save_checkpoint(tmp_path, tiny_config, {"detokenizer": StateDictModule(state, prefix="detokenizer.")})
    fresh = build_random(tiny_config, seed=1).detokenizer
    load_part(tmp_path, "detokenizer", fresh)
    torch.testing.assert_close(fresh.state_dict(), detok.state_dict(), rtol=0, atol=0)


def test_frozen_weights_of_the_trained_module_are_kept_in_bf16(tmp_path: Path) -> None:
    cfg = _cfg("stage2", tmp_path, mixed_precision="bf16", gradient_checkpointing=True)
    task = build_task(cfg)
    task.to(torch.device("cpu"), torch.bfloat16)
    cast_frozen(task.module, torch.bfloat16)  # as Trainer.fit does before it builds AdamW
    dtypes: dict[bool, set[torch.dtype]] = {True: set(), False: set()}
    for p in task.module.parameters():
        dtypes[p.requires_grad].add(p.dtype)
    assert dtypes == {True: {torch.float32}, False: {torch.bfloat16}}
    assert task.parts.mllm.causal_lm.is_activation_checkpointing
    # One training process per test run fixes accelerate's mixed precision: bf16 trains in a launched one.
    result = run_launched(cfg.model_copy(update={"max_steps": 2}), LaunchSettings(processes=1, cpu=True))
    assert result.steps == 2 and all(loss == loss for loss in result.losses)  # finite
    assert load_components(result.checkpoint).mllm is not None
