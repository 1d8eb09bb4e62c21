"""How well the stage-2 MLLM regresses a picture's ViT features, teacher-forced on held-out story-world stories.

For each held-out story a prefix of k pictures (k drawn in 2..max-frames, as in stage 2) is fed with the true
captions and the true pictures as context; the MLLM regresses the last picture's features. Reports the cosine to
the true features (and that of the mean feature, the no-information baseline), top-1 retrieval of the true
picture among the batch's targets, and the judge's reading of the regressed features drawn by the de-tokenizer:
the fraction of frames with the true scene, the true character in every slot, and both. The last number is what
stage 2 can hand stage 3 at best; the same frames drawn from the true features give the de-tokenizer's share.

.venv/bin/python bench/regression_probe.py --model models/seed-story-mini [--detokenizer runs/mini/stage1/final]
    [--weights runs/mini/stage2/checkpoints/checkpoint-N] [--stories 48] [--max-frames 8]
    [--out bench/results/regression_probe.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from seed_story.components import load_components
from seed_story.data.sequence import SequenceSettings, build_sequence, collate
from seed_story.data.storyworld import StoryWorld
from seed_story.data.storyworld_draw import render_frame
from seed_story.eval.detect import detect_frame
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.settings import DrawSettings
from seed_story.tokenizer import ImageTokenIds
from seed_story.training.run import load_detokenizer


def judged(truth: list[Image.Image], drawn: list[Image.Image]) -> dict[str, float]:
    pairs = [(detect_frame(t), detect_frame(d)) for t, d in zip(truth, drawn, strict=True)]
    return {
        "scene": sum(t.scene == d.scene for t, d in pairs) / len(pairs),
        "slots": sum(t.slots == d.slots for t, d in pairs) / len(pairs),
        "reconstruction": sum(t.scene == d.scene and t.slots == d.slots for t, d in pairs) / len(pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/seed-story-mini"))
    parser.add_argument("--weights", type=Path, help="a stage-2 trainer checkpoint whose MLLM replaces the model's")
    parser.add_argument("--detokenizer", type=Path, help="draw with this checkpoint's de-tokenizer instead")
    parser.add_argument("--stories", type=int, default=48)
    parser.add_argument("--max-frames", type=int, default=8)
    parser.add_argument("--world-seed", type=int, default=1, help="a seed the model was not trained on")
    parser.add_argument("--draw-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "regression_probe.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    parts = load_components(args.model)
    if args.weights is not None:
        parts.mllm.load_state_dict(load_file(args.weights / "model.safetensors"), strict=True)
    if args.detokenizer is not None:
        load_detokenizer(parts, str(args.detokenizer))
    pipe = StoryPipeline(parts, draw_settings=DrawSettings(num_inference_steps=args.draw_steps,
                                                           guidance_scale=args.guidance))  # fmt: skip
    tok, n_tokens = parts.tokenizer, parts.config.mllm.num_image_tokens
    settings = SequenceSettings(max_length=4096, num_image_tokens=n_tokens, image_size=parts.config.vision.image_size)
    world, rng = StoryWorld(args.world_seed, frames=args.max_frames), random.Random(0)
    samples, truth = [], []
    for i in range(args.stories):
        story = world.story(i)
        pictures = [render_frame(f.truth, parts.config.detokenizer.image_size) for f in story.frames]
        k = rng.randint(2, args.max_frames)
        captions = [f.caption for f in story.frames]
        samples.append(build_sequence(tok, ImageTokenIds.from_tokenizer(tok, n_tokens), captions, pictures, None,
                                      settings, length=k))  # fmt: skip
        truth.append(pictures[k - 1])
    batch = collate(samples, tok.pad_token_id)
    parts.mllm.eval()
    with torch.no_grad():
        embeds = parts.visual_tokenizer(batch.images).float()
        out = parts.mllm(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels,
            image_embeds=embeds, ids_cmp_mask=batch.ids_cmp_mask, ids_gen_mask=batch.ids_gen_mask,
            embeds_cmp_mask=batch.embeds_cmp_mask, embeds_gen_mask=batch.embeds_gen_mask,
            return_recon_image_embeds=True,
        )  # fmt: skip
    regressed, target = out.recon_image_embeds, embeds[batch.embeds_gen_mask]
    mean = target.mean(0, keepdim=True).expand_as(target)
    similarity = F.normalize(regressed.flatten(1), dim=-1) @ F.normalize(target.flatten(1), dim=-1).T
    report = {
        "model": str(args.model), "weights": str(args.weights), "detokenizer": str(args.detokenizer or args.model),
        "stories": args.stories,
        "max_frames": args.max_frames, "world_seed": args.world_seed, "draw_steps": args.draw_steps,
        "guidance": args.guidance,
        "cosine": F.cosine_similarity(regressed, target, dim=-1).mean().item(),
        "cosine_of_mean_feature": F.cosine_similarity(mean, target, dim=-1).mean().item(),
        "retrieval_top1": (similarity.argmax(1) == torch.arange(len(target))).float().mean().item(),
        "regressed": judged(truth, pipe.draw(regressed)),
        "true_features": judged(truth, pipe.draw(target)),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("model", "weights", "detokenizer")}, indent=1))


if __name__ == "__main__":
    main()
