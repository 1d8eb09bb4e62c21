"""``seed-story`` command line: one typer app, one sub-command group per area.

The CLI is the top layer: it may start the Prefect flows (``generate``, ``demo``), importing them only when such
a command runs, so ``--help`` and the library commands never load Prefect.
"""

from __future__ import annotations

import gc
import os
import sys

# Never reach for the hub from the CLI: every path is local, and a lookup costs ~20 s before it fails.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer

from seed_story.cli import checkpoints, data, eval, generate, presets, pretrained, registry, render, train, verify
from seed_story.cli.output import configure_output, one_line

app = typer.Typer(
    help="SEED-Story: illustrated long stories, from the model to printed storybooks.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # help texts are plain: "s3://bucket[/prefix]" is not rich markup
)
app.add_typer(presets.app, name="presets")
app.add_typer(checkpoints.app, name="checkpoints")
app.add_typer(pretrained.app, name="pretrained")
app.add_typer(render.app, name="render")
app.add_typer(train.app, name="train")
app.add_typer(data.app, name="data")
app.add_typer(registry.app, name="models")
app.command("generate")(generate.generate)
app.command("demo")(generate.demo)
app.command("eval")(eval.eval_run)
app.command("verify")(verify.verify)

_verbose = False


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug output and full tracebacks.")) -> None:
    global _verbose
    _verbose = verbose
    configure_output(verbose)


def main() -> None:
    """The ``seed-story`` entry point: the app, with any error a user can cause shown as one line."""
    try:
        app()
    except Exception as err:
        if _verbose:
            raise
        typer.secho(f"error: {one_line(err)}", fg="red", err=True)
        sys.exit(1)
    finally:
        # The interpreter's last collection walks every object torch, diffusers and Prefect made (~1.3 s); frozen
        # objects are skipped. Exit handlers (stopping a temporary API, flushing logs) still run.
        gc.freeze()


if __name__ == "__main__":
    main()
