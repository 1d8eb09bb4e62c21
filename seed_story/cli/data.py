"""``seed-story data``: turn the released StoryStream layout into Parquet shards."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Prepare training data.", no_args_is_help=True)


@app.command("ingest-storystream")
def ingest_storystream(
    jsonl_glob: str = typer.Argument(..., help="jsonl file(s), a glob such as 'george/**/*.jsonl' (quote it)."),
    image_dir: Path = typer.Argument(..., help="The release's image folder.", exists=True, file_okay=False),
    out_dir: Path = typer.Argument(..., help="Folder for the Parquet shards."),
    chunk_length: int = typer.Option(10, "--chunk-length", min=2, help="Pictures per chunk (reference: 10)."),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Chunks per shard."),
    row_group_size: int = typer.Option(32, "--row-group-size", min=1, help="Chunks per row group."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate, chunk and write every story; report what was kept and what was skipped, and why."""
    from seed_story.data.ingest import expand_jsonl
    from seed_story.data.ingest import ingest_storystream as ingest

    files = expand_jsonl([jsonl_glob])
    if not files:
        typer.secho(f"no file matches {jsonl_glob}", fg="red", err=True)
        raise typer.Exit(1)
    report = ingest(
        files, image_dir, out_dir, chunk_length=chunk_length, shard_size=shard_size, row_group_size=row_group_size
    )
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
