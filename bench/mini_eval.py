"""SEED-Story-Mini against its baselines on held-out story-world stories (seed_story.storyworld.judge.baselines).

Writes bench/results/mini_eval.json and a bar chart mini_eval.png.

.venv/bin/python bench/mini_eval.py --model models/seed-story-mini [--stories 8] [--steps 24] [--draw-steps 25]
    [--guidance 1.0] [--conditions upper_bound story] [--detokenizer runs/mini/stage1/final --out other.json]

`--detokenizer` swaps in another checkpoint's de-tokenizer (built from its own config), e.g. a stage-1 output
for the stage-1 target: `--detokenizer runs/mini/stage1/final --conditions upper_bound`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from seed_story.components import load_components
from seed_story.examples import MINI_GUIDANCE
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.settings import DrawSettings
from seed_story.storyworld.judge.baselines import CONDITIONS, evaluate_conditions

SHOWN = ("character_consistency", "style_consistency", "scene_accuracy", "cast_accuracy", "text_image_agreement")


def _value(scores: dict, metric: str) -> float:
    value = scores[metric]
    return value["value"] if isinstance(value, dict) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/seed-story-mini"))
    parser.add_argument("--stories", type=int, default=8)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--draw-steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=MINI_GUIDANCE, help="the mini de-tokenizer saturates")
    parser.add_argument("--world-seed", type=int, default=1, help="a seed the model was not trained on")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--detokenizer", type=Path, help="draw with this checkpoint's de-tokenizer instead")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mini_eval.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    draw = DrawSettings(num_inference_steps=args.draw_steps, guidance_scale=args.guidance)
    parts = load_components(args.model)
    if args.detokenizer is not None:
        parts.swap_detokenizer(args.detokenizer)
    pipe = StoryPipeline(parts, draw_settings=draw)
    results = evaluate_conditions(
        pipe, world_seed=args.world_seed, stories=args.stories, steps=args.steps, conditions=args.conditions
    )
    report = {
        "model": str(args.model), "detokenizer": str(args.detokenizer or args.model),
        "stories": args.stories, "steps": args.steps, "draw_steps": args.draw_steps,
        "guidance": args.guidance,
        "world_seed": args.world_seed, "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
        "results": [r.model_dump(mode="json") for r in results],
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(args.conditions)
    for i, r in enumerate(report["results"]):
        values = [_value(r["scores"], m) or 0.0 for m in SHOWN]
        ax.bar([x + i * width for x in range(len(SHOWN))], values, width, label=r["condition"])
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(SHOWN))], [m.replace("_", "\n") for m in SHOWN])
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{args.model.name}: {args.stories} held-out stories x {args.steps} steps")
    ax.legend(fontsize=8, ncol=len(args.conditions))
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    for r in report["results"]:
        shown = ", ".join(f"{m} {_value(r['scores'], m) or 0:.2f}" for m in SHOWN)
        print(f"{r['condition']:<13} recon {r['reconstruction'] or 0:.2f}  {shown}  ({r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
