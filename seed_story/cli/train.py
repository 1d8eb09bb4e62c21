"""``seed-story train``: run one of the training stages from a YAML/JSON config file, or plan its GPU memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from seed_story.cli.output import one_line, progress_bar

if TYPE_CHECKING:
    from rich.table import Table

    from seed_story.training.plan import LaunchFit, TrainingPlan

app = typer.Typer(
    help="Train the de-tokenizer (stage1, stage3) or the MLLM (stage2); pre-train a from-scratch ViT or VAE.",
    no_args_is_help=True,
)

CONFIG = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="YAML or JSON training config.")
RESUME = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the config's output_dir.")
PROCESSES = typer.Option(
    None, "--processes", "-n", min=1, help="Processes on this machine (default: one per visible GPU, else 1)."
)
SHARDING = typer.Option(
    "none", "--sharding", help="none (DDP), fsdp (torch's fully_shard) or zero2 (DeepSpeed, optional extra)."
)
MACHINES = typer.Option(1, "--machines", min=1, help="Machines in the run; start the same command on each.")
MACHINE_RANK = typer.Option(0, "--machine-rank", min=0, help="This machine's rank (0 on the main machine).")
MAIN_ADDRESS = typer.Option(None, "--main-address", help="Machine 0's address (runs on several machines).")


def _run(stage: str, config: Path, resume: bool, processes: int | None, sharding: str, machines: int,
         machine_rank: int, main_address: str | None) -> None:  # fmt: skip
    from seed_story.training import load_train_config, train
    from seed_story.training.launch import LaunchSettings, is_launched, process_state, run_launched

    try:
        cfg = load_train_config(config, stage, **({"resume": True} if resume else {}))
        launch = LaunchSettings(processes=processes, sharding=sharding, machines=machines,
                                machine_rank=machine_rank, main_address=main_address)  # fmt: skip
    except ValueError as err:
        raise typer.BadParameter(one_line(err), param_hint="--config") from err
    if not is_launched() and (launch.is_distributed() or sharding == "zero2"):
        typer.echo(f"{stage}: launching {launch.local_processes()} processes x {machines} machine(s), "
                   f"sharding {sharding}", err=True)  # fmt: skip
        result = run_launched(cfg, launch, on_line=lambda line: typer.echo(line, err=True))
    else:
        main = process_state().is_main_process
        if is_launched() and main:  # plain lines for the launcher's reader (a flow's log) every log_every steps
            _log_lines("seed_story.training")
        with progress_bar(stage, enabled=main and not is_launched(), rate="steps") as progress:
            result = train(cfg, progress=progress, sharding="fsdp" if sharding == "fsdp" else "none")
        if not main or is_launched():
            return  # the launcher reports the run
    typer.echo(f"{stage}: {result.steps} steps; checkpoint {result.checkpoint}; metrics {result.metrics_csv}")


def _log_lines(name: str) -> None:
    logger = logging.getLogger(name)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


# Each stage's command: the same options, the stage's own help.
STAGE_HELP = {
    "vision": "Pre-train the ViT as an autoencoder's encoder on pictures (models trained from scratch only).",
    "vae": "Pre-train the VAE on pictures (models trained from scratch only).",
    "stage1": "De-tokenizer pre-training: reconstruct pictures from the frozen ViT's features.",
    "stage2": "MLLM instruction tuning: LoRA, norms, embeddings and resamplers on interleaved stories.",
    "stage3": "De-tokenizer adaptation to the frozen stage-2 MLLM's regressed features (init = stage 2's output).",
}


def _stage_command(stage: str) -> Callable[..., None]:
    def command(
        config: Path = CONFIG,
        resume: bool = RESUME,
        processes: int | None = PROCESSES,
        sharding: str = SHARDING,
        machines: int = MACHINES,
        machine_rank: int = MACHINE_RANK,
        main_address: str | None = MAIN_ADDRESS,
    ) -> None:
        _run(stage, config, resume, processes, sharding, machines, machine_rank, main_address)

    command.__doc__ = STAGE_HELP[stage]
    return command


for _stage in STAGE_HELP:
    app.command(_stage)(_stage_command(_stage))


@app.command("plan")
def plan(
    config: Path = CONFIG,
    gpu_gib: list[float] | None = typer.Option(
        None,
        "--gpu-gib",
        min=1,
        metavar="GIB",
        help="Also plan for a card of this many GiB (repeatable); 24, 40, 80, 141 always.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the TrainingPlan as JSON instead of tables."),
    stage: str | None = typer.Option(None, "--stage", help="Plan the config as this stage (stage1/2/3) instead."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Samples per GPU (default: data's)."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Tokens per sequence (default: max_length)."),
) -> None:
    """Memory plan on the meta device (no weights loaded): parameters, gradient, AdamW and activation bytes, and
    the fewest GPUs of each size that fit one GPU, DDP, FSDP or ZeRO-2, with and without gradient checkpointing."""
    from seed_story.training.config import TrainConfig, read_config_file
    from seed_story.training.plan import default_workload, model_config, plan_training

    try:
        values = read_config_file(config)
        file_stage = values.pop("stage", None)
        chosen = stage or file_stage
        if chosen is None:
            raise ValueError(f"{config} names no stage; pass --stage")
        cfg = TrainConfig.for_stage(chosen, **values)
        workload = default_workload(cfg, model_config(cfg))
        updates = {"batch_size": batch_size, "seq_len": seq_len}
        workload = workload.model_copy(update={k: v for k, v in updates.items() if v is not None})
    except ValueError as err:
        raise typer.BadParameter(one_line(err), param_hint="--config") from err
    result = plan_training(cfg, gpu_gib, workload=workload)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    from rich.console import Console

    console = Console()
    for table in _plan_tables(result):
        console.print(table)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _plan_tables(plan: TrainingPlan) -> list[Table]:
    """The plan as three rich tables: parameters, bytes per GPU in one process, and launch fits."""
    from rich.table import Table

    w = plan.workload
    shape = f"{w.batch_size} sequences x {w.seq_len} tokens, {w.pictures_per_sample} pictures each"
    if plan.stage != "stage2":
        shape = f"{w.batch_size} pictures at {w.sd_size} px" + ("" if plan.stage == "stage1" else f"; {shape}")
    params = Table(title=f"{plan.stage}, {plan.model}, {plan.mixed_precision}: micro-batch of {shape} per GPU")
    for col in ("network", "on GPU", "parameters", "trainable", "held as", "weights"):
        params.add_column(col, justify="left" if col == "network" else "right")
    for n in plan.networks:
        cells = (f"{n.parameters:,}", f"{n.trainable:,}", n.dtype, _gib(n.weight_bytes))
        params.add_row(n.network.replace("_", " "), "yes" if n.on_gpu else "", *cells)
    params.add_row("total", "", f"{plan.parameters:,}", f"{plan.trainable_parameters:,}", "", "")

    m, off, on = plan.memory, plan.activation(False), plan.activation(True)
    mark = {plan.gradient_checkpointing: " (config)"}
    memory = Table(title="Bytes on one GPU, one process")
    memory.add_column("")
    memory.add_column("no checkpointing" + mark.get(False, ""), justify="right")
    memory.add_column("checkpointing" + mark.get(True, ""), justify="right")
    static = m.module_bytes + m.frozen_networks_bytes + m.gradient_bytes + m.optimizer_bytes
    rows = [
        ("trained module's weights", m.module_bytes, m.module_bytes),
        ("frozen networks' weights", m.frozen_networks_bytes, m.frozen_networks_bytes),
        ("gradients (fp32)", m.gradient_bytes, m.gradient_bytes),
        ("AdamW state (2 x fp32)", m.optimizer_bytes, m.optimizer_bytes),
        ("activations saved for backward", off.saved_bytes, on.saved_bytes),
        ("backward working set (one unit)", off.working_bytes, on.working_bytes),
        ("frozen forward (no grad)", off.frozen_forward_bytes, on.frozen_forward_bytes),
        ("frozen outputs kept", off.kept_bytes, on.kept_bytes),
        ("activation peak", off.peak_bytes, on.peak_bytes),
        ("total", static + off.peak_bytes, static + on.peak_bytes),
    ]
    for label, a, b in rows:
        memory.add_row(label, _gib(a), _gib(b))

    h = plan.headroom
    fits = Table(
        title=f"Fewest GPUs that fit, and GiB per GPU ({h.fraction:.0%} + {h.fixed_gib:g} GiB of each card kept free)"
    )
    for col in ("card", "ckpt", "one GPU", "DDP", "FSDP", "ZeRO-2"):
        fits.add_column(col, justify="left" if col in ("card", "ckpt") else "right")
    for gib in sorted({f.gpu_gib for f in plan.fits}):
        for checkpointing in (False, True):
            row = {f.mode: f for f in plan.fits if f.gpu_gib == gib and f.gradient_checkpointing == checkpointing}
            fits.add_row(f"{gib:g} GiB", "yes" if checkpointing else "no",
                         *(_fit_cell(row[mode]) for mode in ("one_gpu", "ddp", "fsdp", "zero2")))  # fmt: skip
    return [params, memory, fits]


def _fit_cell(fit: LaunchFit) -> str:
    size = f"{fit.per_gpu_bytes / 2**30:.0f}"
    if fit.mode in ("one_gpu", "ddp"):  # the bytes per GPU do not shrink with more GPUs
        return f"yes, {size}" if fit.gpus else f"no, {size}"
    return f"{fit.gpus} GPUs, {size}" if fit.gpus else f"no, {size} at 64"
