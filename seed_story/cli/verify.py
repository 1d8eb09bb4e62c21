"""``seed-story verify``: what a picture or book says about its origin (``seed_story.provenance``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def verify(
    files: list[Path] = typer.Argument(..., help="PNG pictures, PDF or HTML books.", exists=True, dir_okay=False),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file."),
) -> None:
    """Report each file's machine-readable provenance: AI-generated or not, model version, run, story, step.

    Exits 1 if any file states no provenance.
    """
    from seed_story.provenance import read_provenance

    missing = False
    for path in files:
        found = read_provenance(path)
        p = found.provenance
        missing |= p is None
        if as_json:
            typer.echo(json.dumps(found.model_dump(mode="json")))
        elif p is None:
            typer.echo(f"{path}: {found.kind}, no provenance stated")
        else:
            where = ", ".join(
                f"{k} {v}" for k, v in p.model_dump(exclude={"digital_source_type"}).items() if v is not None
            )
            origin = "AI-generated (trainedAlgorithmicMedia)" if p.ai_generated else f"source {p.digital_source_type}"
            typer.echo(f"{path}: {found.kind}, {origin}; {where}")
    if missing:
        raise typer.Exit(code=1)
