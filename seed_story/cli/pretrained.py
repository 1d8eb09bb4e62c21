"""``seed-story pretrained``: check a folder of released weights, extract the ViT from Qwen-VL-Chat."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from seed_story.cli.output import progress_bar
from seed_story.presets import from_preset

app = typer.Typer(help="Work with the original release's weights.", no_args_is_help=True)

_STYLE = {"ok": "green", "present": "green", "missing": "yellow", "mismatched": "red", "unreadable": "red"}


@app.command()
def check(
    directory: Path = typer.Argument(..., help="The pretrained/ folder.", exists=True, file_okay=False),
    deep: bool = typer.Option(False, "--deep", help="Compare every tensor name and shape with the preset."),
    preset: str = typer.Option("seed-story-george", "--preset", "-p"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Report what is present, missing or mismatched, with sizes. Exit code 1 if inference cannot run."""
    from seed_story.checkpoints.check import check_pretrained

    with progress_bar("checking", enabled=not as_json) as progress:
        results = check_pretrained(directory, from_preset(preset), deep=deep, progress=progress)
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in results], indent=2))
    else:
        table = Table(title=f"{directory} ({'deep' if deep else 'quick'} check)")
        for col in ("component", "for", "status", "size", "path / detail"):
            table.add_column(col)
        for r in results:
            style = _STYLE[r.status]
            info = "\n".join(x for x in (r.path or "", r.detail) if x)
            size = f"{r.size_bytes / 2**30:.2f} GiB" if r.size_bytes else ""
            table.add_row(r.key, r.needed_for, f"[{style}]{r.status}[/{style}]", size, info)
        Console().print(table)
    blocking = [r.key for r in results if r.needed_for == "inference" and r.status not in ("ok", "present")]
    if blocking:
        typer.secho(f"not ready for inference: {', '.join(blocking)}", fg="red", err=True)
        raise typer.Exit(1)


@app.command("extract-qwen-vit")
def extract_qwen_vit(
    qwen_dir: Path = typer.Argument(..., help="Qwen-VL-Chat folder (safetensors or .bin shards).", exists=True),
    out: Path = typer.Argument(..., help="Output file: .pt (as released) or .safetensors."),
    preset: str = typer.Option("seed-story-george", "--preset", "-p"),
) -> None:
    """Write the visual encoder's weights from a Qwen-VL checkpoint, checked against the preset."""
    from seed_story.checkpoints.vision import extract_qwen_vit as extract

    try:
        path, report = extract(qwen_dir, out, from_preset(preset).vision)
    except (FileNotFoundError, ValueError) as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"wrote {report.loaded} tensors to {path} ({path.stat().st_size / 2**20:.1f} MiB)")
