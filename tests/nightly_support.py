"""Manifests and settings for the nightly-flow tests.

The toy model is trained on toy scene features, not on ViT features of pictures, so with arbitrary opening
pictures it sometimes ends a story before drawing anything. Illustrate rows always draw, and the two opening
pictures below make it write; the tests use only those, so every good row finishes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from seed_story.batch.pipelines import ModelSpec
from seed_story.generation.settings import DrawSettings
from seed_story.storyworld.toy import sample_story
from tasks.settings import NightlySettings, RenderOptions

# Opening texts (toy story seeds) the toy model writes on from both pictures, checked for 4 steps.
_WRITES = (1, 2, 6, 7, 8)


def opening_picture(variant: int) -> Image.Image:
    image = Image.new("RGB", (64, 64), (50 + 30 * variant, 120, 200 - 25 * variant))
    ImageDraw.Draw(image).ellipse([16, 16, 48, 48], fill=(240, 200 - 20 * variant, 40 * variant))
    return image


def good_rows(folder: Path, count: int = 5, steps: int = 3) -> list[dict]:
    """``count`` rows (alternately illustrate and write) with their opening pictures saved in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        name = f"opening_{i % 2}.png"
        opening_picture(i % 2).save(folder / name)
        caption_seed = i if i % 2 == 0 else _WRITES[(i // 2) % len(_WRITES)]
        captions = [s.caption for s in sample_story(random.Random(caption_seed), steps + 1)]
        row = {"story_id": f"story-{i}", "image": name, "text": captions[0], "seed": i, "title": f"Book {i}"}
        if i % 2 == 0:
            row["texts"] = captions[1:]
        else:
            row["steps"] = steps
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def nightly_settings(manifest: Path | str, store: str, checkpoint: Path, **extra: object) -> NightlySettings:
    spec = ModelSpec(path=str(checkpoint), draw=DrawSettings(num_inference_steps=2, batch_size=4))
    return NightlySettings(
        manifest=str(manifest), store=store, model=spec, run_id="night-1", render=RenderOptions(formats=["html"]),
        **extra,
    )  # fmt: skip
