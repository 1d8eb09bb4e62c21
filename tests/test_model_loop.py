"""The loop users run every week, for real: a Prefect API, the bundled SEED-Story-Mini, a store (a local folder,
then the S3 test server): fine-tune a few steps -> gate against production -> register -> promote -> a nightly run
records the new version -> rollback -> the next run records the old one; a damaging fine-tune is registered but
not promoted; a resumed night keeps the version it started with after the alias moved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flows.nightly_generation import nightly_generation
from flows.training import train_stage2
from seed_story.batch.pipelines import ModelSpec
from seed_story.data.ingest import ingest_storystream
from seed_story.examples import MINI_GUIDANCE, bundled_model
from seed_story.generation.settings import DrawSettings
from seed_story.registry import ModelVersion, Registry
from seed_story.storage import S3Settings, open_store
from seed_story.storyworld.world import write_storyworld
from tasks.settings import NightlySettings
from tasks.training import TrainFlowSettings

MINI = bundled_model()
pytestmark = pytest.mark.skipif(MINI is None, reason="the bundled SEED-Story-Mini checkpoint is not installed")
EXAMPLES = Path(__file__).resolve().parents[1] / "seed_story" / "examples" / "mini"
SHARDS = {"kind": "storystream", "batch_size": 4, "max_length": 512, "pad_to_max_length": False, "min_resolution": 64}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """New stories to fine-tune on (seed 7) and held-out ones for the gate (seed 11), as Parquet shards."""
    out = {}
    for name, seed in (("new", 7), ("heldout", 11)):
        world = tmp_path_factory.mktemp(name)
        write_storyworld(world, 6, seed=seed, workers=1)
        ingest_storystream([world / "stories.jsonl"], world / "images", world / "shards")
        out[name] = world / "shards"
    return out


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mini demo story, two steps."""
    folder = tmp_path_factory.mktemp("manifest")
    shutil.copytree(EXAMPLES / "openings", folder / "openings")
    row = json.loads((EXAMPLES / "demo.jsonl").read_text().splitlines()[0]) | {"steps": 2}
    (folder / "night.jsonl").write_text(json.dumps(row) + "\n")
    return folder / "night.jsonl"


def _fine_tune(store: str, work: Path, worlds: dict[str, Path], run_name: str, lr: float, s3: S3Settings) -> Any:
    overrides = {
        "init": str(MINI), "learning_rate": lr, "warmup_steps": 0, "mixed_precision": "no",
        "data": {**SHARDS, "shards": str(worlds["new"])},
        "gate": {"data": {**SHARDS, "shards": str(worlds["heldout"])}, "batches": 2, "margin": 0.02,
                 "judge": {"stories": 1, "steps": 2, "draw_steps": 2}},  # judged and kept, gated on the loss
    }  # fmt: skip
    settings = TrainFlowSettings(config="configs/train/mini_finetune.yaml", store=store, s3=s3, run_name=run_name,
                                 work_dir=str(work), max_steps=2, save_every=2, overrides=overrides,
                                 publish={"name": "seed-story"}, model_cache=str(work / "cache"))  # fmt: skip
    return train_stage2(settings)


def _night(store: str, manifest: Path, run_id: str, work: Path, s3: S3Settings) -> tuple[str, str]:
    """(the summary's model version, the story's sequence.parquet model_version) of one nightly run."""
    spec = ModelSpec(path="models://seed-story@production",
                     draw=DrawSettings(num_inference_steps=2, batch_size=4, guidance_scale=MINI_GUIDANCE))  # fmt: skip
    settings = NightlySettings(manifest=str(manifest), store=store, s3=s3, model=spec, run_id=run_id, render=None,
                               export_storystream=False, model_cache=str(work / "night-cache"))  # fmt: skip
    summary = nightly_generation(settings)
    assert summary.completed == ["mini-1"] or summary.skipped_finished == ["mini-1"]
    sequence = open_store(store, s3).get_file(f"runs/{run_id}/mini-1/sequence.parquet", work / f"{run_id}.parquet")
    versions = set(pq.read_table(sequence).column("model_version").to_pylist())
    assert len(versions) == 1
    return summary.model_version, versions.pop()


def _loop(store: str, s3: S3Settings, worlds: dict[str, Path], manifest: Path, work: Path, *, bad_run: bool) -> None:
    registry = Registry(open_store(store, s3))
    base: ModelVersion = registry.register(MINI, "seed-story")
    registry.promote("seed-story", base.version_id, by="test", reason="the bundled model")

    tuned = _fine_tune(store, work / "train", worlds, "weekly", 1e-5, s3)
    assert tuned.promoted and tuned.model_version != f"seed-story@{base.version_id}"
    new = registry.resolve("models://seed-story@production")
    assert f"seed-story@{new.version_id}" == tuned.model_version and new.parent == base.version_id
    gate = new.gate or {}
    assert gate["passed"] and gate["production"] == base.version_id and gate["production_metrics"]["heldout_loss"] > 0
    assert gate["candidate_metrics"]["judge_frames"] == 3 and "judge_reconstruction" in new.metrics

    assert _night(store, manifest, "night-1", work, s3) == (tuned.model_version,) * 2
    registry.rollback("seed-story", by="test", reason="books looked wrong")
    # night-1 resumed after the alias moved: still the version it started with.
    assert _night(store, manifest, "night-1", work, s3)[0] == tuned.model_version
    assert _night(store, manifest, "night-2", work, s3) == (f"seed-story@{base.version_id}",) * 2
    assert [e.action for e in registry.history("seed-story", "production")] == ["promote", "promote", "rollback"]

    if bad_run:  # a learning rate that wrecks the model: registered with the failed decision, production kept
        wrecked = _fine_tune(store, work / "train-bad", worlds, "wrecked", 0.5, s3)
        assert wrecked.promoted is False and any(">" in reason for reason in wrecked.gate)
        assert registry.alias("seed-story", "production").to_version == base.version_id
        version = registry.version("seed-story", wrecked.model_version.split("@")[1])
        assert version.gate is not None and not version.gate["passed"]


def test_the_loop_on_a_local_store(prefect_api, worlds, manifest, tmp_path) -> None:
    _loop(str(tmp_path / "store"), S3Settings(), worlds, manifest, tmp_path, bad_run=True)


def test_the_loop_on_s3(prefect_api, s3_bucket, worlds, manifest, tmp_path) -> None:
    s3 = S3Settings(endpoint_url=s3_bucket.endpoint_url)
    _loop(f"s3://{s3_bucket.name}/prod", s3, worlds, manifest, tmp_path, bad_run=False)
