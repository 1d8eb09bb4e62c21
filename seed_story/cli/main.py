"""``seed-story`` command line: one typer app, one sub-command group per area."""

from __future__ import annotations

import logging
import os

# Never reach for the hub from the CLI: every path is local, and a lookup costs ~20 s before it fails.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer

from seed_story.cli import data, eval, generate, models, pretrained, render, train

app = typer.Typer(
    help="SEED-Story: illustrated long stories, from the model to printed storybooks.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(models.app, name="models")
app.add_typer(pretrained.app, name="pretrained")
app.add_typer(render.app, name="render")
app.add_typer(train.app, name="train")
app.add_typer(data.app, name="data")
app.command("generate")(generate.generate)
app.command("demo")(generate.demo)
app.command("eval")(eval.eval_run)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # one line per HTTP call / PDF layout step otherwise
        for name in ("httpx", "weasyprint.progress"):
            logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    app()
