"""A synthetic run in the stored layout, for tests, the benchmark and trying the renderer without a model."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from seed_story.runstore.keys import STORY_JSON
from seed_story.runstore.records import StoredStep, StoryRecord


def _picture(path: Path, seed: int, size: int) -> None:
    # A deterministic gradient with a disc, so each page differs and PNG bytes are stable.
    im = Image.new("RGB", (size, size))
    im.putdata([((x * 255 // size + seed * 37) % 256, (y * 255 // size) % 256, (seed * 53) % 256)
                for y in range(size) for x in range(size)])  # fmt: skip
    ImageDraw.Draw(im).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=(250, 240, 200))
    im.save(path, format="PNG")


def write_story(story_dir: Path, record: StoryRecord, image_px: int = 64) -> StoryRecord:
    """Write ``record`` as ``story.json`` plus a generated picture for every image it names."""
    story_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(record.image_files()):
        _picture(story_dir / name, i, image_px)
    (story_dir / STORY_JSON).write_text(record.model_dump_json(indent=2), encoding="utf-8")
    return record


def demo_record(story_id: str = "demo", steps: int = 3, title: str = "George and the Kite") -> StoryRecord:
    """A complete story with ``steps`` steps of plain text.

    Example::

        >>> len(demo_record(steps=5).steps)
        5
    """
    return StoryRecord(
        story_id=story_id,
        title=title,
        author="Seed Story",
        style="watercolour",
        opening_text="George found a red kite in the park.",
        opening_image="opening.png",
        steps=[
            StoredStep(index=i, text=f"Step {i}: George ran up the hill and the kite rose higher.",
                      image=f"step_{i:02d}.png")
            for i in range(1, steps + 1)
        ],
    )  # fmt: skip
