"""A synthetic story world with known ground truth, written in the StoryStream layout.

Each story has 30 frames. A frame shows 1-2 characters of the story's cast in three slots (left, centre,
right), each doing one action, in one of five scenes, drawn in the story's art style (fixed per story). From
frame to frame one thing happens: a character enters or leaves, moves, changes action, or everyone travels
to a new scene. Captions follow the pictures (see ``text``); the ground truth of every frame goes
to ``annotations.jsonl``, never into the captions. Everything is a pure function of ``(seed, index)``.

Beside the stories, ``captions.jsonl`` is an image-caption corpus over the same pictures, for the MLLM's
caption pre-training (what SEED-X's pre-training on captioned images gives the real model): one line per
frame, a one-picture "story" whose caption describes who stands where in which scene (``describe_frame``).

Written layout (feed it to ``seed-story data ingest-storystream out/stories.jsonl out/images shards/``, and the
caption corpus to ``ingest-storystream out/captions.jsonl out/images caption_shards/ --chunk-length 1``)::

    out/
        stories.jsonl       # {"id", "images", "captions"}, image paths relative to images/
        captions.jsonl      # {"id", "images": [one], "captions": [one]}: one described picture per frame
        annotations.jsonl   # one FrameAnnotation per frame
        world.json          # the cast, scenes and styles (WorldSpec)
        report.json         # a StoryWorldReport
        images/{story_id}/{frame:02d}.png

Example::

    story = StoryWorld(seed=0).story(3)
    story.frames[0].caption              # "Once upon a time, a red circle named Pip lived in ..."
    render_frame(story.frames[0].truth)  # the 64x64 picture
    write_storyworld("world/", n_stories=2000, seed=0)
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

from PIL import Image
from pydantic import Field

from seed_story.config import StrictModel
from seed_story.storyworld.draw import render_frame
from seed_story.storyworld.plot import Event, caption, plan_story
from seed_story.storyworld.spec import SLOTS, STYLES, WORLD, FrameTruth, StyleName
from seed_story.storyworld.text import describe_frame

FRAMES_PER_STORY = 30


class WorldFrame(StrictModel):
    """One frame of a story: its caption, what it shows, and what changed since the previous frame."""

    index: int = Field(ge=0)
    caption: str
    event: Event
    truth: FrameTruth
    entered: tuple[str, ...] = Field(default=(), description="characters not visible in the previous frame")
    leaving: tuple[str, ...] = Field(default=(), description="characters waving goodbye, gone in the next frame")


class WorldStory(StrictModel):
    """A whole story; ``frames[i].truth.style == style`` for every frame."""

    story_id: str
    seed: int
    index: int = Field(ge=0)
    style: StyleName
    cast: tuple[str, ...]
    frames: list[WorldFrame]

    def image_names(self) -> list[str]:
        """Image paths relative to the image folder, as ``stories.jsonl`` lists them."""
        return [f"{self.story_id}/{f.index:02d}.png" for f in self.frames]

    def pictures(self, size: int = 64) -> list[Image.Image]:
        """Every frame's picture, ``size`` px square, in story order."""
        return [render_frame(f.truth, size) for f in self.frames]


class FrameAnnotation(StrictModel):
    """One line of ``annotations.jsonl``: a frame's ground truth, keyed by story id and frame index."""

    story_id: str
    frame: int = Field(ge=0)
    image: str
    event: Event
    truth: FrameTruth
    entered: tuple[str, ...] = ()
    leaving: tuple[str, ...] = ()


class StoryWorldReport(StrictModel):
    """What ``write_storyworld`` wrote, and how long it took."""

    out_dir: str
    seed: int
    size: int
    stories: int
    frames: int
    seconds: float
    frames_per_second: float
    scenes: dict[str, int] = Field(description="frames per scene")
    styles: dict[str, int] = Field(description="stories per style")
    events: dict[str, int] = Field(description="frames per event")
    characters: dict[str, int] = Field(description="frames each character is visible in")


class StoryWorld:
    """All stories of one seed; ``story(i)`` is a pure function of ``(seed, i)``.

    Example::

        world = StoryWorld(seed=7)
        story = world.story(0)
        [f.caption for f in story.frames[:3]]
    """

    def __init__(self, seed: int = 0, frames: int = FRAMES_PER_STORY) -> None:
        if frames < 1:
            raise ValueError(f"a story needs at least one frame (got {frames})")
        self.seed = seed
        self.frames = frames

    def story_id(self, index: int) -> str:
        return f"sw{self.seed}-{index:06d}"

    def story(self, index: int) -> WorldStory:
        """Story ``index`` of this seed."""
        # String seeds hash with sha512: the same story on every machine and Python run.
        rng = random.Random(f"storyworld:{self.seed}:{index}")
        style = rng.choice(STYLES)
        cast = tuple(rng.sample(WORLD.names, rng.randint(3, 5)))
        planned = plan_story(rng, style, cast, self.frames)
        text_rng = random.Random(f"storyworld-text:{self.seed}:{index}")
        frames = [
            WorldFrame(
                index=i, caption=caption(text_rng, f), event=f.event, truth=f.truth, entered=f.entered,
                leaving=f.leaving,
            )
            for i, f in enumerate(planned)
        ]  # fmt: skip
        return WorldStory(
            story_id=self.story_id(index), seed=self.seed, index=index, style=style, cast=cast, frames=frames
        )

    def opening(self, index: int, size: int = 64) -> tuple[str, Image.Image]:
        """Frame 0 of story ``index``: its caption and picture, e.g. to start a generated story.

        Example::

            text, image = StoryWorld(seed=1).opening(0)
        """
        frame = self.story(index).frames[0]
        return frame.caption, render_frame(frame.truth, size)


def opening(seed: int, index: int, size: int = 64) -> tuple[str, Image.Image]:
    """The opening caption and picture of story ``index`` of ``seed`` (see ``StoryWorld.opening``).

    Example::

        text, image = opening(seed=0, index=5)
    """
    return StoryWorld(seed).opening(index, size)


Tallies = dict[str, Counter[str]]


def _write_stories(
    out_dir: str, seed: int, size: int, start: int, stop: int
) -> tuple[list[str], list[str], list[str], Tallies]:
    """Stories ``start..stop-1`` (in a worker): pictures written; jsonl lines and counts returned."""
    world, images = StoryWorld(seed), Path(out_dir) / "images"
    stories, annotations, described = [], [], []
    tallies: Tallies = {k: Counter() for k in ("scenes", "styles", "events", "characters")}
    for index in range(start, stop):
        story = world.story(index)
        (images / story.story_id).mkdir(parents=True, exist_ok=True)
        names = story.image_names()
        describe_rng = random.Random(f"storyworld-describe:{seed}:{index}")
        for frame, name in zip(story.frames, names, strict=True):
            render_frame(frame.truth, size).save(images / name, format="PNG")
            annotation = FrameAnnotation(
                story_id=story.story_id, frame=frame.index, image=name, event=frame.event, truth=frame.truth,
                entered=frame.entered, leaving=frame.leaving,
            )  # fmt: skip
            annotations.append(annotation.model_dump_json())
            line = {"id": f"{story.story_id}-{frame.index:02d}", "images": [name]}
            described.append(json.dumps({**line, "captions": [describe_frame(describe_rng, frame.truth)]}))
            tallies["scenes"][frame.truth.scene] += 1
            tallies["events"][frame.event] += 1
            tallies["characters"].update(p.name for p in frame.truth.characters)
        tallies["styles"][story.style] += 1
        captions = [f.caption for f in story.frames]
        stories.append(json.dumps({"id": story.story_id, "images": names, "captions": captions}))
    return stories, annotations, described, tallies


def write_storyworld(
    out_dir: str | Path, n_stories: int, seed: int = 0, *, size: int = 64, workers: int | None = None
) -> StoryWorldReport:
    """Write ``n_stories`` stories of ``seed`` in the StoryStream layout (see the module docstring).

    The output depends only on ``(n_stories, seed, size)``, not on ``workers``. Example::

        report = write_storyworld("world/", n_stories=2000, seed=0, workers=2)
        report.frames_per_second
    """
    if n_stories < 1 or size < 16:
        raise ValueError(f"need n_stories >= 1 and size >= 16 (got {n_stories} stories of {size} px)")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    workers = max(1, workers if workers is not None else min(os.cpu_count() or 1, 8))
    chunk = max(1, min(50, -(-n_stories // (workers * 4))))
    args = [(str(out), seed, size, s, min(s + chunk, n_stories)) for s in range(0, n_stories, chunk)]
    tallies: Tallies = {k: Counter() for k in ("scenes", "styles", "events", "characters")}
    began = time.perf_counter()
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else nullcontext()
    files = [(out / name).open("w") for name in ("stories.jsonl", "annotations.jsonl", "captions.jsonl")]
    with pool, files[0] as stories, files[1] as annotations, files[2] as captions:
        run = pool.map if isinstance(pool, ProcessPoolExecutor) else map
        for story_lines, annotation_lines, caption_lines, counts in run(_write_stories, *zip(*args, strict=True)):
            stories.writelines(line + "\n" for line in story_lines)
            annotations.writelines(line + "\n" for line in annotation_lines)
            captions.writelines(line + "\n" for line in caption_lines)
            for key, counter in counts.items():
                tallies[key].update(counter)
    seconds = time.perf_counter() - began
    frames = sum(tallies["scenes"].values())
    (out / "world.json").write_text(WORLD.model_dump_json(indent=2))
    report = StoryWorldReport(
        out_dir=str(out), seed=seed, size=size, stories=n_stories, frames=frames, seconds=round(seconds, 2),
        frames_per_second=round(frames / seconds, 1), **{k: dict(sorted(v.items())) for k, v in tallies.items()},
    )  # fmt: skip
    (out / "report.json").write_text(report.model_dump_json(indent=2))
    return report


def opening_title(truth: FrameTruth) -> str:
    """A book title naming who the opening shows and where: "Bram and Pip in the Snowfield"."""
    names = " and ".join(p.name for p in sorted(truth.characters, key=lambda p: SLOTS.index(p.slot)))
    place = {"snow": "Snowfield", "night_forest": "Forest at Night"}.get(truth.scene, truth.scene.title())
    return f"{names} in the {place}" if names else f"The {place}"


def write_openings(
    out_dir: str | Path, n_stories: int, seed: int = 0, *, size: int = 64, with_texts: bool = False
) -> Path:
    """A generation manifest (``openings.jsonl`` + ``openings/*.png``) of the first ``n_stories`` openings.

    Each row starts a story from its frame 0 and asks for the other 29 frames; ``with_texts`` gives the
    ground-truth captions as ``texts`` instead, so only the pictures are generated (a test of drawing alone).

    Example::

        manifest = write_openings("demo/", 8, seed=3)  # seed-story generate --manifest demo/openings.jsonl ...
    """
    from seed_story.runstore.records import ManifestRow

    out = Path(out_dir)
    (out / "openings").mkdir(parents=True, exist_ok=True)
    world, rows = StoryWorld(seed), []
    for index in range(n_stories):
        story = world.story(index)
        image = f"openings/{story.story_id}.png"
        render_frame(story.frames[0].truth, size).save(out / image, format="PNG")
        texts = [f.caption for f in story.frames[1:]] if with_texts else None
        row = ManifestRow(
            story_id=story.story_id, image=image, text=story.frames[0].caption, texts=texts,
            steps=len(story.frames) - 1, title=opening_title(story.frames[0].truth), author="storyworld",
            style=story.style,
        )  # fmt: skip
        rows.append(row.model_dump_json(exclude_none=True))
    manifest = out / "openings.jsonl"
    manifest.write_text("".join(r + "\n" for r in rows))
    return manifest
