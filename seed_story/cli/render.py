"""``seed-story render``: turn a stored run into HTML books, print PDFs and a gallery."""

from __future__ import annotations

import typer

app = typer.Typer(help="Render stored stories as storybooks.", invoke_without_command=True)


@app.callback()
def render(
    store: str = typer.Option(..., "--store", help="Store root (a local folder holding runs/{run_id}/)."),
    run: str = typer.Option(..., "--run", help="Run id."),
    formats: str = typer.Option("html,pdf", "--format", help="Comma-separated: html, pdf."),
    page_size: str = typer.Option("8.5x8.5", "--page-size", help="8.5x8.5, a4 or letter."),
    upscale_dpi: int | None = typer.Option(None, "--upscale-dpi", help="Lanczos-upscale art to this print DPI."),
    self_contained: bool = typer.Option(False, "--self-contained", help="Inline images into book.html."),
) -> None:
    """Render every complete story of a run and write the run's index.html."""
    import logging

    from seed_story.render import LocalStore, PrintSettings, render_run

    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)  # one line per layout step otherwise

    if "://" in store:
        raise typer.BadParameter("only local folders are supported until the storage layer lands", param_hint="--store")
    try:
        settings = PrintSettings(page_size=page_size, upscale_dpi=upscale_dpi)
        report = render_run(
            LocalStore(store), run, [f.strip() for f in formats.split(",") if f.strip()], settings,
            self_contained=self_contained,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(report.model_dump_json(indent=2))
