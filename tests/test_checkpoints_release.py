"""A whole tiny ``pretrained/`` folder in the release's layout: check, load, extract, save/load our format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from seed_story.checkpoints.check import check_pretrained
from seed_story.checkpoints.layout import PretrainedLayout
from seed_story.checkpoints.native import read_manifest, save_checkpoint
from seed_story.checkpoints.vision import load_visual_tokenizer
from seed_story.cli.main import app
from seed_story.components import build_random, load_components
from seed_story.presets import from_preset
from tests.release_support import write_release

runner = CliRunner()


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, object]:
    """Write every released component of a random tiny model under ``pretrained/``; return (root, components)."""
    torch.manual_seed(1)
    parts = build_random(from_preset("tiny"))
    root = tmp_path_factory.mktemp("pretrained")
    write_release(root, parts)
    return root, parts


def test_layout_and_deep_check(release):
    root, _ = release
    layout = PretrainedLayout.discover(root)
    assert layout.qwen_vit == root / "visual_tokenizer" / "qwen_vit_G.pt"
    status = {s.key: s for s in check_pretrained(root, from_preset("tiny"), deep=True)}
    for key in ("tokenizer", "llama", "sdxl", "qwen_vit", "agent", "detokenizer_adapted"):
        assert status[key].status == "ok", (key, status[key].detail)
        assert status[key].size_bytes > 0
    assert status["seedx_agent"].status == "missing"


def test_deep_check_reports_wrong_shapes(release, tmp_path):
    _, parts = release
    bad = tmp_path / "pretrained"
    bad.mkdir()
    state = parts.visual_tokenizer.state_dict()
    state["proj"] = torch.zeros(3, 3)
    save_file({k: v.contiguous() for k, v in state.items()}, bad / "qwen_vit_G.safetensors")
    status = {s.key: s for s in check_pretrained(bad, from_preset("tiny"), deep=True)}
    assert status["qwen_vit"].status == "mismatched"
    assert "proj: checkpoint (3, 3) vs model (64, 64)" in status["qwen_vit"].detail


def test_cli_check_exit_codes(release, tmp_path):
    root, _ = release
    ok = runner.invoke(app, ["pretrained", "check", str(root), "--preset", "tiny", "--deep", "--json"])
    assert ok.exit_code == 0, ok.output
    assert {r["key"]: r["status"] for r in json.loads(ok.stdout)}["agent"] == "ok"
    empty = runner.invoke(app, ["pretrained", "check", str(tmp_path), "--preset", "tiny"])
    assert empty.exit_code == 1
    assert "missing" in empty.output and "not ready for inference" in empty.output


def test_load_released_reproduces_every_network(release):
    root, parts = release
    loaded = load_components(root, cfg=from_preset("tiny"), dtype=torch.float32)
    pixels = torch.randn(2, 3, 56, 56)
    torch.testing.assert_close(loaded.visual_tokenizer(pixels), parts.visual_tokenizer(pixels))
    feats = torch.randn(2, 64, 64)
    for a, b in zip(loaded.detokenizer.encode(feats), parts.detokenizer.encode(feats), strict=True):
        torch.testing.assert_close(a, b)
    ids = torch.tensor([[1, 50, 60, 70]])
    torch.testing.assert_close(loaded.mllm.causal_lm(input_ids=ids).logits, parts.mllm.causal_lm(input_ids=ids).logits)
    assert loaded.tokenizer.encode("hi [INST]") == parts.tokenizer.encode("hi [INST]")


def test_extract_qwen_vit_from_sharded_checkpoint(release, tmp_path):
    _, parts = release
    qwen = tmp_path / "Qwen-VL-Chat"
    qwen.mkdir()
    visual = {f"transformer.visual.{k}": v.contiguous() for k, v in parts.visual_tokenizer.state_dict().items()}
    llm = {"transformer.wte.weight": torch.randn(10, 8), "lm_head.weight": torch.randn(10, 8)}
    names = sorted(visual)
    shards = {
        "model-00001-of-00002.safetensors": {**llm, **{k: visual[k] for k in names[:5]}},
        "model-00002-of-00002.safetensors": {k: visual[k] for k in names[5:]},
    }
    for file, tensors in shards.items():
        save_file(tensors, qwen / file)
    index = {"weight_map": {k: f for f, t in shards.items() for k in t}}
    (qwen / "model.safetensors.index.json").write_text(json.dumps(index))
    out = tmp_path / "QwenViT" / "qwen_vit_G.pt"
    result = runner.invoke(app, ["pretrained", "extract-qwen-vit", str(qwen), str(out), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    vit, report = load_visual_tokenizer(out, from_preset("tiny").vision)
    assert report.loaded == len(visual)
    pixels = torch.randn(1, 3, 56, 56)
    torch.testing.assert_close(vit(pixels), parts.visual_tokenizer(pixels))
    # A folder without a visual tower is refused with a reason, and nothing is written.
    (qwen / "model.safetensors.index.json").unlink()
    save_file(llm, qwen / "model.safetensors")
    for file in shards:
        (qwen / file).unlink()
    bad = runner.invoke(app, ["pretrained", "extract-qwen-vit", str(qwen), str(tmp_path / "x.pt"), "--preset", "tiny"])
    assert bad.exit_code == 1 and "transformer.visual." in bad.output
    assert not (tmp_path / "x.pt").exists()


def test_native_checkpoint_round_trip(release, tmp_path):
    _, parts = release
    cfg = parts.config
    save_checkpoint(
        tmp_path / "ckpt",
        cfg,
        {
            "visual_tokenizer": parts.visual_tokenizer,
            "mllm": parts.mllm,
            "detokenizer": parts.detokenizer,
            "vae": parts.vae,
        },
        tokenizer=parts.tokenizer,
        metadata={"stage": "test"},
    )
    manifest = read_manifest(tmp_path / "ckpt")
    assert manifest.model == cfg and manifest.metadata == {"stage": "test"}
    assert not list((tmp_path / "ckpt").glob("*.partial"))
    loaded = load_components(tmp_path / "ckpt")
    for name in ("visual_tokenizer", "mllm", "detokenizer", "vae"):
        a, b = getattr(loaded, name).state_dict(), getattr(parts, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_real_preset_describe_counts():
    result = runner.invoke(app, ["presets", "describe", "--preset", "seed-story-george", "--json"])
    assert result.exit_code == 0, result.output
    parts = {p["part"]: p["parameters"] for p in json.loads(result.stdout)["parts"]}
    assert parts["visual tokenizer"] == pytest.approx(1.936e9, rel=1e-3)
    assert parts["de-tokenizer resampler"] == pytest.approx(61.25e6, rel=1e-3)
    assert parts["input resampler"] == pytest.approx(67.7e6, rel=1e-3)
    assert parts["output resampler"] == pytest.approx(69.2e6, rel=1e-3)
    assert parts["LoRA"] == 39_976_960
    assert parts["UNet trainable"] == pytest.approx(545.6e6, rel=1e-3)
    bad = runner.invoke(app, ["presets", "describe", "--preset", "nope"])
    assert bad.exit_code != 0 and "known presets" in str(bad.exception)
