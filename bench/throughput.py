"""Stories per hour, end to end (write + draw + book): this engine against the released algorithm, side by side.

Both sides write the same held-out story-world stories from their true openings (world seed 1) with the same
model, greedy, and end in the same books:

- **engine**: the nightly pipeline's library stages on a local store, as a worker runs them (openings encoded in
  one batch, every story of a batch written together with the KV cache and the attention sink, each step
  committed, pictures drawn in batches across stories with the model's drawing settings, sequences finished,
  HTML + PDF books rendered); drawing alongside writing where ``ModelSpec`` turns it on (a GPU).
- **reference**: the released algorithm (``tests/reference_generation.py``: one story at a time, the window
  re-encoded every step through Hugging Face ``generate``, LoRA unmerged), each picture drawn alone right after
  its step with the release's sampler (Euler, 50 steps), and the same book per story (the renderer's measured
  seconds per book, added to each story).

``speedup`` (top level) is engine over reference at the sizes below; ``speedup_same_drawing`` gives the reference
the engine's drawing settings too (what the writing engine and batching win alone). Growth: engine stories/hour
against batch size (25 steps) and against story length (batch 4), reference against story length. Model loads are
timed apart (once per worker either way). Writes bench/results/throughput.json and throughput.png.

.venv/bin/python bench/throughput.py [--steps 25] [--batches 1 2 4 8] [--lengths 5 10 25] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seed_story.batch.drawing import draw_chunks, draw_items  # noqa: E402
from seed_story.batch.finishing import finish_stories  # noqa: E402
from seed_story.batch.openings import encode_openings  # noqa: E402
from seed_story.batch.pipelines import LoadedModel, ModelSpec, model_version  # noqa: E402
from seed_story.batch.planning import plan_run  # noqa: E402
from seed_story.batch.sources import load_manifest  # noqa: E402
from seed_story.batch.streaming import write_and_draw  # noqa: E402
from seed_story.components import load_components  # noqa: E402
from seed_story.examples import bundled_model, demo_draw, demo_guidance  # noqa: E402
from seed_story.generation.drawer import ImageDrawer  # noqa: E402
from seed_story.generation.settings import DRAW_PRESETS, DrawSettings  # noqa: E402
from seed_story.models.visual_tokenizer import image_transform_batch  # noqa: E402
from seed_story.render.pdf import PrintSettings  # noqa: E402
from seed_story.render.run import render_run  # noqa: E402
from seed_story.storage import open_store  # noqa: E402
from seed_story.storyworld.world import StoryWorld  # noqa: E402
from seed_story.tokenizer import ImageTokenIds  # noqa: E402
from tests.reference_generation import reference_write  # noqa: E402

RELEASE_DRAW = DRAW_PRESETS["reference"]  # the release's inference scripts


def story_rows(folder: Path, count: int, steps: int, image_size: int) -> Path:
    """``count`` held-out story-world openings (picture + caption) as a manifest that writes ``steps`` steps."""
    world = StoryWorld(1, frames=2)
    rows = []
    for i in range(count):
        plot = world.story(i)
        name = f"opening_{i}.png"
        plot.pictures(image_size)[0].save(folder / name)
        rows.append({"story_id": f"s{i}", "image": name, "text": plot.frames[0].caption, "steps": steps,
                     "title": f"Story {i}"})  # fmt: skip
    manifest = folder / "night.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def engine_night(model: LoadedModel, count: int, steps: int, chunk: int) -> dict:
    """One night of ``count`` stories through the library stages; seconds per stage and pictures drawn."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = story_rows(folder, count, steps, model.pipeline.config.vision.image_size)
        store = open_store(str(folder / "store"))
        spec, seconds = model.spec, {}
        start = time.perf_counter()
        parsed, data = load_manifest(str(manifest))
        plan = plan_run(store, parsed, data, "bench", spec, model_version(spec.path))
        with model.use("writer") as pipeline:
            encode_openings(store, plan.pending, pipeline)
        seconds["openings"] = time.perf_counter() - start
        start = time.perf_counter()
        written, alongside = write_and_draw(store, model, plan.pending, "bench", chunk)
        drawn = alongside.drawn
        seconds["write"] = time.perf_counter() - start
        start = time.perf_counter()
        with model.use("drawer") as pipeline:
            for items in draw_chunks(store, [plan.pending], chunk):
                drawn += draw_items(store, items, pipeline, "bench").drawn
        seconds["draw"] = time.perf_counter() - start
        start = time.perf_counter()
        completed, failed = finish_stories(store, plan.pending, written.failures)
        render_run(store, "bench", ["html", "pdf"], PrintSettings())
        seconds["books"] = time.perf_counter() - start
    total = sum(seconds.values())
    return {"stories": count, "steps": steps, "completed": len(completed), "failed": len(failed),
            "steps_written": written.written, "pictures": drawn,
            "seconds": {k: round(v, 3) for k, v in seconds.items()}, "total_seconds": round(total, 3),
            "stories_per_hour": round(3600 * count / total, 1)}  # fmt: skip


def reference_story(parts, drawer: ImageDrawer, negative, steps: int, draw: tuple[str, int], guidance: float,
                    book_seconds: float, index: int = 0) -> dict:  # fmt: skip
    """One story by the released algorithm: write a step, draw its picture alone, ... then its book."""
    plot = StoryWorld(1, frames=2).story(index)
    ids = ImageTokenIds.from_tokenizer(parts.tokenizer, parts.config.mllm.num_image_tokens)
    start = time.perf_counter()
    with torch.no_grad():
        pixels = image_transform_batch([plot.pictures(parts.config.vision.image_size)[0]],
                                       parts.visual_tokenizer.cfg.image_size)  # fmt: skip
        opening = parts.visual_tokenizer(pixels).float()
    timings: list[float] = []
    written = reference_write(parts.mllm, parts.tokenizer, ids, opening, plot.frames[0].caption, steps,
                              timings=timings)  # fmt: skip
    write = time.perf_counter() - start
    start = time.perf_counter()
    pictures = 0
    for step in written:
        if step.features is not None:
            drawer.draw(step.features[None], negative, num_inference_steps=draw[1], guidance_scale=guidance,
                        sampler=draw[0])  # fmt: skip
            pictures += 1
    drawing = time.perf_counter() - start
    total = write + drawing + book_seconds
    return {"steps": steps, "steps_written": len(written), "pictures": pictures, "draw": list(draw),
            "seconds": {"write": round(write, 3), "draw": round(drawing, 3), "book": round(book_seconds, 3)},
            "total_seconds": round(total, 3), "stories_per_hour": round(3600 / total, 1)}  # fmt: skip


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    batches = report["engine_by_batch"]
    left.plot([r["stories"] for r in batches], [r["stories_per_hour"] for r in batches], "o-", label="engine")
    left.axhline(report["reference"]["stories_per_hour"], color="grey", ls="--", label="reference (release's drawing)")
    left.axhline(report["reference_same_drawing"]["stories_per_hour"], color="grey", ls=":",
                 label="reference (engine's drawing)")  # fmt: skip
    left.set_xlabel("stories per batch")
    left.set_ylabel(f"{report['steps']}-step stories / hour")
    left.set_title("Throughput vs batch size (write + draw + book)")
    left.legend()
    for name, key in (("engine (batch 4)", "engine_by_length"), ("reference", "reference_by_length")):
        rows = report[key]
        right.plot([r["steps"] for r in rows], [r["total_seconds"] / r.get("stories", 1) for r in rows], "o-",
                   label=name)  # fmt: skip
    right.set_xlabel("story steps")
    right.set_ylabel("seconds per story")
    right.set_title("Cost vs story length")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=bundled_model())
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--lengths", type=int, nargs="+", default=[5, 10, 25])
    parser.add_argument("--length-batch", type=int, default=4, help="stories per batch for the length sweep")
    parser.add_argument("--draw-steps", type=int, default=None, help="engine drawing steps (default: the model's)")
    parser.add_argument("--reference-draw-steps", type=int, default=RELEASE_DRAW[1])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    sampler, steps = demo_draw(args.model)  # the model's own drawing settings
    guidance = demo_guidance(args.model)
    draw = DrawSettings(sampler=sampler, num_inference_steps=args.draw_steps or steps, guidance_scale=guidance,
                        batch_size=16)  # fmt: skip
    start = time.perf_counter()
    engine = LoadedModel(ModelSpec(path=str(args.model), draw=draw))
    engine_load = time.perf_counter() - start
    chunk = 16

    engine_night(engine, 1, 2, chunk)  # warm-up: first calls of each kernel shape are not what a night pays
    by_batch = [engine_night(engine, b, args.steps, chunk) for b in args.batches]
    for row in by_batch:
        print("engine batch", row["stories"], row["stories_per_hour"], "stories/h", row["seconds"], flush=True)
    by_length = [engine_night(engine, args.length_batch, n, chunk) for n in args.lengths]
    book_seconds = by_batch[0]["seconds"]["books"] / by_batch[0]["stories"]

    start = time.perf_counter()
    parts = load_components(args.model).eval()  # LoRA unmerged, as the release runs it
    reference_load = time.perf_counter() - start
    drawer = ImageDrawer(parts.detokenizer, parts.vae, parts.scheduler, image_size=parts.config.detokenizer.image_size)
    with torch.no_grad():
        negative = parts.visual_tokenizer.negative_features()
    release_draw = (RELEASE_DRAW[0], args.reference_draw_steps)
    reference_story(parts, drawer, negative, 2, release_draw, guidance, book_seconds)  # warm-up
    reference = reference_story(parts, drawer, negative, args.steps, release_draw, guidance, book_seconds)
    print("reference", reference["stories_per_hour"], "stories/h", reference["seconds"], flush=True)
    same_drawing = reference_story(parts, drawer, negative, args.steps, (draw.sampler, draw.num_inference_steps),
                                   guidance, book_seconds)  # fmt: skip
    books_by_length = [r["seconds"]["books"] / r["stories"] for r in by_length]  # a shorter story, a shorter book
    by_length_ref = [reference_story(parts, drawer, negative, n, release_draw, guidance, book)
                     for n, book in zip(args.lengths, books_by_length, strict=True)]  # fmt: skip

    best = max(by_batch, key=lambda r: r["stories_per_hour"])
    report = {
        "speedup": round(best["stories_per_hour"] / reference["stories_per_hour"], 2),
        "speedup_same_drawing": round(best["stories_per_hour"] / same_drawing["stories_per_hour"], 2),
        "engine_stories_per_hour": best["stories_per_hour"],
        "engine_batch": best["stories"],
        "reference_stories_per_hour": reference["stories_per_hour"],
        "steps": args.steps,
        "model": args.model.name,
        "engine_draw": draw.model_dump(mode="json"),
        "reference_draw": list(release_draw),
        "engine_by_batch": by_batch,
        "engine_by_length": by_length,
        "reference": reference,
        "reference_same_drawing": same_drawing,
        "reference_by_length": by_length_ref,
        "model_load_seconds": {"engine": round(engine_load, 2), "reference": round(reference_load, 2)},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads",
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps({k: report[k] for k in ("speedup", "speedup_same_drawing", "engine_stories_per_hour",
                                             "reference_stories_per_hour")}))  # fmt: skip


if __name__ == "__main__":
    main()
