"""Story-writing speed: this engine vs the released algorithm, per-step cost, and batching.

Runs on the toy-trained ``tiny`` model (``seed_story.training.toy``), in one process, so ratios are side by side:

1. a 25-step story with the reference algorithm (re-encode the window every step, batch 1, HF ``generate``,
   LoRA unmerged as released) and with this engine;
2. per-step wall time against step index up to 50 for both;
3. stories per minute at batch 1, 4 and 8.

Only the MLLM half is timed: drawing costs the same per picture in both (the engine additionally batches
it across stories, measured separately as pictures per second at batch 1 and 8).

    python bench/generation.py            # writes bench/results/generation.{json,png}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seed_story.components import Components, load_components  # noqa: E402
from seed_story.generation.pipeline import StoryPipeline  # noqa: E402
from seed_story.generation.records import StoryRequest  # noqa: E402
from seed_story.generation.settings import DrawSettings  # noqa: E402
from seed_story.generation.writer import StoryWriter  # noqa: E402
from seed_story.storyworld.toy import toy_openings  # noqa: E402
from seed_story.tokenizer import ImageTokenIds  # noqa: E402
from seed_story.training.toy import toy_checkpoint  # noqa: E402
from tests.reference_generation import reference_write  # noqa: E402


def openings(n: int) -> list[tuple[str, torch.Tensor]]:
    return [(caption, feats[0]) for caption, feats in toy_openings(n, seed=1000)]


def time_reference(parts: Components, opening: tuple[str, torch.Tensor], steps: int) -> list[float]:
    ids = ImageTokenIds.from_tokenizer(parts.tokenizer, parts.config.mllm.num_image_tokens)
    timings: list[float] = []
    reference_write(parts.mllm, parts.tokenizer, ids, opening[1][None], opening[0], steps, timings=timings)
    return timings


def time_engine(writer: StoryWriter, batch: list[tuple[str, torch.Tensor]], steps: int) -> tuple[float, list]:
    start = time.perf_counter()
    stories = writer.write([StoryRequest(text, feats, num_steps=steps) for text, feats in batch])
    return time.perf_counter() - start, stories


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, key in (
        ("reference (re-encode)", "reference_step_seconds"),
        ("engine (KV cache + sink)", "engine_step_seconds"),
    ):
        values = result["raw"][key]
        left.plot(range(1, len(values) + 1), [v * 1000 for v in values], label=name)
    left.set_xlabel("story step")
    left.set_ylabel("ms per step")
    left.set_title("Per-step cost vs story length (batch 1)")
    left.axvline(8, color="grey", lw=0.5, ls="--")
    left.legend()
    sizes = [int(b) for b in result["raw"]["stories_per_minute"]]
    right.bar([str(b) for b in sizes], [result["raw"]["stories_per_minute"][str(b)] for b in sizes])
    right.set_xlabel("stories per batch")
    right.set_ylabel(f"{result['raw']['throughput_steps']}-step stories / minute")
    right.set_title("Throughput vs batch size (MLLM half)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for every measurement")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--long-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="openings timed per configuration")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = toy_checkpoint(args.out / "toy-model")  # trained once

    reference_parts = load_components(ckpt)  # LoRA stays unmerged, as in the released scripts
    engine_parts = load_components(ckpt)
    writer = StoryWriter(engine_parts.mllm, engine_parts.tokenizer)
    starts = openings(max(8, args.repeats))
    time_engine(writer, starts[:1], 2)  # warm-up

    # 1 + 2: one story at a time, reference vs engine, per-step timings up to long_steps.
    ref_total, eng_total, ref_steps, eng_steps = [], [], [], []
    for opening in starts[: args.repeats]:
        ref = time_reference(reference_parts, opening, args.long_steps)
        ref_steps.append(ref)
        ref_total.append(sum(ref[: args.steps]))
        seconds, [story] = time_engine(writer, [opening], args.long_steps)
        eng_steps.append([s.seconds for s in story.steps])
        eng_total.append(sum(eng_steps[-1][: args.steps]))
    mean_steps = lambda rows: [sum(col) / len(col) for col in zip(*rows, strict=False)]  # noqa: E731
    ref_curve, eng_curve = mean_steps(ref_steps), mean_steps(eng_steps)

    # 3: throughput at several batch sizes (same openings, different stories per row).
    per_minute = {}
    for b in (1, 4, 8):
        seconds, _ = time_engine(writer, starts[:b], args.steps)
        per_minute[str(b)] = b * 60 / seconds

    # Drawing: pictures per second, one at a time vs one batch of 8 (tiny de-tokenizer, 10 Euler steps).
    pipe = StoryPipeline(engine_parts, draw_settings=DrawSettings(num_inference_steps=10, batch_size=8))
    feats = torch.stack([f for _, f in starts[:8]])
    pipe.draw(feats[:1])
    start = time.perf_counter()
    for i in range(8):
        pipe.draw(feats[i : i + 1])
    draw_single = 8 / (time.perf_counter() - start)
    start = time.perf_counter()
    pipe.draw(feats)
    draw_batch = 8 / (time.perf_counter() - start)

    window = 8
    result = {
        "speedup_vs_reference_25_steps": sum(ref_total) / sum(eng_total),
        "step25_over_step8_time": eng_curve[24] / eng_curve[7],
        "batch8_over_batch1_throughput": per_minute["8"] / per_minute["1"],
        "draw_batch8_over_batch1_throughput": draw_batch / draw_single,
        "raw": {
            "reference_seconds_25_steps": ref_total,
            "engine_seconds_25_steps": eng_total,
            "reference_step_seconds": ref_curve,
            "engine_step_seconds": eng_curve,
            "reference_step25_over_step8_time": ref_curve[24] / ref_curve[7],
            "stories_per_minute": per_minute,
            "throughput_steps": args.steps,
            "draw_images_per_second": {"1": draw_single, "8": draw_batch},
            "window_images": window,
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "model": "tiny preset trained by seed_story.training.toy.train_toy_model (16 image tokens, byte-level text)",
    }
    (args.out / "generation.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "generation.png")
    for key in (
        "speedup_vs_reference_25_steps",
        "step25_over_step8_time",
        "batch8_over_batch1_throughput",
        "draw_batch8_over_batch1_throughput",
    ):
        print(f"{key}: {result[key]:.2f}")
    print(f"stories/minute: {', '.join(f'B={b}: {v:.1f}' for b, v in per_minute.items())}")
    print(f"wrote {args.out / 'generation.json'} and generation.png")


if __name__ == "__main__":
    main()
