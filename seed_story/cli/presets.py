"""``seed-story presets``: the named architecture presets and their parameter counts."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from seed_story.presets import PRESETS, from_preset

app = typer.Typer(help="Inspect the architecture presets.", no_args_is_help=True)


@app.command("list")
def list_presets() -> None:
    """Print the names of the available presets."""
    for name in sorted(PRESETS):
        typer.echo(name)


@app.command()
def describe(
    preset: str = typer.Option("seed-story-george", "--preset", "-p", help=f"One of: {', '.join(sorted(PRESETS))}"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Parameter count of every part, computed on the meta device (costs no memory)."""
    from seed_story.describe import describe_model

    cfg = from_preset(preset)
    desc = describe_model(cfg)
    if as_json:
        payload = desc.model_dump()
        payload.update(total=desc.total, trainable=desc.trainable)
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{preset}: {desc.total / 1e9:.3f} B parameters, {desc.trainable / 1e6:.1f} M trainable")
    for col, justify in (
        ("part", "left"),
        ("parameters", "right"),
        ("", "right"),
        ("trained", "center"),
        ("note", "left"),
    ):
        table.add_column(col, justify=justify)
    for part in desc.parts:
        table.add_row(
            part.part, f"{part.parameters:,}", _human(part.parameters), "yes" if part.trainable else "", part.note
        )
    Console().print(table)


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)
