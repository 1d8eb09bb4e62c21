"""The synthetic story world: determinism, captions that follow the pictures, StoryStream compatibility, CLI."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from seed_story.cli.main import app
from seed_story.data.storystream import IngestReport, read_storystream
from seed_story.storyworld import text
from seed_story.storyworld.draw import render_frame
from seed_story.storyworld.judge.captions import parse_caption
from seed_story.storyworld.spec import STYLES, WORLD, background_palette, styled
from seed_story.storyworld.world import FRAMES_PER_STORY, FrameAnnotation, StoryWorld, opening, write_storyworld


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_any_workers_other_seed_differs(tmp_path: Path) -> None:
    one = write_storyworld(tmp_path / "a", 3, seed=11, workers=1)
    write_storyworld(tmp_path / "b", 3, seed=11, workers=2)
    write_storyworld(tmp_path / "c", 3, seed=12, workers=1)
    a, b, c = (folder_bytes(tmp_path / n) for n in "abc")
    a.pop("report.json"), b.pop("report.json"), c.pop("report.json")  # holds timings
    assert a == b
    assert len([k for k in a if k.endswith(".png")]) == 3 * FRAMES_PER_STORY == one.frames
    assert a["stories.jsonl"] != c["stories.jsonl"] and a["annotations.jsonl"] != c["annotations.jsonl"]
    pictures = [a[k] for k in sorted(a) if k.endswith(".png")]
    assert pictures != [c[k] for k in sorted(c) if k.endswith(".png")]
    assert StoryWorld(11).story(2) == StoryWorld(11).story(2) != StoryWorld(11).story(1)


def test_written_layout_ingests_as_storystream(tmp_path: Path) -> None:
    write_storyworld(tmp_path, 2, seed=3, workers=1)
    report = IngestReport()
    chunks = list(read_storystream([tmp_path / "stories.jsonl"], tmp_path / "images", report))
    assert len(chunks) == 2 * FRAMES_PER_STORY // 10 and not report.problems
    lines = (tmp_path / "annotations.jsonl").read_text().splitlines()
    first = FrameAnnotation.model_validate_json(lines[0])
    assert (first.story_id, first.frame) == (chunks[0].story_id, 0)
    story = StoryWorld(3).story(0)
    assert first.truth == story.frames[0].truth and chunks[0].captions == [f.caption for f in story.frames[:10]]
    assert (tmp_path / "images" / first.image).read_bytes() == chunks[0].images[0]
    assert json.loads((tmp_path / "world.json").read_text())["characters"][0]["name"] == WORLD.names[0]


def test_caption_corpus_describes_every_frame(tmp_path: Path) -> None:
    write_storyworld(tmp_path, 2, seed=4, workers=1)
    pairs = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    lines = (tmp_path / "annotations.jsonl").read_text().splitlines()
    annotations = [FrameAnnotation.model_validate_json(line) for line in lines]
    assert len(pairs) == len(annotations) == 2 * FRAMES_PER_STORY
    for pair, annotation in zip(pairs, annotations, strict=True):
        [caption], truth = pair["captions"], annotation.truth
        assert pair["images"] == [annotation.image] and pair["id"] == f"{annotation.story_id}-{annotation.frame:02d}"
        said = parse_caption(caption)
        assert set(said.names) == {p.name for p in truth.characters} and not said.unknown_names, caption
        assert said.scene == truth.scene, caption
        for p in truth.characters:  # each name sits next to its own place
            where = text.WHERE[p.slot]
            desc = WORLD.character(p.name).description
            placed = (f"{p.name} is {where}", f"{where} is {p.name}", f"{p.name} the {desc} stands {where}")
            assert any(phrase in caption.lower() for phrase in map(str.lower, placed)), caption
    # The corpus ingests as one-picture chunks: image-caption pairs for caption pre-training.
    report = IngestReport()
    chunks = list(read_storystream([tmp_path / "captions.jsonl"], tmp_path / "images", report, chunk_length=1))
    assert len(chunks) == 2 * FRAMES_PER_STORY and not report.problems
    assert chunks[1].captions == pairs[1]["captions"] and len(chunks[1].images) == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_captions_follow_the_ground_truth(seed: int) -> None:
    for story in map(StoryWorld(seed).story, range(40)):
        assert len(story.frames) == FRAMES_PER_STORY
        assert {f.truth.style for f in story.frames} == {story.style}
        previous = None
        for frame, following in itertools.zip_longest(story.frames, story.frames[1:]):
            visible = {p.name for p in frame.truth.characters}
            said = parse_caption(frame.caption)
            assert set(said.names) == visible and 1 <= len(visible) <= 2, frame
            assert visible <= set(story.cast) and not said.unknown_names
            assert said.scene in (None, frame.truth.scene)
            if previous is None or frame.truth.scene != previous.truth.scene:
                assert said.scene == frame.truth.scene, frame.caption
            if previous is not None:
                newcomers = visible - {p.name for p in previous.truth.characters}
                assert set(frame.entered) == newcomers <= set(said.entrances), frame.caption
            gone = visible - ({p.name for p in following.truth.characters} if following else visible)
            assert set(frame.leaving) == gone
            assert all(p.action == "waves" for p in frame.truth.characters if p.name in gone)
            previous = frame
        # English articles: "an orange square", never "a orange square".
        assert not re.search(r"\b[Aa] [aeiou]", " ".join(f.caption for f in story.frames))


def test_entrance_words_only_in_entrance_templates() -> None:
    others = [*text.OPENINGS, *text.FAREWELLS, *text.ALONE, *text.TRAVELS, *text.MOVES, *text.ONE_ACTION]
    others += [*text.TWO_ACTIONS, *text.SAME_ACTION, *(p for ps in text.ACTION_PHRASES.values() for p in ps)]
    words = {w.lower() for t in others for w in t.replace(",", " ").replace(".", " ").split()}
    assert not words & set(text.ENTRANCE_WORDS)
    for template in (*text.ENTRANCES, *text.RETURNS):
        assert any(w in template.split() for w in text.ENTRANCE_WORDS), template


def test_identities_are_bold_and_distinct() -> None:
    """Body colours stay far from each other and from every background colour, in every style."""
    for style in STYLES:
        bodies = np.array([styled(c.colour, style) for c in WORLD.characters], dtype=float)
        gaps = np.linalg.norm(bodies[:, None] - bodies[None], axis=-1) + np.eye(len(bodies)) * 1e3
        assert gaps.min() > 50, style
        for scene in WORLD.scenes:
            background = np.array(background_palette(scene.name, style), dtype=float)
            assert np.linalg.norm(bodies[:, None] - background[None], axis=-1).min() > 45, (scene.name, style)


def test_opening_helpers_and_manifest(tmp_path: Path) -> None:
    from seed_story.batch.manifest import parse_manifest
    from seed_story.storyworld.world import write_openings

    caption, image = opening(seed=4, index=2)
    frame = StoryWorld(4).story(2).frames[0]
    assert caption == frame.caption and image.size == (64, 64)
    assert image.tobytes() == render_frame(frame.truth).tobytes()
    path = write_openings(tmp_path, 3, seed=4, with_texts=True)
    manifest = parse_manifest(path.read_bytes(), str(path), str(tmp_path))
    assert not manifest.problems and len(manifest.rows) == 3
    assert manifest.rows[2].text == caption and len(manifest.rows[2].texts or []) == FRAMES_PER_STORY - 1
    assert (tmp_path / manifest.rows[0].image).is_file()


def test_storyworld_cli(tmp_path: Path) -> None:
    out = tmp_path / "world"
    args = ["data", "storyworld", "--out", str(out), "--stories", "2", "--seed", "5", "--size", "32", "--json"]
    result = CliRunner().invoke(app, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["frames"] == 2 * FRAMES_PER_STORY and sum(report["styles"].values()) == 2
    lines = (out / "stories.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["id"] == StoryWorld(5).story_id(0)
    with Image.open(out / "images" / json.loads(lines[1])["images"][-1]) as picture:
        assert picture.size == (32, 32)
