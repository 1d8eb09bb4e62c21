"""``seed-story checkpoints``: this project's checkpoint folders (``seed_story.json`` + safetensors)."""

from __future__ import annotations

import typer

from seed_story.cli.output import progress_bar

app = typer.Typer(help="Work with this project's checkpoints.", no_args_is_help=True)


@app.command("export")
def export(
    source: str = typer.Argument(..., help="A checkpoint folder of this project (has seed_story.json)."),
    target: str = typer.Argument(..., help="Folder to write."),
    dtype: str = typer.Option("float16", "--dtype", help="float16, bfloat16 or float32."),
    detokenizer: str | None = typer.Option(
        None, "--detokenizer", help="Take the de-tokenizer (and its config) from this checkpoint, e.g. stage 1's."
    ),
) -> None:
    """Copy a checkpoint with its weights stored in another dtype (float16 halves the size)."""
    import torch

    from seed_story.checkpoints.native import export_checkpoint

    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in dtypes:
        raise typer.BadParameter(f"choose one of {sorted(dtypes)}", param_hint="--dtype")
    with progress_bar("exporting") as progress:
        manifest = export_checkpoint(source, target, dtypes[dtype], detokenizer=detokenizer, progress=progress)
    typer.echo(f"wrote {manifest.parent} ({dtype})")
