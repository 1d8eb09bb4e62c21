"""``seed-story eval``: judge the stories of a stored run with the story-world consistency metrics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from seed_story.cli.output import progress_bar

if TYPE_CHECKING:  # the judge loads numpy and PIL: only when the command runs, not with every CLI call
    from seed_story.storyworld.judge.metrics import Scores
    from seed_story.storyworld.judge.report import EvalReport

# Per-story headline columns (title, metric); every metric is defined in ``seed_story.storyworld.judge.metrics``.
HEADLINE = (
    ("character", "character_consistency"),
    ("style", "style_consistency"),
    ("text-image", "text_image_agreement"),
    ("coherence", "text_coherence"),
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _stories_table(report: EvalReport) -> Table:
    table = Table(title=f"{report.store} run {report.run_id}: {len(report.stories)} stories")
    for title in ("story", "frames", *(t for t, _ in HEADLINE)):
        table.add_column(title, justify="left" if title == "story" else "right")
    rows = [(s.story_id, s.scores) for s in report.stories] + [("overall", report.overall)]
    for i, (name, scores) in enumerate(rows):
        cells = [getattr(scores, metric) for _, metric in HEADLINE]
        values = [_cell(getattr(c, "value", c)) for c in cells]
        table.add_row(name, str(scores.frames), *values, end_section=i == len(rows) - 2)
    return table


def _overall_table(scores: Scores) -> Table:
    from seed_story.storyworld.judge.metrics import METRICS

    table = Table(title="overall, pooled over stories")
    for title in ("metric", "hits", "total", "value"):
        table.add_column(title, justify="left" if title == "metric" else "right")
    for metric in METRICS:
        ratio = getattr(scores, metric)
        table.add_row(metric, str(ratio.hits), str(ratio.total), _cell(ratio.value))
    for metric in ("text_image_agreement", "text_coherence"):
        table.add_row(metric, "", "", _cell(getattr(scores, metric)))
    return table


def eval_run(
    store: str = typer.Option(
        ..., "--store", help="Store holding runs/{run_id}/: a local folder, file:///path or s3://bucket[/prefix]."
    ),
    run: str = typer.Option(..., "--run", help="Run id."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the full report as JSON here."),
    s3_endpoint_url: str | None = typer.Option(
        None, "--s3-endpoint-url", help="S3-compatible endpoint (MinIO...); default: AWS_ENDPOINT_URL, else AWS."
    ),
    force: bool = typer.Option(False, "--force", help="Score a run that is not from the story world anyway."),
) -> None:
    """Score a run's story-world stories: character/style consistency, text-image agreement, text coherence.

    A run whose stories do not open with story-world captions is refused: its scores would mean nothing.
    """
    from seed_story.storage import S3Settings, open_store
    from seed_story.storyworld.judge.report import NotStoryWorldRun, evaluate_run

    if s3_endpoint_url and not store.startswith("s3://"):
        raise typer.BadParameter("--s3-endpoint-url only applies to s3:// stores", param_hint="--s3-endpoint-url")
    objects = open_store(store, S3Settings(endpoint_url=s3_endpoint_url) if s3_endpoint_url else None)
    try:
        with progress_bar("judging") as progress:
            report = evaluate_run(objects, run, progress, force=force)
    except NotStoryWorldRun as err:
        typer.secho(f"error: {err} (--force scores it anyway)", fg="red", err=True)
        raise typer.Exit(1) from err
    if report.not_storyworld:
        typer.secho(f"warning: {len(report.not_storyworld)} stories do not open in the story world (first: "
                    f"{report.not_storyworld[0]}); their scores mean little", fg="yellow", err=True)  # fmt: skip
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report.model_dump_json(indent=2))
    console = Console()
    console.print(_stories_table(report))
    console.print(_overall_table(report.overall))
    for s in report.skipped:
        console.print(f"skipped {s.story_id}: {s.reason}")
