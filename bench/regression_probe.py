"""How well the stage-2 MLLM regresses a picture's ViT features, teacher-forced on held-out story-world stories,
and where "who stands where" gets lost (slot probes). The measurements are ``regression_report`` of
``seed_story.storyworld.judge.probes`` (its module docstring defines each number); this script loads the model and
writes the JSON.

.venv/bin/python bench/regression_probe.py --model models/seed-story-mini [--detokenizer runs/mini/stage1/final]
    [--weights runs/mini/stage2/checkpoints/checkpoint-N] [--stories 48] [--max-frames 8] [--probe-stories 640]
    [--out bench/results/regression_probe.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from seed_story.components import load_components
from seed_story.examples import MINI_GUIDANCE
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.settings import DrawSettings
from seed_story.storyworld.judge.probes import regression_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/seed-story-mini"))
    parser.add_argument(
        "--weights",
        type=Path,
        help="a stage-2 trainer checkpoint (or an mllm .safetensors file) whose MLLM replaces the model's",
    )
    parser.add_argument("--detokenizer", type=Path, help="draw with this checkpoint's de-tokenizer instead")
    parser.add_argument("--stories", type=int, default=48)
    parser.add_argument("--max-frames", type=int, default=8)
    parser.add_argument("--world-seed", type=int, default=1, help="a seed the model was not trained on")
    parser.add_argument("--draw-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=MINI_GUIDANCE)
    parser.add_argument("--probe-stories", type=int, default=640, help="training-world stories the slot probes fit")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "regression_probe.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    parts = load_components(args.model)
    if args.weights is not None:
        file = args.weights / "model.safetensors" if args.weights.is_dir() else args.weights
        parts.mllm.load_state_dict(load_file(file), strict=True)
    if args.detokenizer is not None:
        parts.swap_detokenizer(args.detokenizer)
    pipe = StoryPipeline(parts, draw_settings=DrawSettings(num_inference_steps=args.draw_steps,
                                                           guidance_scale=args.guidance))  # fmt: skip
    report = {
        "model": str(args.model), "weights": str(args.weights), "detokenizer": str(args.detokenizer or args.model),
        "stories": args.stories, "max_frames": args.max_frames, "world_seed": args.world_seed,
        "draw_steps": args.draw_steps, "guidance": args.guidance, "probe_stories": args.probe_stories,
        **regression_report(parts, pipe, world_seed=args.world_seed, stories=args.stories,
                            max_frames=args.max_frames, probe_stories=args.probe_stories),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("model", "weights", "detokenizer")}, indent=1))


if __name__ == "__main__":
    main()
