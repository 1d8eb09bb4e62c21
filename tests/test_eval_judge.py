"""The story-world judge: detector accuracy, caption parsing, metrics on true and corrupted stories, the eval CLI."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from seed_story.cli.main import app
from seed_story.runstore import StoredStep, StoryRecord
from seed_story.storyworld.draw import render_frame
from seed_story.storyworld.judge.captions import parse_caption
from seed_story.storyworld.judge.detect import detect_frame
from seed_story.storyworld.judge.metrics import METRICS, Scores, judge_story
from seed_story.storyworld.spec import SLOTS, STYLES, WORLD, styled
from seed_story.storyworld.world import StoryWorld, WorldStory


def degrade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """What a small generator might give back: a 32 px round trip, a slight blur, some noise."""
    small = image.resize((32, 32), Image.Resampling.BOX).resize((64, 64), Image.Resampling.BILINEAR)
    pixels = np.asarray(small.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32)
    return Image.fromarray((pixels + rng.normal(0, 5, pixels.shape)).clip(0, 255).round().astype(np.uint8))


def frames_of(story: WorldStory) -> list[tuple[str, Image.Image]]:
    return [(f.caption, render_frame(f.truth)) for f in story.frames]


def perfect(scores: Scores) -> bool:
    return all(getattr(scores, m).value in (None, 1.0) for m in METRICS)


@pytest.fixture(scope="module")
def stories() -> list[WorldStory]:
    world = StoryWorld(seed=2026)
    return [world.story(i) for i in range(12)]


def test_detector_accuracy_per_attribute_clean_and_degraded() -> None:
    world, picker, rng = StoryWorld(seed=99), random.Random(0), np.random.default_rng(0)
    truths = [picker.choice(world.story(i).frames).truth for i in range(300)]
    pictures = [render_frame(t) for t in truths]
    for name, images in (("clean", pictures), ("degraded", [degrade(p, rng) for p in pictures])):
        began = time.perf_counter()
        found = [detect_frame(image) for image in images]
        per_frame = (time.perf_counter() - began) / len(images)
        accuracy = {
            "scene": np.mean([d.scene == t.scene for d, t in zip(found, truths, strict=True)]),
            "style": np.mean([d.style == t.style for d, t in zip(found, truths, strict=True)]),
            "slot": np.mean([d.in_slot(s) == t.in_slot(s) for d, t in zip(found, truths, strict=True) for s in SLOTS]),
        }
        assert min(accuracy.values()) >= 0.99, (name, accuracy)
        assert per_frame < 0.005, per_frame
    for truth in truths[:10]:  # any picture size is read at 64 px
        found = detect_frame(render_frame(truth, size=128))
        assert (found.scene, found.style, found.slots) == (truth.scene, truth.style, tuple(map(truth.in_slot, SLOTS)))


def test_parse_caption() -> None:
    m = parse_caption("Just then, Momo arrived on the right. Pip slept by the lake, and Pip smiled at Bobo.")
    assert m.names == ("Momo", "Pip") and m.entrances == ("Momo",) and m.scene == "lake"
    assert m.unknown_names == ("Bobo",) and m.name_tokens == 3
    assert parse_caption("They left the desert and went to the snowy hills.").scene == "snow"
    assert parse_caption("pip walked.").names == ()


def test_metrics_perfect_on_ground_truth(stories: list[WorldStory]) -> None:
    total = Scores()
    for story in stories:
        scores = judge_story(frames_of(story))
        assert perfect(scores), (story.story_id, scores)
        total += scores
    assert total.frames == 30 * len(stories) and total.text_coherence == total.text_image_agreement == 1.0
    assert total.entrance_coherence.total > 0 and total.appearance_stability.total > 0


def test_swapped_pictures_lower_the_scores(stories: list[WorldStory]) -> None:
    captions = [[f.caption for f in s.frames] for s in stories]
    pictures = [[render_frame(f.truth) for f in s.frames] for s in stories]
    total = Scores()
    for i in range(len(stories)):  # the captions of story i with the pictures of story i + 1
        total += judge_story(zip(captions[i], pictures[(i + 1) % len(stories)], strict=True))
    assert total.character_consistency.value < 0.5 and total.cast_accuracy.value < 0.3
    assert total.scene_accuracy.value < 0.5 and total.text_image_agreement < 0.5


def test_recoloured_character_lowers_character_consistency(stories: list[WorldStory]) -> None:
    story = stories[0]
    who = story.frames[0].truth.characters[0].name
    outsider = next(c for c in WORLD.characters if c.name not in story.cast)
    body = np.array(styled(WORLD.character(who).colour, story.style), dtype=np.float32)
    frames = []
    for index, (caption, image) in enumerate(frames_of(story)):
        if index % 2:  # every other frame paints ``who`` in an outsider's colour
            pixels = np.asarray(image, dtype=np.float32)
            near = np.linalg.norm(pixels - body, axis=-1) < 60
            pixels[near] = styled(outsider.colour, story.style)
            image = Image.fromarray(pixels.astype(np.uint8))
        frames.append((caption, image))
    scores = judge_story(frames)
    named = sum(who in parse_caption(c).names for c, _ in frames[1::2])
    assert named > 0 and scores.character_consistency.total - scores.character_consistency.hits == named
    assert scores.appearance_stability.value < 1.0 and scores.style_consistency.value == 1.0


def test_shuffled_text_and_mixed_styles_lower_the_scores(stories: list[WorldStory]) -> None:
    rng = random.Random(1)
    shuffled, mixed = Scores(), Scores()
    for story in stories:
        frames = frames_of(story)
        captions = [c for c, _ in frames]
        rng.shuffle(captions)
        shuffled += judge_story(zip(captions, (p for _, p in frames), strict=True))
        restyled = [f.truth.model_copy(update={"style": STYLES[i % 3]}) for i, f in enumerate(story.frames)]
        mixed += judge_story((f.caption, render_frame(t)) for f, t in zip(story.frames, restyled, strict=True))
    assert shuffled.entrance_coherence.value < 0.6 and shuffled.cast_accuracy.value < 0.5
    assert shuffled.text_coherence < 0.8
    assert mixed.style_consistency.value < 0.4 and mixed.character_consistency.value == 1.0
    who = stories[1].frames[0].truth.characters[0].name  # renamed to a made-up name in every caption
    renamed = judge_story((c.replace(who, who + "ko"), p) for c, p in frames_of(stories[1]))
    assert renamed.name_stability.value < 1.0 and renamed.character_precision.value < 1.0


def write_run(root: Path, run_id: str, stories: list[tuple[str, list[tuple[str, Image.Image]]]]) -> None:
    """A store holding ``runs/{run_id}/{story_id}/story.json`` and its pictures, as the pipeline writes them."""
    for story_id, frames in stories:
        folder = root / "runs" / run_id / story_id
        folder.mkdir(parents=True)
        steps = [StoredStep(index=i, text=t, image=f"step_{i:02d}.png") for i, (t, _) in enumerate(frames[1:], 1)]
        record = StoryRecord(
            story_id=story_id, title=story_id, opening_text=frames[0][0], opening_image="opening.png", steps=steps
        )
        for name, (_, image) in zip(record.image_files(), frames, strict=True):
            image.save(folder / name)
        (folder / "story.json").write_text(record.model_dump_json())


def test_eval_cli_on_a_stored_run(tmp_path: Path, stories: list[WorldStory]) -> None:
    good = [(s.story_id, frames_of(s)) for s in stories[:3]]
    swapped = [("swapped", [(c, p) for (c, _), (_, p) in zip(good[0][1], good[1][1], strict=True)])]
    write_run(tmp_path, "r1", good + swapped)
    failed = tmp_path / "runs" / "r1" / "broken"
    failed.mkdir()
    record = StoryRecord(story_id="broken", title="x", status="failed", failure_reason="out of memory")
    (failed / "story.json").write_text(record.model_dump_json())
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", "--store", str(tmp_path), "--run", "r1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and "character_consistency" in result.output
    report = json.loads(out.read_text())
    by_id = {s["story_id"]: s["scores"] for s in report["stories"]}
    assert set(by_id) == {*(sid for sid, _ in good), "swapped"}
    assert report["skipped"] == [{"story_id": "broken", "reason": "status failed"}]
    for sid, _ in good:
        assert by_id[sid]["character_consistency"]["value"] == 1.0 and by_id[sid]["text_coherence"] == 1.0
    assert by_id["swapped"]["character_consistency"]["value"] < 0.7
    assert report["overall"]["frames"] == 4 * 30
    missing = CliRunner().invoke(app, ["eval", "--store", str(tmp_path), "--run", "nope"])
    assert missing.exit_code != 0


def test_eval_refuses_a_run_not_from_the_story_world(tmp_path: Path, stories: list[WorldStory]) -> None:
    """A run whose openings the story world never wrote has meaningless scores: refused, or flagged under --force."""
    toy = [("The blue frog runs to the barn.", frames_of(stories[0])[0][1]), *frames_of(stories[0])[1:]]
    write_run(tmp_path, "r1", [("world", frames_of(stories[1])), ("toy", toy)])
    args = ["eval", "--store", str(tmp_path), "--run", "r1"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "overall" not in refused.output
    assert refused.output.strip().splitlines()[-1] == (  # one line, after the bar's
        "error: run r1 is not a story-world run: 1 of 2 stories open with text the story world does not write "
        "(first: toy); the judge's scores would mean nothing (--force scores it anyway)"
    )
    out = tmp_path / "eval.json"
    forced = CliRunner().invoke(app, [*args, "--force", "--json", str(out)])
    assert forced.exit_code == 0, forced.output
    assert "warning: 1 stories do not open in the story world (first: toy)" in forced.output
    report = json.loads(out.read_text())
    assert report["not_storyworld"] == ["toy"] and len(report["stories"]) == 2
