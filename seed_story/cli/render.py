"""``seed-story render``: turn a stored run into HTML books, print PDFs and a gallery."""

from __future__ import annotations

import typer

from seed_story.cli.output import progress_bar

app = typer.Typer(help="Render stored stories as storybooks.", invoke_without_command=True)


@app.callback()
def render(
    store: str = typer.Option(
        ..., "--store", help="Store holding runs/{run_id}/: a local folder, file:///path or s3://bucket[/prefix]."
    ),
    run: str = typer.Option(..., "--run", help="Run id."),
    formats: str = typer.Option("html,pdf", "--format", help="Comma-separated: html, pdf."),
    page_size: str = typer.Option("8.5x8.5", "--page-size", help="8.5x8.5, a4 or letter."),
    upscale_dpi: int | None = typer.Option(None, "--upscale-dpi", help="Lanczos-upscale art to this print DPI."),
    self_contained: bool = typer.Option(False, "--self-contained", help="Inline images into book.html."),
    s3_endpoint_url: str | None = typer.Option(
        None, "--s3-endpoint-url", help="S3-compatible endpoint (MinIO...); default: AWS_ENDPOINT_URL, else AWS."
    ),
) -> None:
    """Render every complete story of a run and write the run's index.html."""
    from seed_story.render import PrintSettings, render_run
    from seed_story.storage import S3Settings, open_store

    if s3_endpoint_url and not store.startswith("s3://"):
        raise typer.BadParameter("--s3-endpoint-url only applies to s3:// stores", param_hint="--s3-endpoint-url")
    objects = open_store(store, S3Settings(endpoint_url=s3_endpoint_url) if s3_endpoint_url else None)
    settings = PrintSettings(page_size=page_size, upscale_dpi=upscale_dpi)
    wanted = [f.strip() for f in formats.split(",") if f.strip()]
    with progress_bar("rendering") as progress:
        report = render_run(objects, run, wanted, settings, self_contained=self_contained, progress=progress)
    typer.echo(report.model_dump_json(indent=2))
