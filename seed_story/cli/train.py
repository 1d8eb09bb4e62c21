"""``seed-story train``: run one of the three training stages from a YAML/JSON config file."""

from __future__ import annotations

from pathlib import Path

import typer

from seed_story.cli.output import one_line

app = typer.Typer(
    help="Train the de-tokenizer (stage1, stage3) or the MLLM (stage2); pre-train a from-scratch ViT or VAE.",
    no_args_is_help=True,
)

CONFIG = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="YAML or JSON training config.")
RESUME = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the config's output_dir.")


def _run(stage: str, config: Path, resume: bool) -> None:
    from seed_story.training import load_train_config, train

    try:
        cfg = load_train_config(config, stage, **({"resume": True} if resume else {}))
    except ValueError as err:
        raise typer.BadParameter(one_line(err), param_hint="--config") from err
    result = train(cfg)
    typer.echo(f"{stage}: {result.steps} steps; checkpoint {result.checkpoint}; metrics {result.metrics_csv}")


@app.command("vision")
def vision(config: Path = CONFIG, resume: bool = RESUME) -> None:
    """Pre-train the ViT as an autoencoder's encoder on pictures (models trained from scratch only)."""
    _run("vision", config, resume)


@app.command("vae")
def vae(config: Path = CONFIG, resume: bool = RESUME) -> None:
    """Pre-train the VAE on pictures (models trained from scratch only)."""
    _run("vae", config, resume)


@app.command("stage1")
def stage1(config: Path = CONFIG, resume: bool = RESUME) -> None:
    """De-tokenizer pre-training: reconstruct pictures from the frozen ViT's features."""
    _run("stage1", config, resume)


@app.command("stage2")
def stage2(config: Path = CONFIG, resume: bool = RESUME) -> None:
    """MLLM instruction tuning: LoRA, norms, embeddings and resamplers on interleaved stories."""
    _run("stage2", config, resume)


@app.command("stage3")
def stage3(config: Path = CONFIG, resume: bool = RESUME) -> None:
    """De-tokenizer adaptation to the frozen stage-2 MLLM's regressed features (init = stage 2's output)."""
    _run("stage3", config, resume)
