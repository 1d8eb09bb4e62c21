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
    formats: str = typer.Option("html,pdf", "--format", help="Comma-separated: html, pdf, epub."),
    profile: str = typer.Option(
        "screen", "--print-profile", help="screen (RGB, tagged PDF/UA), kdp (CMYK PDF/X-1a) or ingramspark (PDF/X-4)."
    ),
    page_size: str | None = typer.Option(None, "--page-size", help="8.5x8.5, a4 or letter (default: the profile's)."),
    upscale_dpi: int | None = typer.Option(None, "--upscale-dpi", help="Upscale art to this print DPI."),
    cmyk_profile: str | None = typer.Option(
        None, "--cmyk-profile", help="The printer's CMYK ICC file (CMYK profiles)."
    ),
    self_contained: bool = typer.Option(False, "--self-contained", help="Inline images into book.html."),
    s3_endpoint_url: str | None = typer.Option(
        None, "--s3-endpoint-url", help="S3-compatible endpoint (MinIO...); default: AWS_ENDPOINT_URL, else AWS."
    ),
) -> None:
    """Render every complete story of a run and write the run's index.html."""
    from seed_story.cli.output import one_line
    from seed_story.render import render_run
    from seed_story.render.profiles import print_profile
    from seed_story.storage import S3Settings, open_store

    if s3_endpoint_url and not store.startswith("s3://"):
        raise typer.BadParameter("--s3-endpoint-url only applies to s3:// stores", param_hint="--s3-endpoint-url")
    objects = open_store(store, S3Settings(endpoint_url=s3_endpoint_url) if s3_endpoint_url else None)
    changes = {"page_size": page_size, "upscale_dpi": upscale_dpi, "cmyk_icc": cmyk_profile}
    try:
        settings = print_profile(profile, **{k: v for k, v in changes.items() if v is not None})
    except ValueError as err:
        raise typer.BadParameter(one_line(err)) from err
    wanted = [f.strip() for f in formats.split(",") if f.strip()]
    with progress_bar("rendering") as progress:
        report = render_run(objects, run, wanted, settings, self_contained=self_contained, progress=progress)
    typer.echo(report.model_dump_json(indent=2))
    if report.failed_preflight:
        typer.echo(f"failed preflight ({profile}): {', '.join(report.failed_preflight)}", err=True)
        raise typer.Exit(code=2)
