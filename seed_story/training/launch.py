"""Start a training run in N processes (and M machines) through ``accelerate launch`` (torchrun underneath).

The run's resolved ``TrainConfig`` is written as JSON into its output folder and every process reads it with
``seed-story train <stage> --config``; so a launched run trains exactly what a single process would, and a
rerun with ``resume`` continues from the newest checkpoint. Data parallelism is DDP unless ``sharding`` asks
for FSDP (torch's ``fully_shard``, FSDP2: parameters, gradients and optimizer state split across processes) or
DeepSpeed ZeRO-2 (gradients and optimizer state split; the optional ``deepspeed`` extra).

Example::

    launch = LaunchSettings(processes=8, sharding="fsdp")
    result = run_launched(cfg, launch, on_line=print)   # TrainResult; LaunchFailed with the log's tail on failure
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from pydantic import Field, model_validator

from seed_story.config import StrictModel
from seed_story.training.config import TrainConfig
from seed_story.training.sharding import mixed_precision_policy
from seed_story.training.trainer import TrainResult

LAUNCHED_CONFIG = "launched_config.json"
# Set for the launched processes: they print plain log lines (no progress bar) for whoever reads their output.
LAUNCHED_ENV = "SEED_STORY_LAUNCHED"
# The lines that name a launched process's root cause: seed-story's one-line errors, and a C++ runtime's abort.
FATAL = ("error:", "terminate called", "RuntimeError", "Fatal Python error")
Sharding = Literal["none", "fsdp", "zero2"]


class LaunchSettings(StrictModel):
    """How many processes train, on how many machines, with which data-parallel mode.

    Example (a flow parameter)::

        launch: {processes: 8, machines: 2, machine_rank: 0, main_address: 10.0.0.5, sharding: fsdp}
    """

    processes: int | None = Field(
        None, gt=0, description="processes on this machine; None = one per visible GPU (one on a CPU machine)"
    )
    machines: int = Field(1, gt=0, description="machines in the run (each starts the same launch)")
    machine_rank: int | None = Field(
        None, ge=0, description="this machine's rank (0 at main_address); None = JOB_COMPLETION_INDEX (a Kubernetes "
        "indexed Job's pod number) or 0",
    )  # fmt: skip
    main_address: str | None = Field(None, description="address of machine 0 (needed with machines > 1)")
    main_port: int | None = Field(
        None, gt=0, lt=65536, description="rendezvous port on machine 0; None = a free one (one machine), else 29500"
    )
    sharding: Sharding = Field(
        "none", description="none = DDP (every process holds the whole model); fsdp = FSDP2 full shard; zero2"
    )
    cpu: bool | None = Field(None, description="train on CPUs with gloo; None = when no GPU is visible")
    threads_per_process: int | None = Field(None, gt=0, description="OMP threads per process; None = cores / N")

    @model_validator(mode="after")
    def _check(self) -> LaunchSettings:
        if self.rank() >= self.machines:
            raise ValueError(f"machine_rank {self.rank()} is not below machines {self.machines}")
        if self.machines > 1 and not self.main_address:
            raise ValueError("a run on several machines needs main_address (machine 0's address)")
        return self

    def rank(self) -> int:
        """This machine's rank: as set, else a Kubernetes indexed Job's pod number, else 0."""
        if self.machine_rank is not None:
            return self.machine_rank
        return int(os.environ.get("JOB_COMPLETION_INDEX", "0"))

    def port(self) -> int:
        """The rendezvous port: as set; on one machine a free one, so a run never meets a stale run's store."""
        if self.main_port is not None:
            return self.main_port
        if self.machines > 1:
            return 29500
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def on_cpu(self) -> bool:
        if self.cpu is not None:
            return self.cpu
        import torch

        return not torch.cuda.is_available()

    def local_processes(self) -> int:
        if self.processes is not None:
            return self.processes
        import torch

        return 1 if self.on_cpu() else max(1, torch.cuda.device_count())

    def is_distributed(self) -> bool:
        return self.machines > 1 or self.local_processes() > 1


def process_state() -> PartialState:
    """This process's place in the run (rank, count), joining the launched run's process group on first use.

    Made with ``cpu`` as the launcher asked (``ACCELERATE_USE_CPU``): a state made without it finds no GPU and
    starts no process group, and every process would train alone.
    """
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


class LaunchFailed(RuntimeError):
    """A launched run exited with a non-zero status; the message ends with the tail of its log."""


def _sharding_args(sharding: Sharding) -> list[str]:
    # FSDP is applied by the trainer itself (torch's fully_shard, the same on GPUs and on CPUs, where accelerate
    # would not shard): its processes start as for DDP and the trainer is told with --sharding.
    if sharding == "zero2":
        return ["--use_deepspeed", "--zero_stage", "2", "--gradient_clipping", "1.0"]
    return []


def launch_command(cfg: TrainConfig, config_file: Path, launch: LaunchSettings) -> list[str]:
    """The ``accelerate launch`` command line that trains ``cfg`` (already written to ``config_file``)."""
    local = launch.local_processes()
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--num_processes", str(local * launch.machines), "--num_machines", str(launch.machines),
               "--machine_rank", str(launch.rank()), "--main_process_port", str(launch.port()),
               "--mixed_precision", cfg.mixed_precision, "--dynamo_backend", "no"]  # fmt: skip
    if launch.main_address:
        command += ["--main_process_ip", launch.main_address]
    if not launch.is_distributed():
        command += ["--cpu"] if launch.on_cpu() else []
    elif launch.sharding != "zero2":
        # accelerate's name for torchrun's DDP launch (its --cpu would mean mpirun); on a machine without GPUs
        # the processes train on CPUs and talk over gloo.
        command += ["--multi_gpu"]
    command += _sharding_args(launch.sharding)
    threads = launch.threads_per_process or max(1, (os.cpu_count() or 1) // local)
    command += ["--num_cpu_threads_per_process", str(threads)]
    return [*command, "-m", "seed_story.cli.main", "train", cfg.stage, "--config", str(config_file),
            "--sharding", launch.sharding]  # fmt: skip


def write_launched_config(cfg: TrainConfig) -> Path:
    """``cfg`` as JSON in its output folder, for every launched process to read."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LAUNCHED_CONFIG
    path.write_text(cfg.model_dump_json(indent=2))
    return path


def _die_with_parent() -> None:
    # The launcher goes down with the process that started it (a killed flow run leaves no orphan trainer
    # writing checkpoints); its torchrun agent takes the workers down with it.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def is_launched() -> bool:
    """Whether this process is one of a launched run's (torchrun sets LOCAL_RANK; ``run_launched`` its own flag)."""
    return "LOCAL_RANK" in os.environ or LAUNCHED_ENV in os.environ


def read_result(output_dir: str | Path) -> TrainResult:
    """What a finished run left in ``output_dir`` (its final checkpoint and metrics), as ``Trainer.fit`` returns."""
    out = Path(output_dir)
    jsonl = out / "metrics.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] if jsonl.is_file() else []
    return TrainResult(checkpoint=out / "final", metrics_csv=out / "metrics.csv", metrics_jsonl=jsonl,
                       plot=out / "loss.png", steps=rows[-1]["step"] if rows else 0,
                       losses=[r["loss"] for r in rows])  # fmt: skip


def run_launched(
    cfg: TrainConfig, launch: LaunchSettings, on_line: Callable[[str], None] | None = None, tail_lines: int = 80
) -> TrainResult:
    """Train ``cfg`` in the processes ``launch`` asks for; returns what the run left in its output folder.

    Every line the processes print goes to ``on_line`` as it comes. A non-zero exit raises
    :class:`LaunchFailed` with the last ``tail_lines`` lines.
    """
    if launch.sharding == "fsdp":
        mixed_precision_policy(cfg.mixed_precision)  # refuses fp16 here, not in every launched process
    config_file = write_launched_config(cfg)
    command = launch_command(cfg, config_file, launch)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", LAUNCHED_ENV: "1"}
    if launch.on_cpu():
        env["ACCELERATE_USE_CPU"] = "true"  # else accelerate starts no process group without GPUs
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    errors: list[str] = []  # the processes' own one-line errors (seed-story's "error: ..."), the root cause
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          preexec_fn=_die_with_parent if sys.platform == "linux" else None) as proc:  # fmt: skip
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if line.startswith(FATAL) and line not in errors:
                errors.append(line)
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    if code != 0:
        cause = "; ".join(errors[:3]) or "no process reported an error (killed? see the lines below)"
        lines = "\n".join(tail)
        raise LaunchFailed(
            f"{cfg.stage} in {launch.local_processes()} processes exited with status {code}: {cause}\n{lines}"
        )
    return read_result(cfg.output_dir)
