"""StoryStream ingestion, Parquet shards, the streaming dataset (sharding, resume) and the data CLI."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from seed_story.cli.main import app
from seed_story.data.dataset import StoryStreamDataset
from seed_story.data.ingest import ingest_storystream
from seed_story.data.sequence import SequenceSettings, collate
from seed_story.data.shards import SHARD_SCHEMA, ShardFolder, read_chunks, write_shards
from seed_story.data.storystream import IngestReport, StoryChunk, read_image_bytes, read_storystream
from seed_story.tokenizer import build_byte_tokenizer

SETTINGS = SequenceSettings(num_image_tokens=16, image_size=28, min_resolution=0)


def story(story_id: int, n: int, *, captions: int | None = None) -> dict:
    images = [f"{story_id:06d}/frame_{i}.jpg" for i in range(n)]
    texts = [f"Story {story_id} scene {i}." for i in range(n if captions is None else captions)]
    return {"id": story_id, "images": images, "captions": texts, "orders": list(range(n))}


def write_release(root: Path, lines: list[str]) -> tuple[Path, Path]:
    """A release-shaped fixture: every image any line names exists as a tiny JPEG."""
    image_dir = root / "image"
    for line in lines:
        try:
            names = json.loads(line).get("images", [])
        except json.JSONDecodeError:
            continue
        for i, name in enumerate(names):
            path = image_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 12), (i * 8 % 256, 90, 160)).save(path, "JPEG")
    jsonl = root / "train.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return jsonl, image_dir


@pytest.fixture
def release(tmp_path):
    """7 lines: 2 good stories (30 and 12 pictures), 1 short, 1 broken JSON, 1 missing key, 1 length mismatch,
    1 story (20 pictures) whose second chunk has a missing image and whose first has a corrupt one."""
    bad_images = story(7, 20)
    lines = [
        json.dumps(story(1, 30)),
        json.dumps(story(2, 12)),
        json.dumps(story(3, 5)),
        '{"id": 4, "images": [',
        json.dumps({"id": 5, "images": ["a.jpg", "b.jpg"]}),
        json.dumps(story(6, 10, captions=9)),
        "",
        json.dumps(bad_images),
    ]
    jsonl, image_dir = write_release(tmp_path, lines)
    (image_dir / bad_images["images"][3]).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (image_dir / bad_images["images"][15]).unlink()
    return jsonl, image_dir


def test_ingest_counts_and_reports_every_problem(release, tmp_path):
    jsonl, image_dir = release
    report = ingest_storystream([jsonl], image_dir, tmp_path / "shards", shard_size=2, row_group_size=1)
    assert (report.files, report.lines, report.stories) == (1, 7, 4)
    assert report.chunks_written == 3 + 1
    assert report.tail_images_dropped == 2
    assert report.counts() == {
        "too_short": 1,
        "invalid_json": 1,
        "invalid_record": 1,
        "length_mismatch": 1,
        "corrupt_image": 1,
        "missing_image": 1,
    }
    where = {(p.kind, p.source, p.story_id, p.chunk_index) for p in report.problems}
    assert ("too_short", "train.jsonl:3", "3", None) in where
    assert ("invalid_json", "train.jsonl:4", None, None) in where
    assert ("invalid_record", "train.jsonl:5", "5", None) in where
    assert ("length_mismatch", "train.jsonl:6", "6", None) in where
    assert ("corrupt_image", "train.jsonl:8", "7", 0) in where
    assert ("missing_image", "train.jsonl:8", "7", 1) in where
    assert report.shards == ["shard-00000.parquet", "shard-00001.parquet"]
    chunks = list(read_chunks(tmp_path / "shards"))
    assert [c.chunk_id for c in chunks] == ["1-0", "1-1", "1-2", "2-0"]
    assert chunks[1].captions == [f"Story 1 scene {i}." for i in range(10, 20)]
    assert chunks[1].image_names[0] == "000001/frame_10.jpg"
    assert chunks[1].images[0] == (image_dir / "000001/frame_10.jpg").read_bytes()
    saved = json.loads((tmp_path / "shards" / "ingest-report.json").read_text())
    assert saved == json.loads(report.model_dump_json())


def test_image_paths_stay_inside_the_image_folder_or_an_allowed_root(tmp_path):
    """``../``, absolute paths and symlinks out are skipped and counted, unless an allowed root holds them."""
    image_dir, other = tmp_path / "image", tmp_path / "other"
    for folder in (image_dir, other):
        folder.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "secret.png")
    Image.new("RGB", (8, 8), (4, 5, 6)).save(image_dir / "ok.png")
    Image.new("RGB", (8, 8), (7, 8, 9)).save(other / "shared.png")
    (image_dir / "link.png").symlink_to(tmp_path / "secret.png")
    (other / "notes.png").write_text("not a picture\n" * 1000)
    images = {"ok": "ok.png", "up": "../secret.png", "abs": "/etc/passwd", "link": "link.png",
              "allowed": str(other / "shared.png"), "text": str(other / "notes.png")}  # fmt: skip
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps({"id": k, "images": [v], "captions": ["x"]}) + "\n" for k, v in images.items()))

    report = ingest_storystream([jsonl], image_dir, tmp_path / "shards", chunk_length=1)
    assert report.counts() == {"image_outside": 5} and report.chunks_written == 1
    why = {p.story_id: p.detail for p in report.problems}
    assert why["up"] == f"../secret.png leads outside {image_dir}"
    assert why["abs"] == f"/etc/passwd leads outside {image_dir} (an absolute path needs an allowed root)"
    secret = (tmp_path / "secret.png").read_bytes()
    assert all(secret not in c.images for c in read_chunks(tmp_path / "shards"))

    out = tmp_path / "allowed"
    args = ["data", "ingest-storystream", str(jsonl), str(image_dir), str(out), "--json", "--chunk-length", "1",
            "--allow-root", str(other)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = IngestReport.model_validate_json(result.output)
    assert report.counts() == {"image_outside": 3, "corrupt_image": 1}
    assert [c.chunk_id for c in read_chunks(out)] == ["ok-0", "allowed-0"]
    with pytest.raises(OSError, match="over the 100 byte limit"):
        read_image_bytes(other / "notes.png", max_bytes=100)


def test_parquet_round_trip_and_atomic_names(release, tmp_path):
    jsonl, image_dir = release
    chunks = list(read_storystream([jsonl], image_dir, IngestReport()))
    store = ShardFolder(tmp_path / "out")
    names = write_shards(chunks, store, shard_size=3, row_group_size=2)
    assert names == store.names() == ["shard-00000.parquet", "shard-00001.parquet"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names  # no temporary file left behind
    assert list(read_chunks(store)) == chunks
    import pyarrow.parquet as pq

    assert pq.read_schema(tmp_path / "out" / names[0]).remove_metadata() == SHARD_SCHEMA


def test_reference_example_line_validates(tmp_path):
    line = Path("/work/shared/reference/storystream-example.jsonl")
    if not line.exists():
        pytest.skip("reference example not available")
    report = IngestReport()
    assert list(read_storystream([line], tmp_path, report)) == []
    assert report.counts() == {"missing_image": 1} and report.stories == 1


def make_chunks(count: int, n: int = 3) -> list[StoryChunk]:
    def jpeg(i: int) -> bytes:
        import io

        buf = io.BytesIO()
        Image.new("RGB", (10, 10), (i % 256, 0, 0)).save(buf, "JPEG")
        return buf.getvalue()

    return [
        StoryChunk(
            chunk_id=f"s{i}-0",
            story_id=f"s{i}",
            chunk_index=0,
            source=f"f.jsonl:{i + 1}",
            captions=[f"c{i}.{j}" for j in range(n)],
            image_names=[f"{i}/{j}.jpg" for j in range(n)],
            images=[jpeg(i + j) for j in range(n)],
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(make_chunks(20), out, shard_size=7, row_group_size=2)  # 11 row groups over 3 shards
    return out


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer(16)


def loader(dataset, batch_size=2, workers=2):
    pad = functools.partial(collate, pad_token_id=0)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=pad)


def test_dataset_shards_disjointly_over_ranks_and_workers(shard_dir, tok):
    seen = []
    for rank in range(2):
        ds = StoryStreamDataset(shard_dir, tok, SETTINGS, rank=rank, world_size=2, seed=5)
        for batch in loader(ds):
            seen += [(rank, m["worker"], m["chunk_id"]) for m in batch.meta]
    ids = [c for _, _, c in seen]
    assert sorted(ids) == sorted(f"s{i}-0" for i in range(20))  # every chunk exactly once
    assert len({(r, w) for r, w, _ in seen}) == 4


def test_dataset_is_deterministic_and_resumes_exactly(shard_dir, tok):
    def run(ds, limit=None):
        out = []
        for i, batch in enumerate(loader(ds, batch_size=2, workers=2)):
            if limit is not None and i == limit:
                break
            ds.observe(batch)
            out.append(([m["chunk_id"] for m in batch.meta], batch.input_ids, batch.images))
        return out

    full = run(StoryStreamDataset(shard_dir, tok, SETTINGS, seed=1, epochs=2))
    assert sum(len(ids) for ids, _, _ in full) == 40
    again = run(StoryStreamDataset(shard_dir, tok, SETTINGS, seed=1, epochs=2))
    assert [ids for ids, _, _ in again] == [ids for ids, _, _ in full]
    first = StoryStreamDataset(shard_dir, tok, SETTINGS, seed=1, epochs=2)
    head = run(first, limit=7)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["samples_consumed"] == 14 and state["batches_consumed"] == 7
    resumed = StoryStreamDataset(shard_dir, tok, SETTINGS, seed=1, epochs=2)
    resumed.load_state_dict(state)
    tail = run(resumed)
    assert len(head) + len(tail) == len(full)
    for (ids, input_ids, images), (want_ids, want_input_ids, want_images) in zip(head + tail, full, strict=True):
        assert ids == want_ids
        assert torch.equal(input_ids, want_input_ids) and torch.equal(images, want_images)


def test_dataset_refuses_too_few_row_groups(tmp_path, tok):
    write_shards(make_chunks(2), tmp_path, row_group_size=2)
    ds = StoryStreamDataset(tmp_path, tok, SETTINGS, rank=0, world_size=2)
    with pytest.raises(ValueError, match="row groups"):
        next(iter(ds))


def test_cli_ingest_json(release, tmp_path):
    jsonl, image_dir = release
    out = tmp_path / "cli-shards"
    result = CliRunner().invoke(
        app, ["data", "ingest-storystream", str(jsonl.parent / "*.jsonl"), str(image_dir), str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["chunks_written"] == 4 and len(report["problems"]) == 6
    table = CliRunner().invoke(app, ["data", "ingest-storystream", str(jsonl), str(image_dir), str(out)])
    assert table.exit_code == 0 and "missing_image" in table.output
