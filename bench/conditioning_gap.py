"""Does the de-tokenizer use what its features say about the characters? (SEED-Story-Mini diagnostic.)

For held-out story-world frames, the denoising loss with each frame's own ViT features is compared with the
loss given the features of another frame of the same scene and style but a different cast or layout, at
fixed noise and timesteps. Scene and style are then equally right in both, so the gap is what the characters'
identity and position in the features buy. A de-tokenizer that ignores them has a gap of 0%; one that draws
them from the features has a clearly positive one. Read it alongside `bench/mini_eval.py`'s `reconstruction`.

.venv/bin/python bench/conditioning_gap.py --model runs/mini/stage1/final
    [--weights runs/mini/stage1/checkpoints/checkpoint-1000]   # a trainer checkpoint's de-tokenizer instead
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from seed_story.components import load_components
from seed_story.models.schedulers import build_noise_scheduler
from seed_story.models.visual_tokenizer import image_transform_batch
from seed_story.storyworld.draw import render_frame
from seed_story.storyworld.judge.probes import swapped_cast_partners
from seed_story.storyworld.world import StoryWorld
from seed_story.training.pretrain import signed_pixels
from seed_story.training.sources import sd_time_ids
from seed_story.training.stages import encode_latents

TIMESTEPS = (100, 400, 700, 900)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="a native checkpoint folder")
    parser.add_argument("--weights", type=Path, help="a trainer checkpoint whose de-tokenizer replaces the model's")
    parser.add_argument("--stories", type=int, default=16)
    parser.add_argument("--world-seed", type=int, default=1)
    args = parser.parse_args()
    parts = load_components(args.model)
    if args.weights is not None:
        state = load_file(args.weights / "model.safetensors")
        detok = {k.removeprefix("detokenizer."): v for k, v in state.items() if k.startswith("detokenizer.")}
        parts.detokenizer.load_state_dict(detok, strict=True)
    world = StoryWorld(args.world_seed)
    frames = [f.truth for i in range(args.stories) for f in world.story(i).frames[::5]]
    partner = swapped_cast_partners(frames)
    size = parts.config.detokenizer.image_size
    pictures = [render_frame(f, size) for f in frames]
    scheduler = build_noise_scheduler(parts.config.detokenizer.scheduler)
    gaps = {}
    with torch.no_grad():
        features = parts.visual_tokenizer(image_transform_batch(pictures, parts.config.vision.image_size))
        latents = encode_latents(parts.vae, signed_pixels(pictures, size))
        time_ids = sd_time_ids(size, len(frames))
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
        for t in TIMESTEPS:
            steps = torch.full((len(frames),), t)
            own = parts.detokenizer.denoising_loss(latents, features, time_ids, scheduler, noise=noise, timesteps=steps)
            swapped = parts.detokenizer.denoising_loss(
                latents, features[partner], time_ids, scheduler, noise=noise, timesteps=steps
            )
            gaps[t] = {"own": float(own), "swapped": float(swapped), "gap_percent": float(100 * (swapped - own) / own)}
            print(
                f"t={t:4d}  loss own features {own:.4f}  swapped cast {swapped:.4f}  gap {gaps[t]['gap_percent']:+.1f}%"
            )
    print(json.dumps({"model": str(args.model), "weights": str(args.weights), "frames": len(frames), "gaps": gaps}))


if __name__ == "__main__":
    main()
