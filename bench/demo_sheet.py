"""A contact sheet of a generated run's books: one row per story, the opening then every step, each picture
under the start of its text, so a reader can check at a glance that the named characters are drawn.

.venv/bin/seed-story demo --out /tmp/demo
.venv/bin/python bench/demo_sheet.py /tmp/demo/runs/demo [--steps 8] [--out bench/results/mini/demo_books.png]
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "run", type=Path, help="a run folder holding <story_id>/story.json (seed-story demo's runs/demo)"
    )
    parser.add_argument("--steps", type=int, default=8, help="steps shown after the opening")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mini" / "demo_books.png")
    args = parser.parse_args()
    stories = [json.loads(p.read_text()) | {"dir": p.parent} for p in sorted(args.run.glob("*/story.json"))]
    if not stories:
        raise SystemExit(f"no <story>/story.json under {args.run}")
    columns = args.steps + 1
    fig, axes = plt.subplots(len(stories), columns, figsize=(1.45 * columns, 1.95 * len(stories)), squeeze=False)
    for row, story in zip(axes, stories, strict=True):
        frames = [(story["opening_image"], story["opening_text"])]
        frames += [(s["image"], s["text"]) for s in story["steps"][: args.steps]]
        for ax, (image, text) in zip(row, frames + [None] * (columns - len(frames)), strict=True):
            ax.axis("off")
            if image is None:
                continue
            ax.imshow(Image.open(story["dir"] / image).convert("RGB"), interpolation="nearest")
            ax.set_title("\n".join(textwrap.wrap(text, 22)[:3]), fontsize=5.5, loc="left")
        row[0].text(-0.08, 0.5, story["story_id"], transform=row[0].transAxes, rotation=90, va="center", ha="right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(args.out)


if __name__ == "__main__":
    main()
