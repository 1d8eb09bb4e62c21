"""The training and ingest flows for real: Prefect's local API, the ``tiny`` preset for a few steps, a local folder
or S3 on loopback as the store. The key case: a run interrupted on one machine resumes on another, exactly."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from PIL import Image
from prefect.artifacts import Artifact
from safetensors.torch import load_file

import tasks.training as training_tasks
from flows.ingest import ingest_storystream
from flows.training import train_stage1, train_stage2, train_stage3
from seed_story.checkpoints.native import read_manifest
from seed_story.storage import LocalObjectStore, S3Settings, get_model, open_store
from seed_story.training.launch import LaunchFailed
from seed_story.training.store_sync import CheckpointPusher, pull_checkpoint, sync_checkpoints
from seed_story.training.summary import TrainSummary
from seed_story.training.trainer import STATE_FILE
from tasks.ingest import IngestSettings
from tasks.training import TrainFlowSettings

STAGE2 = "configs/train/tiny_stage2.yaml"


def _settings(store: str, work: Path, **values: Any) -> TrainFlowSettings:
    base = dict(config=STAGE2, store=store, work_dir=str(work), run_name="r1", max_steps=4, save_every=2)
    return TrainFlowSettings(**{**base, **values})


def _losses(store: Any, prefix: str) -> list[float]:
    return [json.loads(line)["loss"] for line in store.get_bytes(f"{prefix}/metrics.jsonl").decode().splitlines()]


def _weights(store: Any, prefix: str, tmp: Path) -> dict[str, torch.Tensor]:
    return load_file(str(store.get_file(f"{prefix}/final/mllm.safetensors", tmp / "mllm.safetensors")))


def _kill_launch_when(path: Path, timeout: float = 300) -> threading.Thread:
    """A thread that SIGKILLs this process's launched trainer (launcher and workers) once ``path`` exists."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):  # zombies of earlier runs have no command line
                if any("accelerate.commands.launch" in part for part in child.cmdline()):
                    for proc in [child, *child.children(recursive=True)]:
                        proc.kill()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_two_process_run_killed_mid_way_resumes_exactly_on_another_machine(prefect_api, s3_bucket, tmp_path,
                                                                            monkeypatch):  # fmt: skip
    two = {"launch": {"processes": 2, "threads_per_process": 1}, "max_steps": 12}
    whole = train_stage2(_settings(str(tmp_path / "whole"), tmp_path / "work-whole", **two))
    assert (whole.steps, whole.resumed_from, whole.new_steps) == (12, None, 12)
    local = LocalObjectStore(tmp_path / "whole")
    assert local.exists("training/stage2/r1/checkpoints/checkpoint-12/random_states_1.pkl")  # two ranks trained

    s3 = S3Settings(endpoint_url=s3_bucket.endpoint_url)
    uri = f"s3://{s3_bucket.name}/models"
    prefix = "training/stage2/r1"
    # The worker's trainer dies (the GPU box went away) once its first checkpoint is whole.
    watcher = _kill_launch_when(tmp_path / "machine-a" / prefix / "checkpoints" / "checkpoint-2" / STATE_FILE)
    with pytest.raises(LaunchFailed, match="stage2 in 2 processes exited with status"):
        train_stage2(_settings(uri, tmp_path / "machine-a", s3=s3, **two))
    watcher.join()
    store = open_store(uri, s3)
    # The crash still pushed whole checkpoints and the metrics so far; no final weights, no summary.
    kept = sorted(int(k.split("/")[4].split("-")[1]) for k in store.list(f"{prefix}/checkpoints/") if STATE_FILE in k)
    assert kept and kept[-1] < 12
    assert _losses(store, prefix)[: kept[-1]] == _losses(local, prefix)[: kept[-1]]
    assert not store.exists(f"{prefix}/final/seed_story.json") and not store.exists(f"{prefix}/summary.json")

    resumed = train_stage2(_settings(uri, tmp_path / "machine-b", s3=s3, **two))
    assert (resumed.steps, resumed.resumed_from, resumed.new_steps) == (12, kept[-1], 12 - kept[-1])
    assert resumed.final_weights == f"{uri}/{prefix}/final" and resumed.final_loss == whole.final_loss
    assert _losses(store, prefix) == _losses(local, prefix)  # one uninterrupted-looking log, bit for bit
    a, b = _weights(local, prefix, tmp_path / "a"), _weights(store, prefix, tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    checkpoints = {k.split("/")[4] for k in store.list(f"{prefix}/checkpoints/")}
    assert checkpoints == {"checkpoint-10", "checkpoint-12"}  # keep_checkpoints: 2
    assert get_model(store, f"{prefix}/summary.json", TrainSummary) == resumed

    # A finished run is not trained again: the stored summary comes back.
    monkeypatch.setattr(training_tasks, "run_launched", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert train_stage2(_settings(uri, tmp_path / "machine-c", s3=s3, **two)) == resumed
    artifact = Artifact.get("train-stage2-r1")
    assert artifact is not None and "12 / 12" in str(artifact.data)


def test_stage3_starts_from_stage2_in_the_store_and_stage1_runs(prefect_api, tmp_path):
    store_uri = (tmp_path / "store").as_uri()
    base = train_stage2(_settings(store_uri, tmp_path / "work", run_name="base", max_steps=2))
    stage3 = train_stage3(_settings(store_uri, tmp_path / "work", config="configs/train/tiny_stage3.yaml",
                                    max_steps=2, init_from=f"{base.prefix}/final"))  # fmt: skip
    stage1 = train_stage1(_settings(store_uri, tmp_path / "work", config="configs/train/tiny_stage1.yaml",
                                    max_steps=2, run_name=None, overrides={"data": {"batch_size": 2}}))  # fmt: skip
    store = LocalObjectStore(tmp_path / "store")
    for summary, stage in ((stage3, "stage3"), (stage1, "stage1")):
        assert summary.steps == 2 and summary.prefix == f"training/{stage}/{summary.run_name}"
        assert read_manifest(store.local_path(f"{summary.prefix}/final")).metadata["stage"] == stage
    # run_name=None: the config's stem and the ISO week of the flow run's scheduled start.
    assert stage3.run_name == "r1" and re.fullmatch(r"tiny_stage1-\d{4}-W\d{2}", stage1.run_name)
    config = json.loads(store.get_bytes("training/stage3/r1/train_config.json"))
    assert config["init"] == str(store.local_path("training/stage2/base/final"))  # a local store is read in place
    with pytest.raises(ValueError, match="stage2 config, not stage1"):
        train_stage1(_settings(store_uri, tmp_path / "work"))


def test_default_run_name_is_the_config_and_the_iso_week():
    settings = TrainFlowSettings(config="configs/train/george_stage2.yaml", store="s3://models")
    assert settings.resolved_run_name(datetime(2026, 11, 29)) == "george_stage2-2026-W48"
    assert settings.model_copy(update={"run_name": "keep"}).resolved_run_name() == "keep"
    with pytest.raises(ValueError):
        TrainFlowSettings(config=STAGE2, store="s3://models", run_name="../escape")


def _checkpoint(folder: Path, step: int, whole: bool = True) -> None:
    path = folder / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w%d" % step)
    if whole:
        (path / STATE_FILE).write_text(json.dumps({"stage": "stage2", "step": step, "batches_consumed": step}))


def test_pull_takes_the_newest_whole_checkpoint_and_sync_prunes(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    trainer = tmp_path / "trainer"
    for step in (1, 2, 3):
        _checkpoint(trainer, step)
    assert sync_checkpoints(store, trainer, "training/stage2/x", keep=2) == [1, 2, 3]
    assert {k.split("/")[4] for k in store.list("training/stage2/x/")} == {"checkpoint-2", "checkpoint-3"}
    store.delete(f"training/stage2/x/checkpoints/checkpoint-3/{STATE_FILE}")  # as if its upload had been cut
    fresh = tmp_path / "fresh"
    assert pull_checkpoint(store, "training/stage2/x", fresh) == 2
    assert (fresh / "checkpoints" / "checkpoint-2" / "model.safetensors").read_bytes() == b"w2"
    _checkpoint(fresh, 5, whole=False)
    _checkpoint(fresh, 4)
    assert pull_checkpoint(store, "training/stage2/x", fresh) == 4  # the local one is newer: nothing fetched


def test_pusher_pushes_each_new_checkpoint_while_training_runs(tmp_path):
    store, trainer, prefix = LocalObjectStore(tmp_path / "store"), tmp_path / "trainer", "training/stage2/x"
    marker = f"{prefix}/checkpoints/checkpoint-1/{STATE_FILE}"
    with CheckpointPusher(store, trainer, prefix, keep=2, interval=0.02, log=logging.getLogger(__name__)):
        trainer.mkdir()
        (trainer / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')  # a row being appended
        _checkpoint(trainer, 1)
        deadline = time.monotonic() + 10
        while not store.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.exists(marker)  # pushed by the thread, before the context ends
    assert store.get_bytes(f"{prefix}/metrics.jsonl") == b'{"step": 1, "loss": 1.0}\n'  # complete lines only


def _release(root: Path) -> tuple[str, Path]:
    """Two good stories (30 and 12 pictures: 4 chunks of 10) and one broken line, with tiny JPEGs."""
    stories = [
        {"id": n, "images": [f"{n:03d}/{i}.jpg" for i in range(k)], "captions": [f"s{n} c{i}" for i in range(k)],
         "orders": list(range(k))}
        for n, k in ((1, 30), (2, 12))
    ]  # fmt: skip
    for story in stories:
        for name in story["images"]:
            (root / "image" / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 12), (90, 120, 160)).save(root / "image" / name, "JPEG")
    (root / "george").mkdir(parents=True)
    lines = [json.dumps(s) for s in stories] + ['{"id": 3, "images": [']
    (root / "george" / "train.jsonl").write_text("\n".join(lines) + "\n")
    return str(root / "george" / "*.jsonl"), root / "image"


def test_ingest_into_a_local_store_then_train_on_the_shards(prefect_api, tmp_path):
    pattern, images = _release(tmp_path / "release")
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("datasets/george/shard-00007.parquet", b"left by a bigger, older ingest")
    settings = IngestSettings(jsonl=pattern, image_dir=str(images), store=str(tmp_path / "store"),
                              prefix="datasets/george", shard_size=2)  # fmt: skip
    report = ingest_storystream(settings)
    assert (report.stories, report.chunks_written, report.shards) == (
        2,
        4,
        ["shard-00000.parquet", "shard-00001.parquet"],
    )
    assert report.counts() == {"invalid_json": 1}
    assert store.list("datasets/george/") == [
        "datasets/george/ingest-report.json",
        "datasets/george/shard-00000.parquet",
        "datasets/george/shard-00001.parquet",
    ]
    artifact = Artifact.get("ingest-datasets-george")
    assert artifact is not None and "| chunks written | 4 |" in str(artifact.data)

    data = {"num_workers": 0, "min_resolution": 0, "batch_size": 2}
    summary = train_stage2(_settings(str(tmp_path / "store"), tmp_path / "work", max_steps=2, save_every=1,
                                     config="configs/train/tiny_stage2_storystream.yaml",
                                     shards_from="datasets/george", overrides={"data": data}))  # fmt: skip
    assert summary.steps == 2 and summary.final_loss is not None


def test_ingest_into_s3_uploads_from_a_staging_folder(prefect_api, s3_bucket, tmp_path):
    pattern, images = _release(tmp_path / "release")
    s3 = S3Settings(endpoint_url=s3_bucket.endpoint_url)
    settings = IngestSettings(jsonl=[pattern], image_dir=str(images), store=f"s3://{s3_bucket.name}/data",
                              prefix="storystream/george", work_dir=str(tmp_path / "work"), s3=s3)  # fmt: skip
    report = ingest_storystream(settings)
    store = open_store(settings.store, s3)
    assert store.list("storystream/") == [
        "storystream/george/ingest-report.json",
        "storystream/george/shard-00000.parquet",
    ]
    assert (
        json.loads(store.get_bytes("storystream/george/ingest-report.json"))["chunks_written"]
        == report.chunks_written
        == 4
    )
    assert not (tmp_path / "work" / "ingest" / "storystream" / "george").exists()  # the staging folder is gone
