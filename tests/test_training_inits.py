"""Where a training run's networks come from: ``init``, then ``vae_init`` / ``detokenizer_init`` replacing parts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seed_story.checkpoints.native import save_checkpoint
from seed_story.components import Components, build_random
from seed_story.config import ModelConfig
from seed_story.training import TrainConfig
from seed_story.training.run import build_components


def _save(parts: Components, directory: Path) -> str:
    modules = {n: getattr(parts, n) for n in ("visual_tokenizer", "mllm", "detokenizer", "vae")}
    save_checkpoint(directory, parts.config, modules, tokenizer=parts.tokenizer)
    return str(directory)


def _with(cfg: ModelConfig, **detokenizer: object) -> ModelConfig:
    return cfg.model_copy(update={"detokenizer": cfg.detokenizer.model_copy(update=detokenizer)})


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_vae_and_detokenizer_come_with_their_configs(toy_components, tmp_path):
    base = _save(toy_components, tmp_path / "stage2")
    cfg = toy_components.config
    vae_cfg = cfg.detokenizer.vae.model_copy(update={"scaling_factor": 0.5})
    vae_run = build_random(_with(cfg, vae=vae_cfg), seed=1)
    vae_run.tokenizer = toy_components.tokenizer
    # A stage-1 run with a wider UNet than stage 2's output carries, over the same VAE as the VAE run's.
    unet = cfg.detokenizer.unet.model_copy(update={"cross_attention_dim": 2 * cfg.detokenizer.unet.cross_attention_dim})
    res = cfg.detokenizer.resampler
    resampler = res.model_copy(update={"output1_dim": res.output1_dim + res.output1_dim + res.output2_dim})
    stage1 = build_random(_with(cfg, unet=unet, resampler=resampler, vae=vae_cfg), seed=2)
    stage1.tokenizer = toy_components.tokenizer

    run = TrainConfig.for_stage("stage3", output_dir=str(tmp_path / "out"), init=base, data={"kind": "toy"},
                                vae_init=_save(vae_run, tmp_path / "vae"),
                                detokenizer_init=_save(stage1, tmp_path / "stage1"))  # fmt: skip
    parts = build_components(run)
    assert parts.config.detokenizer == stage1.config.detokenizer
    assert _equal(parts.detokenizer, stage1.detokenizer) and _equal(parts.vae, vae_run.vae)
    assert parts.vae.config.scaling_factor == 0.5
    assert _equal(parts.mllm, toy_components.mllm)


def test_a_detokenizer_trained_over_another_vae_is_refused(toy_components, tmp_path):
    base = _save(toy_components, tmp_path / "stage2")
    cfg = toy_components.config
    other = build_random(_with(cfg, vae=cfg.detokenizer.vae.model_copy(update={"scaling_factor": 0.5})), seed=2)
    other.tokenizer = toy_components.tokenizer
    run = TrainConfig.for_stage("stage3", output_dir=str(tmp_path / "out"), init=base, data={"kind": "toy"},
                                detokenizer_init=_save(other, tmp_path / "stage1"))  # fmt: skip
    with pytest.raises(ValueError, match="trained over another VAE"):
        build_components(run)
