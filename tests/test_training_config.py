"""Training configs, config files in the repo, and the learning-rate schedule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from seed_story.training.config import TrainConfig, data_values, load_train_config
from seed_story.training.schedule import build_lr_scheduler, cosine_factor

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_cosine_factor_key_points() -> None:
    f = lambda s: cosine_factor(s, warmup_steps=100, max_steps=6100, min_lr_ratio=0.05)  # noqa: E731
    assert f(0) == 0.0
    assert f(50) == pytest.approx(0.5)
    assert f(100) == pytest.approx(1.0)
    assert f(3100) == pytest.approx((1 + 0.05) / 2)  # half-way through the decay
    assert f(6100) == pytest.approx(0.05)
    assert f(10_000) == pytest.approx(0.05)  # the floor holds past max_steps
    progress = 0.25
    expected = 0.5 * (1.05 + 0.95 * math.cos(math.pi * progress))
    assert f(100 + 1500) == pytest.approx(expected)
    assert cosine_factor(0, warmup_steps=0, max_steps=10, min_lr_ratio=0.0) == 1.0


def test_lr_scheduler_follows_factor() -> None:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = build_lr_scheduler(opt, warmup_steps=2, max_steps=6, min_lr_ratio=0.1)
    lrs = []
    for _ in range(7):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    expected = [1e-4 * cosine_factor(s, warmup_steps=2, max_steps=6, min_lr_ratio=0.1) for s in range(7)]
    assert lrs == pytest.approx(expected)
    assert lrs[2] == pytest.approx(1e-4) and lrs[6] == pytest.approx(1e-5)


TOY = {"kind": "toy"}


def test_stage_defaults_are_the_reference() -> None:
    s2 = TrainConfig.for_stage("stage2", output_dir="o", data=TOY)
    assert (s2.learning_rate, s2.weight_decay, s2.betas, s2.eps) == (1e-4, 0.05, (0.9, 0.98), 1e-6)
    assert (s2.max_steps, s2.save_every, s2.warmup_steps, s2.min_lr_ratio) == (6000, 3000, 100, 0.05)
    assert (s2.mixed_precision, s2.max_grad_norm, s2.gradient_accumulation_steps) == ("bf16", 1.0, 1)
    s3 = TrainConfig.for_stage("stage3", output_dir="o", init="s2", data=TOY)
    assert (s3.learning_rate, s3.weight_decay, s3.betas, s3.eps) == (1e-4, 0.03, (0.9, 0.999), 1e-8)
    assert (s3.max_steps, s3.warmup_steps, s3.min_lr_ratio, s3.gradient_accumulation_steps) == (1600, 500, 0.01, 4)
    assert TrainConfig.for_stage("stage1", output_dir="o", data=TOY).full_unet is False


def test_config_rejects_unknown_keys_and_wrong_stage(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        TrainConfig.for_stage("stage2", output_dir="o", learning_rte=1e-3, data=TOY)
    with pytest.raises(ValueError, match="unknown stage"):
        TrainConfig.for_stage("stage4", output_dir="o")
    path = tmp_path / "c.json"
    path.write_text('{"stage": "stage1", "output_dir": "o", "data": {"kind": "toy"}}')
    with pytest.raises(ValueError, match="is a stage1 config"):
        load_train_config(path, "stage2")
    assert load_train_config(path).stage == "stage1"


@pytest.mark.parametrize("path", sorted((CONFIGS / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_every_train_config_file_validates(path: Path) -> None:
    cfg = load_train_config(path)
    assert cfg.output_dir


def test_data_overrides_merge_into_the_files_data():
    assert data_values("configs/train/tiny_stage2.yaml", {"batch_size": 2}) == {
        "kind": "toy",
        "batch_size": 2,
        "min_scenes": 2,
        "max_scenes": 4,
    }
    assert data_values("configs/train/tiny_stage2.yaml", {"kind": "storystream", "shards": "s"}) == {
        "kind": "storystream",
        "shards": "s",
    }
    assert data_values("configs/train/tiny_stage2.yaml", None)["batch_size"] == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "no training data configured for stage2"),
        ({}, "no training data configured for stage2"),
        ({"batch_size": 4}, "data.kind missing for stage2"),
        ({"kind": "storystream", "shards": []}, "no StoryStream shards configured"),
        ({"kind": "storystream", "shards": " "}, "no StoryStream shards configured"),
    ],
    ids=["missing", "empty", "no-kind", "no-shards", "blank-shards"],
)
def test_a_config_without_data_is_refused_never_trained_on_toy_stories(data, message, tmp_path: Path) -> None:
    values = {"stage": "stage2", "output_dir": "o"} | ({} if data is None else {"data": data})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=message):
        load_train_config(path)
