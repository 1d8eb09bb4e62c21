"""``seed-story data``: turn the released StoryStream layout into Parquet shards."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from seed_story.cli.output import progress_bar
from seed_story.presets import from_preset

app = typer.Typer(help="Prepare training data.", no_args_is_help=True)


@app.command("ingest-storystream")
def ingest_storystream(
    jsonl_glob: str = typer.Argument(..., help="jsonl file(s), a glob such as 'george/**/*.jsonl' (quote it)."),
    image_dir: Path = typer.Argument(..., help="The release's image folder.", exists=True, file_okay=False),
    out_dir: Path = typer.Argument(..., help="Folder for the Parquet shards."),
    chunk_length: int = typer.Option(
        10, "--chunk-length", min=1, help="Pictures per chunk (reference: 10; 1: image-caption pairs)."
    ),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Chunks per shard."),
    row_group_size: int = typer.Option(32, "--row-group-size", min=1, help="Chunks per row group."),
    allow_root: list[Path] = typer.Option(
        [], "--allow-root", help="A folder besides IMAGE_DIR that image paths may lead into (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate, chunk and write every story; report what was kept and what was skipped, and why.

    Image paths must stay inside IMAGE_DIR (symlinks included) or an --allow-root; others are skipped.
    """
    from seed_story.data.ingest import expand_jsonl
    from seed_story.data.ingest import ingest_storystream as ingest

    files = expand_jsonl([jsonl_glob])
    if not files:
        typer.secho(f"no file matches {jsonl_glob}", fg="red", err=True)
        raise typer.Exit(1)
    with progress_bar("ingesting", enabled=not as_json) as progress:
        report = ingest(files, image_dir, out_dir, chunk_length=chunk_length, shard_size=shard_size,
                        row_group_size=row_group_size, progress=progress, allowed_roots=allow_root)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report.model_dump(), indent=2))
        return
    console = Console()
    summary = Table(title=f"{out_dir}")
    for col in ("files", "lines", "stories", "chunks written", "shards", "tail images dropped"):
        summary.add_column(col, justify="right")
    summary.add_row(
        *map(str, (report.files, report.lines, report.stories, report.chunks_written, len(report.shards))),
        str(report.tail_images_dropped),
    )
    console.print(summary)
    if report.problems:
        problems = Table(title=f"skipped: {report.counts()}")
        for col in ("kind", "source", "story", "chunk", "detail"):
            problems.add_column(col)
        for p in report.problems:
            chunk = "" if p.chunk_index is None else str(p.chunk_index)
            problems.add_row(p.kind, p.source, p.story_id or "", chunk, p.detail)
        console.print(problems)


@app.command("storyworld")
def storyworld(
    out: Path = typer.Option(..., "--out", help="Folder for stories.jsonl, annotations.jsonl and images/."),
    stories: int = typer.Option(..., "--stories", min=1, help="Number of stories (30 frames each)."),
    seed: int = typer.Option(0, "--seed", help="World seed: the same seed writes the same bytes."),
    size: int = typer.Option(64, "--size", min=16, help="Picture side in pixels."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes (default: the CPU count, <= 8)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Write a synthetic story world with known ground truth, in the StoryStream layout."""
    from seed_story.storyworld.world import write_storyworld

    report = write_storyworld(out, stories, seed, size=size, workers=workers)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    table = Table(title=f"{out}")
    for col in ("stories", "frames", "seconds", "frames/s", "styles"):
        table.add_column(col, justify="right")
    styles = ", ".join(f"{k} {v}" for k, v in report.styles.items())
    table.add_row(
        str(report.stories), str(report.frames), f"{report.seconds:.1f}", f"{report.frames_per_second:.0f}", styles
    )
    Console().print(table)
    typer.echo(f"ingest with: seed-story data ingest-storystream {out}/stories.jsonl {out}/images SHARDS_DIR")


@app.command("train-tokenizer")
def train_tokenizer(
    jsonl_glob: str = typer.Argument(..., help="StoryStream jsonl file(s) whose captions the tokenizer learns."),
    out: Path = typer.Option(..., "--out", help="Tokenizer folder (load_tokenizer / TrainConfig.tokenizer read it)."),
    preset: str = typer.Option("seed-story-mini", "--preset", help="Sets the vocabulary and image-token count."),
) -> None:
    """Train a byte-level BPE tokenizer on a story corpus, sized for a preset trained from scratch."""
    from seed_story.data.ingest import expand_jsonl
    from seed_story.tokenizer import INST, train_bpe_tokenizer

    cfg = from_preset(preset)
    files = expand_jsonl([jsonl_glob])
    if not files:
        raise typer.BadParameter(f"no jsonl file matches {jsonl_glob!r}")

    def captions():
        for file in files:
            with file.open(encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        # Training text puts [INST] before texts to illustrate: let BPE see it too.
                        yield from (INST + c for c in json.loads(line)["captions"])

    tok = train_bpe_tokenizer(captions(), cfg.mllm.llm.vocab_size, cfg.mllm.num_image_tokens)
    tok.save_pretrained(str(out))
    typer.echo(f"{out}: {len(tok)} tokens ({cfg.mllm.llm.vocab_size} base + 2 + {cfg.mllm.num_image_tokens} image)")
