"""How well the stage-2 MLLM regresses a picture's ViT features, teacher-forced on held-out story-world stories.

For each held-out story a prefix of k pictures (k drawn in 2..max-frames, as in stage 2) is fed with the true
captions and the true pictures as context; the MLLM regresses the last picture's features. Reports the cosine to
the true features (and that of the mean feature, the no-information baseline), top-1 retrieval of the true
picture among the targets, and the judge's reading of the regressed features drawn by the de-tokenizer: the
fraction of frames with the true scene, the true character in every slot, and both. The same frames drawn from
the true features give the de-tokenizer's share. "described" is caption -> picture with no story: as many
held-out frames, each described by ``describe_frame`` (the caption pre-training corpus's wording), judged alike.

Slot probes find where "who stands where" gets lost: linear probes fitted on training-world frames read each
slot's character (or nobody) off the target's ViT features, its input-resampler embeddings (what the Llama
sees of a context picture), the Llama's hidden states at the target's image tokens, and the regressed features.

.venv/bin/python bench/regression_probe.py --model models/seed-story-mini [--detokenizer runs/mini/stage1/final]
    [--weights runs/mini/stage2/checkpoints/checkpoint-N] [--stories 48] [--max-frames 8] [--probe-stories 640]
    [--out bench/results/regression_probe.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase

from seed_story.cli.generate import MINI_GUIDANCE
from seed_story.components import Components, load_components
from seed_story.data.sequence import SequenceSettings, build_caption_sample, build_sequence, collate
from seed_story.data.storyworld import StoryWorld
from seed_story.data.storyworld_draw import render_frame
from seed_story.data.storyworld_spec import SLOTS, WORLD
from seed_story.data.storyworld_text import describe_frame
from seed_story.eval.baselines import reconstruction_accuracy
from seed_story.eval.detect import detect_frame
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.settings import DrawSettings
from seed_story.tokenizer import ImageTokenIds


def judged(truth: list[Image.Image], drawn: list[Image.Image]) -> dict[str, float]:
    """Fractions of drawn frames with the true scene, the true character in every slot, and both."""
    true_found, drawn_found = [detect_frame(t) for t in truth], [detect_frame(d) for d in drawn]
    pairs = list(zip(true_found, drawn_found, strict=True))
    return {
        "scene": sum(t.scene == d.scene for t, d in pairs) / len(pairs),
        "slots": sum(t.slots == d.slots for t, d in pairs) / len(pairs),
        "reconstruction": reconstruction_accuracy(true_found, drawn_found),
    }


class TeacherForced(NamedTuple):
    truth: list[Image.Image]  # the target pictures
    slots: torch.Tensor  # (N, 3) index into CAST of who stands left, centre, right
    target: torch.Tensor  # (N, T, D) their ViT features
    context: torch.Tensor  # (N, n, d) the input resampler's embeddings of the same pictures (as context)
    hidden: torch.Tensor  # (N, n, d) the Llama's last hidden states at the target's image-token positions
    regressed: torch.Tensor  # (N, T, D) the output resampler's regression


CAST = (None, *WORLD.names)


def _sequences(parts: Components) -> tuple[PreTrainedTokenizerBase, ImageTokenIds, SequenceSettings]:
    """The tokenizer, its image-token ids and sequence settings for ``parts`` (no length limit)."""
    n_tokens = parts.config.mllm.num_image_tokens
    ids = ImageTokenIds.from_tokenizer(parts.tokenizer, n_tokens)
    size = parts.config.vision.image_size
    return parts.tokenizer, ids, SequenceSettings(max_length=4096, num_image_tokens=n_tokens, image_size=size)


@torch.no_grad()
def teacher_forced(parts: Components, world_seed: int, stories: int, max_frames: int, chunk: int = 32) -> TeacherForced:
    """Prefixes of 2..max_frames true frames of ``stories`` stories; the last picture of each is the target."""
    tok, ids, settings = _sequences(parts)
    n_tokens = settings.num_image_tokens
    world, rng = StoryWorld(world_seed, frames=max_frames), random.Random(world_seed)
    mllm = parts.mllm.eval()
    parts_out: list[tuple[torch.Tensor, ...]] = []
    truth, slots = [], []
    for first in range(0, stories, chunk):
        samples = []
        for i in range(first, min(first + chunk, stories)):
            frames = world.story(i).frames
            pictures = [render_frame(f.truth, parts.config.detokenizer.image_size) for f in frames]
            k = rng.randint(2, max_frames)
            samples.append(build_sequence(tok, ids, [f.caption for f in frames], pictures, None, settings, length=k))
            truth.append(pictures[k - 1])
            slots.append([CAST.index(frames[k - 1].truth.in_slot(s)) for s in SLOTS])
        batch = collate(samples, tok.pad_token_id)
        embeds = parts.visual_tokenizer(batch.images).float()
        inputs = mllm.embed_inputs(batch.input_ids, embeds, batch.ids_cmp_mask, batch.embeds_cmp_mask)
        hidden = mllm.language_model(inputs_embeds=inputs, attention_mask=batch.attention_mask).last_hidden_state
        hidden = hidden[batch.ids_gen_mask].view(len(samples), n_tokens, -1)
        target = embeds[batch.embeds_gen_mask]
        parts_out.append((target, mllm.embed_images(target), hidden, mllm.regress_image_features(hidden)))
    target, context, hidden, regressed = (torch.cat(p) for p in zip(*parts_out, strict=True))
    return TeacherForced(truth, torch.tensor(slots), target, context, hidden, regressed)


@torch.no_grad()
def described(parts: Components, world_seed: int, count: int) -> tuple[list[Image.Image], torch.Tensor]:
    """Caption -> picture with no story: ``count`` held-out frames described (``describe_frame``), regressed."""
    tok, ids, settings = _sequences(parts)
    n_tokens = settings.num_image_tokens
    world, rng = StoryWorld(world_seed), random.Random(f"described:{world_seed}")
    truths = [world.story(i).frames[rng.randrange(world.frames)].truth for i in range(count)]
    pictures = [render_frame(t, parts.config.detokenizer.image_size) for t in truths]
    samples = [
        build_caption_sample(tok, ids, describe_frame(rng, t), p, True, settings)
        for t, p in zip(truths, pictures, strict=True)
    ]
    batch = collate(samples, tok.pad_token_id)
    mllm = parts.mllm.eval()
    inputs = mllm.embed_inputs(batch.input_ids)
    hidden = mllm.language_model(inputs_embeds=inputs, attention_mask=batch.attention_mask).last_hidden_state
    return pictures, mllm.regress_image_features(hidden[batch.ids_gen_mask].view(count, n_tokens, -1))


def slot_probe(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor) -> list[float]:
    """Held-out accuracy of a linear (softmax) probe per slot, on standardised flattened features."""
    train, test = train.flatten(1), test.flatten(1)
    mu, sd = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mu) / sd, (test - mu) / sd
    accuracy = []
    for slot in range(len(SLOTS)):
        weight = torch.zeros(train.shape[1], len(CAST), requires_grad=True)
        bias = torch.zeros(len(CAST), requires_grad=True)
        opt = torch.optim.Adam([weight, bias], lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            loss = F.cross_entropy(train @ weight + bias, y_train[:, slot]) + 1e-3 * weight.pow(2).sum()
            loss.backward()
            opt.step()
        accuracy.append(((test @ weight + bias).argmax(1) == y_test[:, slot]).float().mean().item())
    return accuracy


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
    held = teacher_forced(parts, args.world_seed, args.stories, args.max_frames)
    described_truth, described_regressed = described(parts, args.world_seed, args.stories)
    regressed, target = held.regressed, held.target
    mean = target.mean(0, keepdim=True).expand_as(target)
    similarity = F.normalize(regressed.flatten(1), dim=-1) @ F.normalize(target.flatten(1), dim=-1).T
    seen = teacher_forced(parts, 0, args.probe_stories, args.max_frames) if args.probe_stories else None
    probes = {}
    if seen is not None:
        for name in ("target", "context", "hidden", "regressed"):
            a, b = getattr(seen, name), getattr(held, name)
            if name != "context":  # tokens as the de-tokenizer reads them: L2-normalised
                a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
            probes[name] = slot_probe(a, seen.slots, b, held.slots)
        probes["majority"] = [
            (held.slots[:, s] == seen.slots[:, s].mode().values).float().mean().item() for s in range(len(SLOTS))
        ]
    report = {
        "model": str(args.model), "weights": str(args.weights), "detokenizer": str(args.detokenizer or args.model),
        "stories": args.stories, "max_frames": args.max_frames, "world_seed": args.world_seed,
        "draw_steps": args.draw_steps, "guidance": args.guidance, "probe_stories": args.probe_stories,
        "cosine": F.cosine_similarity(regressed, target, dim=-1).mean().item(),
        "cosine_of_mean_feature": F.cosine_similarity(mean, target, dim=-1).mean().item(),
        "retrieval_top1": (similarity.argmax(1) == torch.arange(len(target))).float().mean().item(),
        "regressed": judged(held.truth, pipe.draw(regressed)),
        "true_features": judged(held.truth, pipe.draw(target)),
        "described": judged(described_truth, pipe.draw(described_regressed)),
        "slot_probe_accuracy": probes,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("model", "weights", "detokenizer")}, indent=1))


if __name__ == "__main__":
    main()
