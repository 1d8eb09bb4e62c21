"""Training from StoryStream shards: the config source, SD pictures and time_ids, the size filter, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from seed_story.cli.main import app
from seed_story.components import build_random, load_components
from seed_story.data.dataset import StoryStreamDataset
from seed_story.data.ingest import ingest_storystream
from seed_story.data.sequence import SequenceSettings, collate, passes_filter, sd_transform
from seed_story.training import TrainConfig, train
from seed_story.training.run import build_task
from seed_story.training.sources import storystream_batches
from seed_story.training.trainer import Trainer, data_state_file

PICTURES = 10


def write_storystream(root: Path, sizes: list[tuple[int, int]]) -> tuple[Path, Path]:
    """A release-shaped StoryStream: one story of 10 pictures per entry of ``sizes`` (its last picture's size)."""
    image_dir, lines = root / "image", []
    for s, last in enumerate(sizes):
        names = [f"{s:03d}/{i}.png" for i in range(PICTURES)]
        for i, name in enumerate(names):
            (image_dir / name).parent.mkdir(parents=True, exist_ok=True)
            size = last if i == PICTURES - 1 else (144, 128)
            Image.new("RGB", size, (40 * s % 256, 25 * i, 200 - 10 * i)).save(image_dir / name)
        captions = [f"Story {s}: a fox at place {i}." for i in range(PICTURES)]
        lines.append(json.dumps({"id": s, "images": names, "captions": captions, "orders": list(range(PICTURES))}))
    jsonl = root / "train.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    return jsonl, image_dir


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("storystream")
    jsonl, image_dir = write_storystream(root, [(144, 128)] * 6)
    report = ingest_storystream([jsonl], image_dir, root / "shards", row_group_size=2)
    assert report.chunks_written == 6
    return root / "shards"


def _data(shards: Path | list[str], **values: Any) -> dict[str, Any]:
    base = dict(
        kind="storystream",
        shards=shards if isinstance(shards, list) else str(shards),
        batch_size=2,
        max_length=4096,
        pad_to_max_length=False,
    )
    return {**base, **values}


def _cfg(stage: str, out: Path, shards: Path, **values: Any) -> TrainConfig:
    base = dict(output_dir=str(out), max_steps=3, learning_rate=3e-3, warmup_steps=1, mixed_precision="no")
    base.update(save_every=100, gradient_accumulation_steps=1, data=_data(shards))
    return TrainConfig.for_stage(stage, **{**base, **values})


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stage2_cli_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s2") / "run"
    config = out.parent / "s2.yaml"
    values = dict(stage="stage2", output_dir=str(out), max_steps=3, save_every=3, warmup_steps=1, mixed_precision="no")
    config.write_text(yaml.safe_dump({**values, "learning_rate": 3e-3, "data": _data(shards)}))
    result = CliRunner().invoke(app, ["train", "stage2", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return out


def test_stage2_trains_from_a_storystream_config(stage2_cli_run: Path) -> None:
    losses = _losses(stage2_cli_run)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    state = json.loads((stage2_cli_run / "checkpoints" / "checkpoint-3" / data_state_file(0)).read_text())
    assert state["batches_consumed"] == 3 and state["samples_consumed"] == 6
    parts = load_components(stage2_cli_run / "final")
    assert parts.mllm is not None


@pytest.fixture(scope="module")
def caption_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image-caption pairs: 8 one-picture lines ingested with chunk length 1, in row groups of 2."""
    root = tmp_path_factory.mktemp("captions")
    jsonl, image_dir = write_storystream(root, [(144, 128)])
    pairs = [
        json.dumps({"id": f"p{i}", "images": [f"000/{i}.png"], "captions": [f"A fox at place {i}."]}) for i in range(8)
    ]
    jsonl.write_text("\n".join(pairs) + "\n")
    report = ingest_storystream([jsonl], image_dir, root / "shards", chunk_length=1, row_group_size=2)
    assert report.chunks_written == 8 and not report.problems
    return root / "shards"


def test_a_mix_of_stories_and_caption_pairs(shards: Path, caption_shards: Path) -> None:
    mix = [str(shards), str(caption_shards / "shard-00000.parquet")]
    cfg = _cfg("stage2", Path("unused"), shards, data=_data(mix, batch_size=14, epochs=1))
    task = build_task(cfg)
    dataset, loader = storystream_batches(cfg.stage, cfg.data, task.parts, cfg.seed)
    assert dataset.store.names() == ["0/shard-00000.parquet", "1/shard-00000.parquet"]
    [batch] = list(loader)  # one epoch: 6 story chunks and 8 pairs
    pairs = [t for t in batch.texts if t.startswith(("A fox", "<img>"))]
    assert len(batch.texts) == 14 and len(pairs) == 8
    # Both tasks of caption pre-training, and every picture's mask says context or target.
    assert {t.startswith("<img>") for t in pairs} == {True, False}
    generated = sum(not t.startswith("<img>") for t in pairs)  # a described pair's picture is context only
    assert torch.equal(batch.embeds_cmp_mask, ~batch.embeds_gen_mask)
    assert int(batch.embeds_gen_mask.sum()) == 6 + generated
    only_pictures = cfg.data.model_copy(update={"caption_generation": 1.0})
    [generating] = list(storystream_batches(cfg.stage, only_pictures, task.parts, cfg.seed)[1])
    assert not any(t.startswith("<img>") for t in generating.texts) and int(generating.embeds_gen_mask.sum()) == 14
    loss = task.loss(task.module, batch)
    assert math.isfinite(float(loss["loss"])) and float(loss["rec_loss"]) > 0
    with pytest.raises(FileNotFoundError, match="no shard folder or file"):
        settings = SequenceSettings(num_image_tokens=task.parts.config.mllm.num_image_tokens)
        StoryStreamDataset([str(shards), str(shards / "missing")], task.parts.tokenizer, settings)


@pytest.mark.parametrize("mix", [False, True], ids=["stories", "stories+captions"])
def test_storystream_resume_is_bit_identical(shards: Path, caption_shards: Path, tmp_path: Path, mix: bool) -> None:
    class Interrupted(Exception):
        pass

    source = [str(shards), str(caption_shards)] if mix else shards

    def run(out: Path, interrupt_after: int | None = None, **values: Any) -> Any:
        data = _data(source, num_workers=2)
        cfg = _cfg("stage2", out, shards, max_steps=4, save_every=2, data=data, **values)
        task = build_task(cfg)
        dataset, loader = storystream_batches(cfg.stage, cfg.data, task.parts, cfg.seed)

        def batches() -> Any:
            for i, batch in enumerate(loader):
                if i == interrupt_after:
                    raise Interrupted
                yield batch

        return Trainer(cfg, task, batches(), data_state=dataset).fit()

    whole = run(tmp_path / "whole")
    with pytest.raises(Interrupted):
        run(tmp_path / "split", interrupt_after=2)
    resumed = run(tmp_path / "split", resume=True)
    assert resumed.losses == whole.losses
    a, b = (load_file(str(r.checkpoint / "mllm.safetensors")) for r in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stage1_and_stage3_train_from_storystream(shards: Path, stage2_cli_run: Path, tmp_path: Path) -> None:
    one = train(_cfg("stage1", tmp_path / "s1", shards, max_steps=2))
    three = train(_cfg("stage3", tmp_path / "s3", shards, max_steps=2, init=str(stage2_cli_run / "final")))
    for result in (one, three):
        assert len(result.losses) == 2 and all(math.isfinite(v) for v in result.losses)


def test_stage1_batches_carry_the_targets_sd_pictures(shards: Path, tiny_config: Any) -> None:
    parts = build_random(tiny_config)
    data = TrainConfig.for_stage("stage1", output_dir="o", data=_data(shards)).data
    _, loader = storystream_batches("stage1", data, parts, seed=0)
    batch = next(iter(loader))
    sd = tiny_config.detokenizer.image_size
    assert batch.sd_images.shape == (2, 3, sd, sd) and batch.sd_images.min() >= -1 and batch.sd_images.max() <= 1
    assert batch.time_ids.tolist() == [[128.0, 144.0, 2.0, 0.0, sd, sd]] * 2  # 144x128 -> 36x32, left offset 2
    assert batch.target_images.shape == (2, 3, tiny_config.vision.image_size, tiny_config.vision.image_size)


def test_sd_transform_swaps_crop_offsets_like_the_reference() -> None:
    # the release's decode_long_story_data: 1920x1080 -> 1820x1024, centre crop left 398, top 0, written as [1080,
    # 1920, 398, 0, ...]
    pixels, time_ids = sd_transform(Image.new("RGB", (1920, 1080), (255, 0, 0)), 1024)
    assert time_ids.tolist() == [1080, 1920, 398, 0, 1024, 1024] and pixels.shape == (3, 1024, 1024)
    assert pixels[0].eq(1).all() and pixels[1].eq(-1).all()
    # The same picture at a tenth of the size: 192x108 -> 56x32, left offset 12.
    assert sd_transform(Image.new("RGB", (192, 108)), 32)[1].tolist() == [108, 192, 12, 0, 32, 32]
    unswapped = sd_transform(Image.new("RGB", (192, 108)), 32, swap_crop_offsets=False)[1]
    assert unswapped.tolist() == [108, 192, 0, 12, 32, 32]
    assert sd_transform(Image.new("RGB", (108, 192)), 32)[1].tolist() == [192, 108, 0, 12, 32, 32]


def test_size_filter_drops_and_counts_small_or_odd_pictures(tmp_path: Path, tiny_config: Any) -> None:
    settings = SequenceSettings()
    assert passes_filter(Image.new("RGB", (128, 128)), settings)
    assert not passes_filter(Image.new("RGB", (127, 300)), settings)
    assert passes_filter(Image.new("RGB", (640, 128)), settings)  # aspect exactly 5
    assert not passes_filter(Image.new("RGB", (641, 128)), settings)
    # Stories whose last picture is too small or too wide are dropped; the others train.
    jsonl, image_dir = write_storystream(tmp_path, [(144, 128), (100, 100), (144, 128), (700, 128), (144, 128)])
    ingest_storystream([jsonl], image_dir, tmp_path / "shards", row_group_size=1)
    parts = build_random(tiny_config)
    settings = SequenceSettings(num_image_tokens=tiny_config.mllm.num_image_tokens, image_size=28, max_length=4096)
    dataset = StoryStreamDataset(tmp_path / "shards", parts.tokenizer, settings, shuffle=False)
    samples = list(dataset)
    assert sorted(s.meta["chunk_id"] for s in samples) == ["0-0", "2-0", "4-0"]
    dataset.observe(collate(samples, pad_token_id=0))
    assert dataset.state_dict()["dropped"] == {"too_long": 0, "small_or_odd_picture": 2}


def test_storystream_config_needs_no_existing_folder_but_training_does(tmp_path: Path) -> None:
    cfg = TrainConfig.for_stage(
        "stage2", output_dir=str(tmp_path / "o"), data={"kind": "storystream", "shards": str(tmp_path / "none")}
    )
    assert cfg.data.kind == "storystream" and cfg.data.epochs is None
    with pytest.raises(ValueError, match="no StoryStream shards for stage2: no shard folder or file"):
        train(cfg.model_copy(update={"data": cfg.data.model_copy(update={"shards": [str(tmp_path / "none")]})}))
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match=r"no StoryStream shards configured for stage2: .* holds no \*\.parquet"):
        train(cfg)
    assert not (tmp_path / "o").exists()  # refused before anything was built or written
