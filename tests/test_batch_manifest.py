"""Manifest parsing: every format, line numbers, bad rows reported, duplicate ids refused."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seed_story.batch.manifest import ManifestError, manifest_format, parse_manifest, resolve_image_uri
from seed_story.batch.shards import shard_manifest
from seed_story.batch.sources import load_manifest
from seed_story.storage import OutsideRoots


def test_jsonl_rows_defaults_and_line_numbers():
    data = b"\n".join([
        b'{"story_id": "a", "image": "a.png", "text": "Once."}',
        b"",
        b'{"story_id": "b", "image": "s3://bk/b.png", "text": "Twice.", "texts": ["x", "y"],'
        b' "sampling": {"do_sample": true}}',
        b"[1, 2]",
        b'{"story_id": "c", "image": "c.png", "text": "   "}',
        b'{"story_id": "d", "image": "d.png", "text": "Hi.", "surprise": 1}',
    ])  # fmt: skip
    m = parse_manifest(data, "night.jsonl", "/in", image_roots=["s3://bk"])
    assert [(e.line, e.row.story_id) for e in m.entries] == [(1, "a"), (3, "b")]
    a, b = m.rows
    assert a.steps == 25 and a.num_steps == 25 and a.sampling is None and a.book_title == "Once"
    assert b.num_steps == 2 and b.sampling.do_sample
    assert [(p.line, p.story_id) for p in m.problems] == [(4, None), (5, "c"), (6, "d")]
    assert "JSON object" in m.problems[0].reason and "blank" in m.problems[1].reason
    assert "surprise" in m.problems[2].reason


def test_csv_cells_hold_json_and_blank_cells_mean_default():
    text = (
        "story_id,image,text,texts,steps,sampling,title\n"
        "a,a.png,Once.,,,,\n"
        'b,b.png,"Twice, again.","[""x"", ""y""]",,"{""temperature"": 0.9}",Book B\n'
        "c,c.png,Hi.,[not json,,,\n"
        "d,d.png,Hi.,,3,,,extra\n"
    )
    m = parse_manifest(text.encode(), "night.csv", "/in")
    assert [r.story_id for r in m.rows] == ["a", "b"]
    assert m.rows[0].steps == 25 and m.rows[1].texts == ["x", "y"] and m.rows[1].sampling.temperature == 0.9
    assert m.rows[1].title == "Book B"
    assert [(p.line, p.reason.split(":")[0]) for p in m.problems] == [
        (4, "texts"),
        (5, "more cells than the 7 header columns"),
    ]


def test_parquet_rows():
    table = pa.Table.from_pylist([
        {"story_id": "a", "image": "a.png", "text": "Once.", "steps": 3},
        {"story_id": "b", "image": "b.png", "text": None, "steps": 4},
    ])  # fmt: skip
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    m = parse_manifest(buffer.getvalue(), "night.parquet", "/in")
    assert [r.steps for r in m.rows] == [3] and m.problems[0].line == 2 and "text" in m.problems[0].reason


def test_duplicate_ids_and_unknown_formats_are_errors():
    rows = [{"story_id": "a", "image": "a.png", "text": "x."}] * 2 + [{"story_id": "a", "image": 5}]
    with pytest.raises(ManifestError, match=r"'a' \(lines 1, 2, 3\)"):
        parse_manifest("\n".join(json.dumps(r) for r in rows).encode(), "m.jsonl", "/in")
    with pytest.raises(ManifestError, match="format"):
        manifest_format("night.txt")


def test_image_uris_resolve_inside_the_manifest_folder_or_an_allowed_root():
    assert resolve_image_uri("pics/a.png", "/data/in") == "/data/in/pics/a.png"
    assert resolve_image_uri("pics/../a.png", "/data/in") == "/data/in/a.png"
    assert resolve_image_uri("./pics/a.png", "s3://bk/in") == "s3://bk/in/pics/a.png"
    assert resolve_image_uri("s3://bk/in/a.png", "s3://bk/in/") == "s3://bk/in/a.png"
    refused = [("../a.png", "/data/in"), ("/data/inside/a.png", "/data/in"), ("/abs/a.png", "s3://bk/in"),
               ("file:///abs/a.png", "/x"), ("s3://other/a.png", "/x"), ("../a.png", "s3://bk/in"),
               ("s3://bk/in/../a.png", "s3://bk/in"), ("s3://bk/inside/a.png", "s3://bk/in")]  # fmt: skip
    for image, folder in refused:
        with pytest.raises(OutsideRoots):
            resolve_image_uri(image, folder)
    roots = ["/abs", "s3://other"]
    assert resolve_image_uri("/abs/a.png", "s3://bk/in", roots) == "/abs/a.png"
    assert resolve_image_uri("file:///abs/a.png", "/x", roots) == "/abs/a.png"
    assert resolve_image_uri("s3://other/a.png", "/x", roots) == "s3://other/a.png"
    with pytest.raises(OutsideRoots):
        resolve_image_uri("/abs/../etc/passwd", "/x", roots)


def test_rows_whose_image_leads_outside_are_bad_rows(tmp_path):
    """``../``, absolute paths and symlinks out are bad rows with a reason; good rows and allowed roots go on."""
    folder, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (tmp_path / "secret.png").write_bytes(b"secret")
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    (folder / "pics").symlink_to(elsewhere, target_is_directory=True)
    images = {"good": "a.png", "up": "../secret.png", "abs": "/etc/passwd", "link": "link.png",
              "shared": str(elsewhere / "b.png"), "via-dir": "pics/b.png"}  # fmt: skip
    rows = [{"story_id": sid, "image": image, "text": "Hi."} for sid, image in images.items()]
    manifest = folder / "night.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m, _ = load_manifest(str(manifest))
    assert [e.row.story_id for e in m.entries] == ["good"] and m.entries[0].image_uri == str(folder / "a.png")
    why = {p.story_id: (p.line, p.reason) for p in m.problems}
    assert why["up"] == (2, f"image: ../secret.png leads outside {folder}")
    assert why["abs"] == (3, f"image: /etc/passwd leads outside {folder} (an absolute path needs an allowed root)")
    assert why["link"] == (4, f"image: link.png leads outside {folder}") and set(why) == set(images) - {"good"}
    m, _ = load_manifest(str(manifest), image_roots=[str(elsewhere)])
    assert [e.row.story_id for e in m.entries] == ["good", "shared", "via-dir"]
    assert m.entries[2].image_uri == str(elsewhere / "b.png")


def test_empty_manifests_and_folders_are_errors(tmp_path):
    with pytest.raises(ManifestError, match=r"^manifest m\.jsonl has no rows$"):
        parse_manifest(b"\n\n", "m.jsonl", "/in")
    bad = b'{"story_id": "a", "image": "../a.png", "text": "Hi."}\n{oops\n'
    with pytest.raises(ManifestError, match=r"^no valid row in manifest m.jsonl: 2 bad rows \(line 1: image: \.\./a"):
        parse_manifest(bad, "m.jsonl", "/in")
    with pytest.raises(ManifestError, match="manifest is a directory, not a file"):
        load_manifest(str(tmp_path))


def test_shards_are_round_robin_with_absolute_images():
    data = "\n".join(json.dumps({"story_id": f"s{i}", "image": f"{i}.png", "text": "x."}) for i in range(5))
    m = parse_manifest(data.encode(), "m.jsonl", "/in")
    shards = [[json.loads(line) for line in s.decode().splitlines()] for s in shard_manifest(m, 2)]
    assert [[r["story_id"] for r in s] for s in shards] == [["s0", "s2", "s4"], ["s1", "s3"]]
    assert shards[0][0]["image"] == "/in/0.png"
    assert len(shard_manifest(m, 9)) == 5  # empty shards are left out


def test_display_text_drops_the_inst_separator_a_model_writes():
    from seed_story.batch.finishing import display_text

    assert display_text("[INST]Pip came back on the left.") == "Pip came back on the left."
    assert display_text("Pip waved. [INST] Momo  jumped.") == "Pip waved. Momo jumped."
