"""The evaluation gate: both models scored on the same held-out story-world shards; the rule decides."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from seed_story.checkpoints.native import save_checkpoint
from seed_story.components import load_components
from seed_story.data.ingest import ingest_storystream
from seed_story.examples import bundled_model
from seed_story.storyworld.world import write_storyworld
from seed_story.training.config import GateConfig
from seed_story.training.gate import decide, heldout_metrics, judge, judge_metrics

MINI = bundled_model()
pytestmark = pytest.mark.skipif(MINI is None, reason="the bundled SEED-Story-Mini checkpoint is not installed")


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of a story world the mini model never saw (seed 11)."""
    world = tmp_path_factory.mktemp("world")
    write_storyworld(world, 6, seed=11, workers=1)
    ingest_storystream([world / "stories.jsonl"], world / "images", world / "shards")
    return world / "shards"


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini model with noise in its output resampler: a fine-tune gone wrong."""
    parts = load_components(MINI)
    with torch.no_grad():
        for p in parts.mllm.output_resampler.parameters():
            p.add_(torch.randn_like(p) * 0.5, alpha=1.0)
    folder = tmp_path_factory.mktemp("damaged")
    modules = {"visual_tokenizer": parts.visual_tokenizer, "mllm": parts.mllm, "detokenizer": parts.detokenizer,
               "vae": parts.vae}  # fmt: skip
    save_checkpoint(folder, parts.config, modules, tokenizer=parts.tokenizer)
    return folder


def _gate(shards: Path) -> GateConfig:
    data = {"kind": "storystream", "shards": str(shards), "batch_size": 4, "max_length": 512,
            "pad_to_max_length": False, "min_resolution": 64}  # fmt: skip
    return GateConfig(data=data, batches=2)


def test_heldout_metrics_are_deterministic(heldout: Path) -> None:
    gate = _gate(heldout)
    first, again = heldout_metrics(MINI, gate), heldout_metrics(MINI, gate)
    assert first == again and first["heldout_sequences"] > 0
    assert all(math.isfinite(v) and v > 0 for v in first.values())


def test_a_damaged_candidate_fails_and_an_equal_one_passes(heldout: Path, damaged: Path) -> None:
    gate = _gate(heldout)
    bad = decide(gate, damaged, MINI, candidate="bad", production="mini")
    assert not bad.passed and bad.candidate_metrics["heldout_rec_loss"] > bad.production_metrics["heldout_rec_loss"]
    assert bad.reasons[0].startswith("heldout_loss") and ">" in bad.reasons[0]
    same = judge(gate, "mini-again", bad.production_metrics, "mini", bad.production_metrics)
    assert same.passed  # no worse than production, margin 0
    first = decide(gate, damaged, None, candidate="bad", production=None)
    assert first.passed and first.reasons == ["no production version yet"]
    with pytest.raises(ValueError, match="unknown gate metrics"):
        decide(gate.model_copy(update={"metrics": ["accuracy"]}), MINI, None, candidate="x", production=None)


def test_judge_metrics_need_the_judge_source() -> None:
    with pytest.raises(ValueError, match=r"needs gate\.judge"):
        GateConfig(metrics=["judge_reconstruction"])
    with pytest.raises(ValueError, match=r"needs gate\.data"):
        GateConfig(judge={"stories": 1})  # the default metric is the held-out loss


def test_the_story_world_judge_gates_a_story_world_model(damaged: Path) -> None:
    """The judge reads back what each model draws for held-out story-world captions; noise in the output
    resampler draws the wrong characters and scenes, and the gate says so metric by metric."""
    gate = GateConfig(judge={"stories": 3, "steps": 3, "draw_steps": 8}, margin=0.05,
                      metrics=["judge_reconstruction", "judge_character_consistency"])  # fmt: skip
    mini = judge_metrics(MINI, gate)
    assert mini == judge_metrics(MINI, gate)  # same stories, same seeds: the same numbers
    assert mini["judge_frames"] == 3 * (3 + 1) and 0 < mini["judge_reconstruction"] <= 1
    bad = decide(gate, damaged, MINI, candidate="bad", production="mini")
    assert bad.production_metrics == mini
    assert not bad.passed and bad.candidate_metrics["judge_reconstruction"] < mini["judge_reconstruction"]
    assert bad.reasons[0].startswith("judge_reconstruction") and " < " in bad.reasons[0]
    assert judge(gate, "mini-again", mini, "mini", mini).passed
