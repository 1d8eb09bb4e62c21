"""Plan a training run's GPU memory before renting the GPUs: ``seed-story train plan``.

The stage's networks are built on the ``meta`` device (no memory, any size) and the stage's own task object
(:mod:`seed_story.training.stages`) makes the same parameters trainable and moves the same networks, in the
same dtypes, as the trainer does. From that:

- weights: every network the stage puts on the GPU, as it holds them (the trained module's trainable
  parameters in float32 and its frozen ones, like the frozen networks, in the mixed-precision dtype,
  ``FROZEN_DTYPES``; under FSDP the module's shards are all float32);
- gradients: one per trainable parameter, in its dtype (float32); AdamW: ``exp_avg`` and ``exp_avg_sq`` per
  trainable parameter plus a float32 ``step`` per tensor;
- activations per micro-batch, with and without gradient checkpointing: :mod:`seed_story.training.activations`.

Per GPU, with N processes (F frozen networks, M the trained module's weights (M_32: all float32), P its
parameters, T its
trainable parameters, G gradients, O AdamW state, c the compute dtype's bytes, A the activation peak)::

    one GPU     F + M + G + O + A
    DDP         F + M + 2G + O + A            the reducer's buckets are a second copy of the gradients
    FSDP        F + (M_32 + G + O) / N + 2U c + U_t 4 + A'
                                              (torch's fully_shard on seed_story.training.sharding's units: the
                                              largest unit U (U_t trainable) gathered with its prefetched
                                              neighbour, and its unsharded float32 gradients)
    ZeRO-2      F + P c + (T 4 + G + O) / N + 4e8 c + A'
                                              (DeepSpeed holds the module in c bytes with a float32 master copy of
                                              the trainable part sharded like the gradients and AdamW; the
                                              release's 2e8-element reduce and all-gather buckets)

A' is A without autocast's weight casts (both run the module's matmuls on c-byte weights). A launch fits a card
when its bytes stay within the card less ``Headroom`` (10% for fragmentation and 1 GiB for the CUDA context).

Example::

    plan = plan_training(load_train_config("configs/train/george_stage2.yaml"), gpu_gib=[48])
    [f for f in plan.fits if f.gpu_gib == 80 and f.gradient_checkpointing]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from seed_story.checkpoints.native import MANIFEST, read_manifest
from seed_story.components import build_random
from seed_story.config import ModelConfig, StrictModel
from seed_story.presets import from_preset
from seed_story.training.activations import (
    FLOAT32,
    Precision,
    StageActivations,
    denoising_units,
    mllm_forward,
    stage2_units,
    vae_encode,
    vit_forward,
)
from seed_story.training.config import StoryStreamData, ToyData, TrainConfig
from seed_story.training.run import build_task
from seed_story.training.sharding import shard_units
from seed_story.training.stages import StageTask
from seed_story.training.trainer import FROZEN_DTYPES, cast_frozen

GIB = 1024**3
CARDS_GIB = (24.0, 40.0, 80.0, 141.0)  # RTX 4090 / L4-class, A100-40G, A100/H100-80G, H200
GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)
REFERENCE_MAX_LENGTH = 1280  # the release's data configs: longer sequences are dropped
REFERENCE_PICTURES = 10  # StoryStream chunks of 10 pictures (the release's chunking; ingest-storystream's default)
DEEPSPEED_BUCKETS = 4 * 10**8  # elements: the release's ZeRO-2 reduce and all-gather buckets, 2e8 each
NETWORKS = ("visual_tokenizer", "mllm", "detokenizer", "vae")
PLANNED_STAGES = ("stage1", "stage2", "stage3")
Mode = Literal["one_gpu", "ddp", "fsdp", "zero2"]
MODES: tuple[Mode, ...] = ("one_gpu", "ddp", "fsdp", "zero2")


class Workload(StrictModel):
    """One micro-batch on one GPU: what the activation estimate scales with."""

    batch_size: int = Field(gt=0, description="samples per GPU per forward (the data section's batch_size)")
    seq_len: int = Field(gt=0, description="tokens per sequence (stages 2 and 3): data.max_length, padded to it")
    pictures_per_sample: int = Field(gt=0, description="pictures per sequence (stage 1: 1, the target)")
    vit_size: int = Field(gt=0, description="ViT input side in pixels")
    sd_size: int = Field(gt=0, description="stages 1/3: the de-tokenizer's picture side in pixels")
    dropout_mask_bytes: int = Field(1, gt=0, description="bytes per dropout-mask element: 1 on CUDA, 4 on CPU")


class NetworkParams(StrictModel):
    network: str
    parameters: int
    trainable: int
    dtype: str = Field(description="the dtype its floating-point weights are held in during training")
    weight_bytes: int
    on_gpu: bool = Field(description="whether the stage moves it to the GPU (unused networks stay on the CPU)")


class StaticMemory(StrictModel):
    """Bytes that do not depend on the batch, before any sharding."""

    module_parameters: int = Field(description="parameters of the trained module, trainable and frozen")
    module_bytes: int = Field(
        description="the trained module unsharded: trainable float32, frozen in the compute dtype"
    )
    sharded_module_bytes: int = Field(description="the trained module as FSDP shards it: every parameter float32")
    trainable_parameters: int
    frozen_networks_bytes: int = Field(description="the frozen networks the stage puts on the GPU")
    gradient_bytes: int
    optimizer_bytes: int
    shard_unit_parameters: int = Field(description="the largest FSDP unit's parameters")
    shard_unit_trainable: int


class ActivationEstimate(StrictModel):
    """Activation bytes of one micro-batch (see :mod:`seed_story.training.activations`)."""

    gradient_checkpointing: bool
    saved_bytes: int = Field(description="what autograd keeps from the forward for backward")
    working_bytes: int = Field(description="backward's extra: about one unit's activations")
    frozen_forward_bytes: int = Field(description="the frozen networks' no-grad working set, before the forward")
    kept_bytes: int = Field(description="frozen networks' outputs alive through the step (features, latents)")
    weight_cast_bytes: int = Field(description="autocast's copies of float32 weights, part of saved + working")
    peak_bytes: int = Field(description="kept + the larger of the frozen forward and saved + working")

    @property
    def peak_without_casts(self) -> int:
        """The peak when the module's matmuls run on weights already in the compute dtype (FSDP, DeepSpeed)."""
        gradable = self.saved_bytes + self.working_bytes - self.weight_cast_bytes
        return self.kept_bytes + max(self.frozen_forward_bytes, gradable)


class Headroom(StrictModel):
    """What a card keeps back: a share for the allocator's fragmentation and a fixed CUDA context."""

    fraction: float = Field(0.10, ge=0, lt=1)
    fixed_gib: float = Field(1.0, ge=0)

    def usable_bytes(self, gpu_gib: float) -> int:
        return int(gpu_gib * GIB * (1 - self.fraction) - self.fixed_gib * GIB)


class LaunchFit(StrictModel):
    """The fewest GPUs of one card size that a launch mode needs (None: more than the largest count tried)."""

    gpu_gib: float
    mode: Mode
    gradient_checkpointing: bool
    gpus: int | None
    per_gpu_bytes: int = Field(description="at ``gpus``, or at the largest count tried when nothing fits")
    usable_bytes: int


class TrainingPlan(StrictModel):
    """Parameters, memory and launch fits of one stage's training run, from :func:`plan_training`."""

    stage: str
    model: str
    mixed_precision: str
    gradient_checkpointing: bool = Field(description="what the config asks for")
    workload: Workload
    networks: list[NetworkParams]
    memory: StaticMemory
    activations: list[ActivationEstimate] = Field(description="without, then with gradient checkpointing")
    headroom: Headroom
    fits: list[LaunchFit]
    parameters: int = Field(description="all networks' parameters")
    trainable_parameters: int

    def activation(self, checkpointing: bool) -> ActivationEstimate:
        return next(a for a in self.activations if a.gradient_checkpointing == checkpointing)


def model_config(cfg: TrainConfig) -> ModelConfig:
    """The architecture ``cfg`` trains, read without loading weights: a native ``init``'s manifest, else the preset
    (a released folder is read at the preset's sizes); a native ``detokenizer_init`` brings its own de-tokenizer."""
    model = from_preset(cfg.preset)
    if cfg.init is not None and (Path(cfg.init) / MANIFEST).is_file():
        model = read_manifest(cfg.init).model
    if cfg.detokenizer_init is not None and (Path(cfg.detokenizer_init) / MANIFEST).is_file():
        model = model.model_copy(update={"detokenizer": read_manifest(cfg.detokenizer_init).model.detokenizer})
    return model


def default_workload(cfg: TrainConfig, model: ModelConfig) -> Workload:
    """The config's micro-batch: its data batch size; StoryStream's max_length and sizes, or the reference's."""
    data = cfg.data
    if not isinstance(data, StoryStreamData | ToyData):
        raise ValueError(f"{cfg.stage} trains on {data.kind} data; the planner covers stages {PLANNED_STAGES}")
    stories = data if isinstance(data, StoryStreamData) else None
    return Workload(
        batch_size=data.batch_size,
        seq_len=stories.max_length if stories else REFERENCE_MAX_LENGTH,
        pictures_per_sample=1 if cfg.stage == "stage1" else (REFERENCE_PICTURES if stories else data.max_scenes),
        vit_size=(stories and stories.image_size) or model.vision.image_size,
        sd_size=(stories and stories.sd_size) or model.detokenizer.image_size,
    )


def _network_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _main_dtype(params: list[torch.nn.Parameter]) -> str:
    """The dtype that holds most of the parameters."""
    counts: dict[torch.dtype, int] = {}
    for p in params:
        counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
    return str(max(counts, key=lambda d: counts[d])).removeprefix("torch.")


def meta_task(cfg: TrainConfig, model: ModelConfig) -> tuple[StageTask, set[str]]:
    """The stage's task over networks on the meta device, moved as the trainer moves them; and the networks
    its ``to`` puts on the device (the trained module's, and the frozen ones it casts)."""
    with torch.random.fork_rng(devices=[]):  # build_random seeds the global generator
        parts = build_random(model, seed=cfg.seed, device="meta")
    task = build_task(cfg, parts)
    moved: set[str] = set()

    def recording(name: str, net: torch.nn.Module) -> Callable[..., torch.nn.Module]:
        def to(*args: Any, **kwargs: Any) -> torch.nn.Module:
            moved.add(name)
            return type(net).to(net, *args, **kwargs)

        return to

    for name in NETWORKS:  # an instance attribute shadows the method: record which networks task.to moves
        net = getattr(parts, name)
        net.to = recording(name, net)  # type: ignore[method-assign]
    try:
        task.to(torch.device("meta"), FROZEN_DTYPES[cfg.mixed_precision])
        cast_frozen(task.module, FROZEN_DTYPES[cfg.mixed_precision])  # as the unsharded trainer does
    finally:
        for name in NETWORKS:
            del getattr(parts, name).to  # the class's method again
    return task, moved | {name for name in NETWORKS if _trained(task, name)}


def _trained(task: StageTask, network: str) -> bool:
    """Whether ``network`` is (part of) the module the optimiser trains."""
    net = getattr(task.parts, network)
    return any(m is net for m in task.module.modules())


def _static_memory(task: StageTask, on_gpu: set[str]) -> StaticMemory:
    module = task.module
    trainable = [p for p in module.parameters() if p.requires_grad]
    claimed: set[int] = set()
    largest = (0, 0)
    for unit in [*shard_units(module), module]:  # innermost first: a unit owns what no inner unit took
        own = [p for p in unit.parameters() if id(p) not in claimed]
        claimed |= {id(p) for p in own}
        largest = max(largest, (sum(p.numel() for p in own), sum(p.numel() for p in own if p.requires_grad)))
    frozen = [getattr(task.parts, name) for name in sorted(on_gpu) if not _trained(task, name)]
    return StaticMemory(
        module_parameters=sum(p.numel() for p in module.parameters()),
        module_bytes=_network_bytes(module),
        sharded_module_bytes=sum(t.numel() * max(t.element_size(), FLOAT32) for t in module.parameters())
        + sum(t.numel() * t.element_size() for t in module.buffers()),
        trainable_parameters=sum(p.numel() for p in trainable),
        frozen_networks_bytes=sum(_network_bytes(n) for n in frozen),
        gradient_bytes=sum(p.numel() * p.element_size() for p in trainable),
        optimizer_bytes=sum(2 * p.numel() * p.element_size() + FLOAT32 for p in trainable),
        shard_unit_parameters=largest[0],
        shard_unit_trainable=largest[1],
    )


def stage_activations(
    task: StageTask, model: ModelConfig, workload: Workload, precision: Precision
) -> StageActivations:
    """The units, frozen working set and kept outputs of ``task``'s stage for ``workload``."""
    w, p = workload, precision
    b, features = w.batch_size, model.vision.n_queries * model.vision.output_dim * FLOAT32
    pictures = b * w.pictures_per_sample
    if task.stage == "stage2":
        units = stage2_units(task.parts.mllm, model, p, b, w.seq_len, w.pictures_per_sample)
        return StageActivations(units, vit_forward(model, p, pictures, w.vit_size), pictures * features)
    units, latent = denoising_units(task.parts.detokenizer, model, p, b, w.sd_size)
    latents = 3 * b * model.detokenizer.unet.in_channels * latent * latent * FLOAT32  # latents, noise, noisy
    frozen = max(vit_forward(model, p, pictures, w.vit_size), vae_encode(model, p, b, w.sd_size))
    if task.stage == "stage3":  # the frozen MLLM regresses the condition from the whole sequence
        frozen = max(frozen, mllm_forward(model, p, b, w.seq_len))
    return StageActivations(units, frozen, pictures * features + b * features + latents)


def _estimate(acts: StageActivations, checkpointing: bool) -> ActivationEstimate:
    saved, working = acts.saved(checkpointing), acts.working()
    casts = saved - acts.saved(checkpointing, with_casts=False) + working - acts.working(with_casts=False)
    return ActivationEstimate(
        gradient_checkpointing=checkpointing,
        saved_bytes=saved,
        working_bytes=working,
        frozen_forward_bytes=acts.frozen_forward,
        kept_bytes=acts.kept,
        weight_cast_bytes=casts,
        peak_bytes=acts.kept + max(acts.frozen_forward, saved + working),
    )


def per_gpu_bytes(memory: StaticMemory, act: ActivationEstimate, mode: Mode, gpus: int, compute: int) -> int:
    """Bytes one GPU holds in ``mode`` with ``gpus`` processes (formulas in the module docstring)."""
    m = memory
    if mode == "one_gpu" or gpus == 1:
        return m.frozen_networks_bytes + m.module_bytes + m.gradient_bytes + m.optimizer_bytes + act.peak_bytes
    if mode == "ddp":
        return m.frozen_networks_bytes + m.module_bytes + 2 * m.gradient_bytes + m.optimizer_bytes + act.peak_bytes
    if mode == "fsdp":
        sharded = (m.sharded_module_bytes + m.gradient_bytes + m.optimizer_bytes) // gpus
        gathered = 2 * m.shard_unit_parameters * compute + m.shard_unit_trainable * FLOAT32
        return m.frozen_networks_bytes + sharded + gathered + act.peak_without_casts
    master = m.trainable_parameters * FLOAT32 if compute < FLOAT32 else 0
    sharded = (master + m.gradient_bytes + m.optimizer_bytes) // gpus
    weights = m.module_parameters * compute + DEEPSPEED_BUCKETS * compute
    return m.frozen_networks_bytes + weights + sharded + act.peak_without_casts


def launch_fits(
    memory: StaticMemory,
    activations: list[ActivationEstimate],
    cards: Iterable[float],
    headroom: Headroom,
    compute: int,
) -> list[LaunchFit]:
    """For every card, launch mode and checkpointing choice: the fewest GPUs that fit (one GPU: 1 or none)."""
    fits = []
    for gib in cards:
        usable = headroom.usable_bytes(gib)
        for act in activations:
            for mode in MODES:
                counts = (1,) if mode == "one_gpu" else GPU_COUNTS[1:]
                sizes = [(n, per_gpu_bytes(memory, act, mode, n, compute)) for n in counts]
                fitting = [(n, size) for n, size in sizes if size <= usable]
                gpus, size = fitting[0] if fitting else (None, sizes[-1][1])
                fits.append(LaunchFit(gpu_gib=gib, mode=mode, gradient_checkpointing=act.gradient_checkpointing,
                                      gpus=gpus, per_gpu_bytes=size, usable_bytes=usable))  # fmt: skip
    return fits


def plan_training(
    cfg: TrainConfig,
    gpu_gib: list[float] | None = None,
    *,
    workload: Workload | None = None,
    model: ModelConfig | None = None,
    headroom: Headroom | None = None,
) -> TrainingPlan:
    """Plan ``cfg``'s run on the meta device: parameters, memory and which launch fits which card.

    ``gpu_gib`` adds card sizes to the standard 24, 40, 80 and 141 GiB; ``workload`` and ``model`` replace what
    the config implies (:func:`default_workload`, :func:`model_config`).

    Example::

        plan = plan_training(load_train_config("configs/train/george_stage2.yaml"))
        plan.memory.optimizer_bytes / 2**30  # AdamW state in GiB
    """
    if cfg.stage not in PLANNED_STAGES:
        raise ValueError(f"the planner covers stages {', '.join(PLANNED_STAGES)}, not {cfg.stage}")
    model = model or model_config(cfg)
    workload = workload or default_workload(cfg, model)
    headroom = headroom or Headroom()
    task, on_gpu = meta_task(cfg, model)
    compute = 2 if cfg.mixed_precision in ("bf16", "fp16") else FLOAT32
    acts = stage_activations(task, model, workload, Precision(compute, workload.dropout_mask_bytes))
    activations = [_estimate(acts, checkpointing) for checkpointing in (False, True)]
    memory = _static_memory(task, on_gpu)
    networks = []
    for name in NETWORKS:
        net = getattr(task.parts, name)
        params = list(net.parameters())
        networks.append(NetworkParams(
            network=name,
            parameters=sum(p.numel() for p in params),
            trainable=sum(p.numel() for p in params if p.requires_grad),
            dtype=_main_dtype(params),
            weight_bytes=_network_bytes(net),
            on_gpu=name in on_gpu,
        ))  # fmt: skip
    cards = sorted({*CARDS_GIB, *(gpu_gib or [])})
    return TrainingPlan(
        stage=cfg.stage,
        model=model.name,
        mixed_precision=cfg.mixed_precision,
        gradient_checkpointing=cfg.gradient_checkpointing,
        workload=workload,
        networks=networks,
        memory=memory,
        activations=activations,
        headroom=headroom,
        fits=launch_fits(memory, activations, cards, headroom, compute),
        parameters=sum(n.parameters for n in networks),
        trainable_parameters=sum(n.trainable for n in networks),
    )
