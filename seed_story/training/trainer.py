"""One trainer for the three stages, on ``accelerate`` (the release's training scripts).

An optimiser step consumes ``gradient_accumulation_steps`` batches. Every ``save_every`` steps the trainer
writes ``checkpoints/checkpoint-{step}/``: ``accelerator.save_state`` (trainable module, AdamW state, LR
schedule, python/numpy/torch RNG) plus ``trainer_state.json`` (step, batches consumed), written last so a
folder with it is complete. Resuming restores all of it and skips the batches already consumed, so an
interrupted run ends with exactly the weights of an uninterrupted one.

A resumable data source (``data_state``, e.g. ``StoryStreamDataset``) is not skipped through: it sees every
consumed batch (``observe``), each rank writes its ``state_dict()`` as ``data_state-{rank}.json`` beside the
checkpoint, and a resumed run restores it with ``load_state_dict`` before the first batch is drawn.

With ``sharding="fsdp"`` (N launched processes) the trained module is sharded with torch's ``fully_shard``
(``seed_story.training.sharding``) instead of being wrapped in DDP: its parameters, gradients and AdamW state are
split across the processes, and a checkpoint keeps them in ``sharded_state/`` (torch.distributed.checkpoint,
each process writing its shards) beside accelerate's LR schedule and per-rank RNG states. The final export
gathers the whole module and is written once, by the main process.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from torch import nn

from seed_story.checkpoints.native import save_checkpoint
from seed_story.training.config import TrainConfig
from seed_story.training.metrics import MetricsLog
from seed_story.training.schedule import build_lr_scheduler
from seed_story.training.sharding import (
    SHARDED_STATE,
    clip_grad_norm,
    full_state_dict,
    load_sharded,
    mixed_precision_policy,
    save_sharded,
    shard_module,
)
from seed_story.training.stages import StageTask

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
FROZEN_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ResumableData(Protocol):
    """A data source that records what was consumed and continues from a saved state (``StoryStreamDataset``)."""

    def observe(self, batch: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def data_state_file(rank: int) -> str:
    """The file a rank's data-source state is saved in, inside a checkpoint folder."""
    return f"data_state-{rank}.json"


@dataclass
class TrainResult:
    """Where a finished run put its outputs."""

    checkpoint: Path
    metrics_csv: Path
    metrics_jsonl: Path
    plot: Path
    steps: int
    losses: list[float]


def move_batch(batch: Any, device: torch.device) -> Any:
    """A copy of a (possibly nested) dataclass batch with every tensor on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if is_dataclass(batch) and not isinstance(batch, type):
        return replace(batch, **{f.name: move_batch(getattr(batch, f.name), device) for f in fields(batch)})
    return batch


def _number(value: torch.Tensor | None) -> float:
    # DeepSpeed clips inside its engine, and accelerate then returns no norm.
    return float("nan") if value is None else float(value)


class StateDictModule(nn.Module):
    """Stands in for a module whose full state dict was gathered elsewhere, so ``save_checkpoint`` can write it."""

    def __init__(self, state: dict[str, torch.Tensor], prefix: str = "") -> None:
        super().__init__()
        self._state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return dict(self._state)


def cast_frozen(module: nn.Module, dtype: torch.dtype) -> None:
    """Frozen parameters of the trained module (stage 2's Llama base weights, stage 1/3's UNet outside
    ``to_k``/``to_v``) in the mixed-precision dtype: they get no gradient and no AdamW state, and autocast runs
    them in that dtype anyway, so a float32 copy would only double their memory (13.5 GB at 7B)."""
    for param in module.parameters():
        if not param.requires_grad and param.dtype != dtype and param.is_floating_point():
            param.data = param.data.to(dtype)


def latest_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``directory``, if any."""
    done = [p.parent for p in directory.glob(f"checkpoint-*/{STATE_FILE}")]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


class Trainer:
    """Train ``task.module`` on ``batches`` as ``cfg`` says; :meth:`fit` returns a :class:`TrainResult`.

    ``batches`` is any iterable of batches the task understands; on resume it must yield the same batches
    from the beginning again (the trainer skips the ones already consumed), unless ``data_state`` is the
    resumable source behind it: then it is restored and ``batches`` must continue from where it stands.

    Example::

        parts = build_random(from_preset("tiny"))
        cfg = TrainConfig.for_stage("stage2", output_dir="runs/s2", max_steps=20, mixed_precision="no",
                                   data={"kind": "toy"})
        result = Trainer(cfg, Stage2Task(parts), toy_batches("stage2", cfg.data, parts, 0)).fit()
    """

    def __init__(
        self,
        cfg: TrainConfig,
        task: StageTask,
        batches: Iterable[Any],
        data_state: ResumableData | None = None,
        progress: Callable[[int, int], None] | None = None,
        sharding: Literal["none", "fsdp"] = "none",
    ) -> None:
        self.cfg = cfg
        self.progress = progress
        self.sharding = sharding
        if sharding == "fsdp":
            mixed_precision_policy(cfg.mixed_precision)  # refuses fp16 before anything is built
        self.sharded = False  # whether fit() sharded the module (FSDP in more than one process)
        self.task = task
        self.batches = batches
        self.data_state = data_state
        self.output_dir = Path(cfg.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"

    def fit(self) -> TrainResult:
        cfg = self.cfg
        set_seed(cfg.seed)
        acc = Accelerator(
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            step_scheduler_with_optimizer=False,
        )
        model, optimizer, scheduler = self._prepare(acc)

        step, consumed = self._resume(acc, model, optimizer)
        metrics = MetricsLog(self.output_dir, keep_until=step) if acc.is_main_process else None
        # Drawn only now, after _resume restored the data source: a DataLoader copies its dataset into the
        # workers when its iterator is made.
        skip = 0 if self.data_state is not None else consumed
        stream = itertools.islice(iter(self.batches), skip, None)
        model.train()
        if self.progress is not None and acc.is_main_process:
            self.progress(step, cfg.max_steps)
        while step < cfg.max_steps:
            started = time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            sums: dict[str, float] = {}
            grad_norm: torch.Tensor | None = None
            for _ in range(cfg.gradient_accumulation_steps):
                batch = next(stream)
                if self.data_state is not None:
                    self.data_state.observe(batch)
                batch = move_batch(batch, acc.device)
                consumed += 1
                with acc.accumulate(model), acc.autocast():
                    if self.sharded:  # FSDP has no no_sync: reduce-scatter on the accumulation's last batch only
                        model.set_requires_gradient_sync(acc.sync_gradients)
                    losses = self.task.loss(model, batch)
                    acc.backward(losses["loss"])
                    if acc.sync_gradients:  # once per optimiser step (step_scheduler_with_optimizer=False)
                        grad_norm = self._clip(acc, model)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                for key, value in losses.items():
                    mean = acc.reduce(value.detach().float(), reduction="mean")  # over data-parallel ranks
                    sums[key] = sums.get(key, 0.0) + float(mean) / cfg.gradient_accumulation_steps
            step += 1
            row = {"step": step, "lr": lr, **sums, "grad_norm": _number(grad_norm), "batches": consumed}
            row["seconds"] = round(time.perf_counter() - started, 4)
            if metrics is not None:
                metrics.append(row)
            if self.progress is not None and acc.is_main_process:
                self.progress(step, cfg.max_steps)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                log.info("%s step %d/%d loss %.4f lr %.3g", cfg.stage, step, cfg.max_steps, row["loss"], lr)
            if step % cfg.save_every == 0 or step == cfg.max_steps:
                self._save_state(acc, step, consumed, model, optimizer)
        return self._finish(acc, model, metrics, step)

    def _prepare(self, acc: Accelerator) -> tuple[nn.Module, Any, Any]:
        """The trained module (DDP-wrapped, or sharded), its AdamW and LR schedule, on ``acc.device``."""
        cfg = self.cfg
        self.sharded = self.sharding == "fsdp" and acc.num_processes > 1
        if self.sharding == "fsdp" and not self.sharded:
            log.warning("sharding fsdp in a single process: nothing to shard, training unsharded")
        if self.sharded:  # before task.to: FSDP moves one unit at a time to the device as it shards
            shard_module(self.task.module, acc.device, acc.num_processes, cfg.mixed_precision)
        self.task.to(acc.device, FROZEN_DTYPES[cfg.mixed_precision])
        if not self.sharded:  # FSDP2 wants one dtype per unit; its shards already divide the frozen weights by N
            cast_frozen(self.task.module, FROZEN_DTYPES[cfg.mixed_precision])
        params = [p for p in self.task.module.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{cfg.stage}: the task left no trainable parameter")
        optimizer = torch.optim.AdamW(
            params, lr=cfg.learning_rate, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
        scheduler = build_lr_scheduler(
            optimizer,
            warmup_steps=cfg.warmup_steps,
            max_steps=cfg.schedule_steps or cfg.max_steps,
            min_lr_ratio=cfg.min_lr_ratio,
        )
        if self.sharded:
            # prepare() would wrap the module in DDP, and save_state would pickle the main process's optimizer
            # shards as if they were the whole: accelerate keeps only the schedule (and the RNG states).
            return self.task.module, optimizer, acc.prepare(scheduler)
        return acc.prepare(self.task.module, optimizer, scheduler)

    def _clip(self, acc: Accelerator, model: nn.Module) -> torch.Tensor | None:
        if self.sharded:
            return clip_grad_norm(model.parameters(), self.cfg.max_grad_norm)
        return acc.clip_grad_norm_(model.parameters(), self.cfg.max_grad_norm)

    def _resume(self, acc: Accelerator, model: nn.Module, optimizer: Any) -> tuple[int, int]:
        """(step, batches consumed) of the newest checkpoint when resuming, else (0, 0)."""
        ckpt = latest_checkpoint(self.checkpoint_dir) if self.cfg.resume else None
        if ckpt is None:
            if self.cfg.resume:
                log.info("no checkpoint in %s: starting from step 0", self.checkpoint_dir)
            return 0, 0
        state = json.loads((ckpt / STATE_FILE).read_text())
        if state["stage"] != self.cfg.stage:
            raise ValueError(f"{ckpt} is a {state['stage']} checkpoint; this run is {self.cfg.stage}")
        if (ckpt / SHARDED_STATE).is_dir() != self.sharded:
            written = "a sharded (fsdp) run" if (ckpt / SHARDED_STATE).is_dir() else "an unsharded run"
            raise ValueError(f"{ckpt} was written by {written}: resume it with the sharding it was written with")
        acc.load_state(str(ckpt))
        if self.sharded:
            load_sharded(ckpt / SHARDED_STATE, model, optimizer)
        if self.data_state is not None:
            data_file = ckpt / data_state_file(acc.process_index)
            if not data_file.is_file():
                raise ValueError(f"{ckpt} has no {data_file.name}: it was not written by a run on this data source")
            self.data_state.load_state_dict(json.loads(data_file.read_text()))
        log.info("resumed from %s (step %d)", ckpt, state["step"])
        return int(state["step"]), int(state["batches_consumed"])

    def _save_state(self, acc: Accelerator, step: int, consumed: int, model: nn.Module, optimizer: Any) -> None:
        path = self.checkpoint_dir / f"checkpoint-{step}"
        acc.save_state(str(path))  # the LR schedule, every rank's RNG states and, unsharded, the module and AdamW
        if self.sharded:
            save_sharded(path / SHARDED_STATE, model, optimizer)
        if self.data_state is not None:  # every rank streams its own part of the data
            (path / data_state_file(acc.process_index)).write_text(json.dumps(self.data_state.state_dict(), indent=2))
        acc.wait_for_everyone()  # every rank's files are written before trainer_state.json marks the folder complete
        if acc.is_main_process:
            state = {"stage": self.cfg.stage, "step": step, "batches_consumed": consumed}
            (path / STATE_FILE).write_text(json.dumps(state, indent=2))
            done = sorted(
                (p.parent for p in self.checkpoint_dir.glob(f"checkpoint-*/{STATE_FILE}")),
                key=lambda p: int(p.name.split("-")[-1]),
            )
            for old in done[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old)
        acc.wait_for_everyone()

    def _gathered_state(self, acc: Accelerator, model: nn.Module) -> dict[str, nn.Module] | None:
        """Under FSDP the trained module's parameters are sharded: gather them (every rank takes part, the main
        process receives them) for the export."""
        part, prefix = self.task.export
        if self.sharded:
            return {part: StateDictModule(full_state_dict(model), prefix=prefix)}
        if acc.distributed_type != DistributedType.FSDP:
            return None
        return {part: StateDictModule(acc.get_state_dict(model), prefix=prefix)}

    def _finish(self, acc: Accelerator, model: nn.Module, metrics: MetricsLog | None, step: int) -> TrainResult:
        """Write the native checkpoint (every network + tokenizer, so ``load_components`` reads it) and the plot."""
        final = self.output_dir / "final"
        acc.wait_for_everyone()
        trained = self._gathered_state(acc, model)
        if (finalize := getattr(self.task, "finalize", None)) is not None:
            finalize()  # e.g. the VAE stage's latent scaling factor, stored in the checkpoint's config
        if acc.is_main_process:
            parts = self.task.parts
            modules: dict[str, nn.Module] = {
                "visual_tokenizer": parts.visual_tokenizer,
                "mllm": parts.mllm,
                "detokenizer": parts.detokenizer,
                "vae": parts.vae,
            }
            if trained is not None:
                modules.update(trained)
            meta = {"stage": self.cfg.stage, "steps": step, "train_config": self.cfg.model_dump(mode="json")}
            save_checkpoint(final, parts.config, modules, tokenizer=parts.tokenizer, metadata=meta)
        # Only the main process keeps metrics; the others return the same paths.
        plot = metrics.plot(f"{self.cfg.stage}: {step} steps") if metrics else self.output_dir / "loss.png"
        losses = [r["loss"] for r in metrics.rows] if metrics else []
        return TrainResult(
            checkpoint=final,
            metrics_csv=self.output_dir / "metrics.csv",
            metrics_jsonl=self.output_dir / "metrics.jsonl",
            plot=plot,
            steps=step,
            losses=losses,
        )
