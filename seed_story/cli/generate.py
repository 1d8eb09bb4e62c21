"""``seed-story generate`` and ``seed-story demo``: run the nightly flow once, with a progress bar."""

from __future__ import annotations

import gc
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress

from seed_story.cli.local_api import ready_for_flows, starts_local_api
from seed_story.cli.output import BAR_COLUMNS, one_line

if TYPE_CHECKING:  # the flow layer (Prefect) is imported only when a command runs
    from seed_story.runstore.records import RunSummary
    from seed_story.storage import ObjectStore
    from tasks.settings import NightlySettings

DEMO_CACHE = Path("~/.cache/seed-story/toy-model")


def _watch(store: ObjectStore, run_id: str, total_steps: int, done: threading.Event, console: Console) -> None:
    """Show written steps and drawn pictures from the run's progress record (one small read a second)."""
    from seed_story.batch.progress import read_progress

    with Progress(*BAR_COLUMNS, console=console) as bars:
        write = bars.add_task("writing", total=total_steps)
        draw = bars.add_task("drawing", total=total_steps)
        while True:
            finished = done.wait(1.0)
            try:
                now = read_progress(store, run_id)
            except Exception:  # the store may not exist yet; the flow reports real errors
                now = None
            if now is not None:
                bars.update(write, completed=now.steps_written)
                bars.update(draw, completed=now.pictures_drawn)
            if finished:
                return


def run_night(settings: NightlySettings, *, progress: bool = True, console: Console | None = None) -> RunSummary:
    """Run ``nightly_generation`` in this process, with a rich progress bar fed from the store."""
    from flows.nightly_generation import nightly_generation
    from seed_story.batch.sources import load_manifest

    console = console or Console(stderr=True)
    manifest, _ = load_manifest(settings.manifest, settings.s3, settings.image_roots, settings.limits)
    done = threading.Event()
    watcher = None
    if progress:
        total = sum(r.num_steps for r in manifest.rows)
        args = (settings.open_store(), settings.resolved_run_id(), total, done, console)
        watcher = threading.Thread(target=_watch, args=args, daemon=True)
        watcher.start()
    # Everything imported so far lives until exit: kept out of the collector's full passes, which otherwise walk
    # the millions of objects torch, diffusers and Prefect made at each one during the run.
    gc.freeze()
    try:
        with ready_for_flows():
            return nightly_generation(settings)
    finally:
        done.set()
        if watcher is not None:
            watcher.join(timeout=10)


def _print_summary(summary: RunSummary, store: str, console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"run {summary.run_id}")
    for column in ("completed", "finished before", "failed", "bad rows", "steps written", "pictures"):
        table.add_column(column, justify="right")
    table.add_row(*map(str, (len(summary.completed), len(summary.skipped_finished), len(summary.failed),
                             len(summary.bad_rows), summary.steps_written, summary.pictures_drawn)))  # fmt: skip
    console.print(table)
    for f in summary.failed:
        console.print(f"[red]failed[/red] {f.story_id} ({f.stage}): {f.reason}", markup=True, highlight=False)
    if summary.leased_elsewhere:
        holders = ", ".join(sorted(set(summary.leased_elsewhere.values())))
        console.print(f"[yellow]left to another live run[/yellow] {len(summary.leased_elsewhere)} stories "
                      f"(held by {holders})", markup=True, highlight=False)  # fmt: skip
    for p in summary.bad_rows:
        console.print(f"[yellow]bad row[/yellow] line {p.line}: {p.reason}", markup=True, highlight=False)
    console.print(f"books: {store.rstrip('/')}/runs/{summary.run_id}/index.html")


@starts_local_api
def generate(
    manifest: str = typer.Option(..., "--manifest", "-m", help="JSONL, CSV or Parquet manifest (path or s3:// URI)."),
    image_roots: list[str] = typer.Option(
        [], "--image-root", help="Folder or s3:// prefix besides the manifest's folder that images may come from."
    ),
    store: str = typer.Option(..., "--store", "-s", help="Store root: a folder, file:// or s3://bucket/prefix."),
    model: str = typer.Option(
        ..., "--model", help="Checkpoint folder (this project's or a released pretrained/), or models://name@alias."
    ),
    registry: str | None = typer.Option(None, "--registry", help="Store holding models/ (default: --store)."),
    run_id: str | None = typer.Option(None, "--run-id", help="Default: today's UTC date. Same id = resume."),
    device: str = typer.Option("cpu", "--device", help="Where the model runs: cpu, cuda, cuda:0, ..."),
    draw_device: str | None = typer.Option(
        None, "--draw-device", help="A device of its own for the drawer half (a second GPU: cuda:1)."
    ),
    memory: str = typer.Option(
        "normal", "--memory", help="normal: both halves resident; low: one half on the device at a time (24 GB)."
    ),
    draw_alongside: bool | None = typer.Option(
        None,
        "--draw-alongside/--draw-after",
        help="Draw each step as soon as it is stored, or after all writing (default: alongside on a GPU).",
    ),
    dtype: str = typer.Option("float32", "--dtype", help="float32, float16 or bfloat16."),
    draw_preset: str = typer.Option(
        "reference", "--draw-preset", help="reference (Euler, 50 steps) or fast (DPM-Solver++ 2M, 20 steps)."
    ),
    draw_steps: int | None = typer.Option(None, "--draw-steps", min=1, help="Denoising steps (default: the preset's)."),
    guidance: float = typer.Option(7.5, "--guidance", min=1.0, help="Classifier-free guidance scale (reference 7.5)."),
    sampler: str | None = typer.Option(None, "--sampler", help="euler, dpm++2m or unipc (default: the preset's)."),
    write_batch: int = typer.Option(8, "--write-batch", min=1, help="Stories per MLLM batch."),
    draw_batch: int = typer.Option(16, "--draw-batch", min=1, help="Pictures per de-tokenizer task."),
    formats: str = typer.Option(
        "html,pdf", "--format", help="Books to render, comma-separated: html, pdf, epub; or 'none'."
    ),
    profile: str = typer.Option("screen", "--print-profile", help="Books for: screen, kdp or ingramspark."),
    page_size: str | None = typer.Option(None, "--page-size", help="8.5x8.5, a4 or letter (default: the profile's)."),
    s3_endpoint_url: str | None = typer.Option(None, "--s3-endpoint-url", help="e.g. http://127.0.0.1:9000 (MinIO)."),
    lease_seconds: float = typer.Option(
        60.0, "--lease-seconds", min=0.1, help="A run silent this long loses its stories to another run of the id."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Run the nightly generation flow once (Prefect's API from PREFECT_API_URL, else a temporary local one)."""
    from pydantic import ValidationError

    from seed_story.batch.manifest import ManifestError
    from seed_story.batch.pipelines import ModelSpec
    from seed_story.generation.settings import DRAW_PRESETS, DrawSettings, WriterSettings
    from seed_story.render.profiles import print_profile
    from seed_story.storage import S3Settings
    from tasks.settings import NightlySettings, RenderOptions

    try:
        if draw_preset not in DRAW_PRESETS:
            raise ValueError(f"unknown draw preset {draw_preset!r}; choose from {', '.join(DRAW_PRESETS)}")
        preset_sampler, preset_steps = DRAW_PRESETS[draw_preset]
        wanted = [f.strip() for f in formats.split(",") if f.strip() and f.strip() != "none"]
        sized = {"page_size": page_size} if page_size else {}
        settings = NightlySettings(
            manifest=manifest, image_roots=image_roots, store=store, run_id=run_id,
            s3=S3Settings(endpoint_url=s3_endpoint_url),
            registry=registry, model=ModelSpec(path=model, device=device, draw_device=draw_device, memory=memory,
                            draw_alongside=draw_alongside, dtype=dtype, writer=WriterSettings(),
                            draw=DrawSettings(num_inference_steps=draw_steps or preset_steps,
                                              guidance_scale=guidance, sampler=sampler or preset_sampler)),
            write_batch_size=write_batch, draw_batch_size=draw_batch, lease_seconds=lease_seconds,
            render=RenderOptions(formats=wanted, print_settings=print_profile(profile, **sized)) if wanted else None,
        )  # fmt: skip
        summary = run_night(settings, progress=progress and not as_json)
    except (ValidationError, ManifestError, ValueError) as err:
        raise typer.BadParameter(one_line(err)) from err
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
    else:
        _print_summary(summary, store, Console())
    if summary.failed:
        raise typer.Exit(code=2)


@starts_local_api
def demo(
    out: Path = typer.Option(Path("seed-story-demo"), "--out", help="Local store the demo writes into."),
    model: Path | None = typer.Option(
        None, "--model", help=f"Default: the bundled SEED-Story-Mini, else a toy model trained once into {DEMO_CACHE}."
    ),
    draw_steps: int | None = typer.Option(
        None, "--draw-steps", min=1, help="Denoising steps per picture. Default: 12 for the mini model, else 25."
    ),
    sampler: str | None = typer.Option(None, "--sampler", help="Default: dpm++2m for the mini model, else euler."),
    guidance: float | None = typer.Option(
        None, "--guidance", min=1.0, help="Default: 1.0 for the mini model, else 7.5."
    ),
) -> None:
    """Three storybooks from bundled example prompts, on the embedded defaults (local store, local Prefect API)."""
    from seed_story.batch.pipelines import ModelSpec
    from seed_story.batch.sources import load_manifest
    from seed_story.examples import bundled_model, demo_draw, demo_guidance, demo_prompts
    from seed_story.generation.settings import DrawSettings
    from tasks.settings import NightlySettings

    console = Console(stderr=True)
    if model is None:
        model = bundled_model()
    if model is None:
        from seed_story.training.toy import toy_checkpoint

        console.print(f"toy model: {DEMO_CACHE} (trained in ~20 s on first use; the mini model is not installed)")
        model = toy_checkpoint(DEMO_CACHE)
    default_sampler, default_steps = demo_draw(model)
    with resources.as_file(resources.files("seed_story.examples") / demo_prompts(model)) as manifest:
        # Every picture of the demo in one de-tokenizer call: on a CPU each new batch shape costs a warm-up (36
        # pictures: 2.5 s in one call, 3.2-3.8 s in calls of 12 or 16); small pictures, so memory is no issue.
        pictures = sum(row.num_steps for row in load_manifest(str(manifest))[0].rows)
        draw = DrawSettings(sampler=sampler or default_sampler, num_inference_steps=draw_steps or default_steps,
                            batch_size=pictures, guidance_scale=guidance or demo_guidance(model))  # fmt: skip
        settings = NightlySettings(manifest=str(manifest), store=str(out.resolve()), run_id="demo",
                                   model=ModelSpec(path=str(model), draw=draw), draw_batch_size=pictures)  # fmt: skip
        summary = run_night(settings, console=console)
    _print_summary(summary, str(out.resolve()), Console())
    for story_id in sorted([*summary.completed, *summary.skipped_finished]):
        typer.echo(f"{story_id}: {out.resolve() / 'runs' / 'demo' / story_id / 'book.html'}")
