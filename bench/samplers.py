"""Fewer denoising steps at equal quality: each sampler x step count on SEED-Story-Mini, scored by the story-world
judge against its draw time. Writes bench/results/samplers.json and samplers.png.

Every setting illustrates the true captions of the same held-out story-world stories (world seed 1) from their
true openings (the judge's ``story`` condition), with the same seeds; the MLLM's features are written once and
drawn by every setting, so only drawing differs. The chosen setting is the fastest whose reconstruction is
within ``--margin`` of the best.

.venv/bin/python bench/samplers.py [--stories 6] [--steps 4] [--samplers euler dpm++2m unipc]
    [--draw-steps 4 8 12 20 25] [--margin 0.02]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from seed_story.components import load_components
from seed_story.examples import MINI_GUIDANCE, bundled_model
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.records import StoryRequest
from seed_story.generation.settings import DrawSettings
from seed_story.storyworld.judge.baselines import picture_agreement
from seed_story.storyworld.judge.metrics import Scores, judge_story
from seed_story.storyworld.world import StoryWorld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=bundled_model())
    parser.add_argument("--stories", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--samplers", nargs="+", default=["euler", "dpm++2m", "unipc"])
    parser.add_argument("--draw-steps", type=int, nargs="+", default=[4, 8, 12, 20, 25])
    parser.add_argument("--margin", type=float, default=0.02, help="allowed drop in reconstruction from the best")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "samplers.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = StoryPipeline(load_components(args.model))
    world = StoryWorld(1, frames=args.steps + 1)
    plots = [world.story(i) for i in range(args.stories)]
    truth = [p.pictures(pipe.config.detokenizer.image_size) for p in plots]
    captions = [[f.caption for f in p.frames] for p in plots]
    openings = pipe.encode_images([t[0] for t in truth])
    requests = [
        StoryRequest(c[0], f, num_steps=args.steps, texts=c[1:]) for c, f in zip(captions, openings, strict=True)
    ]
    written = pipe.write_story(requests)
    features = [s.features for story in written for s in story.steps]
    true_pictures = [im for story in truth for im in story[1:]]

    rows = []
    for sampler in args.samplers:
        for steps in args.draw_steps:
            pipe.draw_settings = DrawSettings(sampler=sampler, num_inference_steps=steps, guidance_scale=MINI_GUIDANCE,
                                              batch_size=8)  # fmt: skip
            start = time.perf_counter()
            drawn = pipe.draw(features)
            seconds = (time.perf_counter() - start) / len(drawn)
            agree = picture_agreement(true_pictures, drawn)
            fidelity = sum(pipe.draw_fidelity(features, drawn)) / len(drawn)
            frames = iter(drawn)
            scores = sum((judge_story(zip(c, [t[0], *(next(frames) for _ in c[1:])], strict=True))
                          for c, t in zip(captions, truth, strict=True)), Scores())  # fmt: skip
            rows.append({"sampler": sampler, "steps": steps, "seconds_per_picture": round(seconds, 4),
                         "reconstruction": round(agree.reconstruction, 4), "scene": round(agree.scene, 4),
                         "feature_fidelity": round(fidelity, 4),
                         "character_consistency": round(scores.character_consistency.value or 0.0, 4)})  # fmt: skip
            print(rows[-1])
    best = max(r["reconstruction"] for r in rows)
    chosen = min((r for r in rows if r["reconstruction"] >= best - args.margin), key=lambda r: r["seconds_per_picture"])
    reference = next((r for r in rows if r["sampler"] == "euler" and r["steps"] == 25), None)
    report = {"model": str(args.model), "stories": args.stories, "steps": args.steps, "pictures": len(features),
              "margin": args.margin, "best_reconstruction": best, "chosen": chosen, "euler_25": reference,
              "speedup_vs_euler_25": round(reference["seconds_per_picture"] / chosen["seconds_per_picture"], 2)
              if reference else None, "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for sampler in args.samplers:
        mine = [r for r in rows if r["sampler"] == sampler]
        ax.plot([r["seconds_per_picture"] for r in mine], [r["reconstruction"] for r in mine], "o-", label=sampler)
        for r in mine:
            ax.annotate(str(r["steps"]), (r["seconds_per_picture"], r["reconstruction"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.axhline(best - args.margin, color="grey", lw=0.8, ls="--", label=f"best - {args.margin}")
    ax.set_xlabel("seconds per picture (CPU)")
    ax.set_ylabel("reconstruction (judge)")
    ax.set_title(f"SEED-Story-Mini: sampler x denoising steps ({len(features)} pictures)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    print(json.dumps({k: report[k] for k in ("best_reconstruction", "chosen", "speedup_vs_euler_25")}))


if __name__ == "__main__":
    main()
