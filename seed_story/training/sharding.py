"""Sharded data parallelism for the trainer: torch's own FSDP2 (``fully_shard``), the same on GPUs and CPUs.

Every process keeps 1/N of each parameter, of its gradient and of its AdamW state; a unit's parameters are
all-gathered just before its forward (and again for its backward) and freed after. The units are the repeated
blocks, so at the released size no process ever holds more than one or two blocks in full:

- the MLLM (stage 2): each Llama decoder layer (~204 M parameters at 7B), ``embed_tokens`` and ``lm_head``
  (~131 M each); the root keeps the two resamplers (~137 M) and the final norm.
- the de-tokenizer's UNet (stages 1 and 3): each ``Transformer2DModel`` (up to ~351 M in SDXL's deepest
  blocks), then each down/mid/up block (its ResNets and samplers, up to ~140 M), then the UNet itself
  (embeddings, conv_in/out); the root keeps the detokenizer's resampler (~61 M). Sharding only whole blocks
  would gather SDXL's ``up_blocks[0]`` (1.2 B parameters) at once.

Any other module is one unit. Frozen and trainable parameters share units (FSDP2 reduces only the gradients
that exist). A checkpoint's model and optimizer state is written by every process for its own shards with
``torch.distributed.checkpoint``; the exported model is gathered in full.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from diffusers import UNet2DConditionModel
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from seed_story.models.mllm import SeedStoryMLLM

SHARDED_STATE = "sharded_state"  # the folder, inside checkpoint-{step}/, of the sharded module and AdamW state


def shard_units(module: nn.Module) -> list[nn.Module]:
    """The submodules of ``module`` that become FSDP units of their own, innermost first (``module`` excluded)."""
    units: list[nn.Module] = []
    for sub in module.modules():
        if isinstance(sub, SeedStoryMLLM):
            lm = sub.language_model
            units += [*lm.layers, lm.embed_tokens, sub.lm_head]
        elif isinstance(sub, UNet2DConditionModel):
            blocks = [*sub.down_blocks, sub.mid_block, *sub.up_blocks]
            attentions = [attn for block in blocks for attn in getattr(block, "attentions", [])]
            units += [*attentions, *blocks, sub]
    return units


def mixed_precision_policy(mixed_precision: str) -> MixedPrecisionPolicy:
    """bf16: units are gathered in bf16 (half the traffic and memory of fp32) while the shards, AdamW and the
    gradients' reduction stay fp32. Inputs are not cast: the forward still runs under accelerate's autocast,
    which keeps losses and normalisations in fp32 as in an unsharded run."""
    if mixed_precision == "fp16":
        raise ValueError(
            "sharding fsdp trains with mixed_precision bf16 or no: fp16 would need a loss scaler over sharded "
            "gradients (use bf16, or sharding none)"
        )
    if mixed_precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False)
    return MixedPrecisionPolicy()


def shard_module(module: nn.Module, device: torch.device, processes: int, mixed_precision: str) -> FSDPModule:
    """Apply ``fully_shard`` to ``module``'s units and then to ``module`` itself (in place; it is returned).

    Call it before moving ``module`` to the GPU: FSDP moves one unit at a time as it shards, so no device ever
    holds the whole module. Build the optimizer afterwards, over the sharded parameters.

    Example::

        model = shard_module(task.module, accelerator.device, accelerator.num_processes, "bf16")
        optimizer = torch.optim.AdamW(p for p in model.parameters() if p.requires_grad)
    """
    mesh = init_device_mesh(device.type, (processes,))
    policy = mixed_precision_policy(mixed_precision)
    for unit in shard_units(module):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    return fully_shard(module, mesh=mesh, mp_policy=policy)


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients so that their global L2 norm (over every process's shards) is at most ``max_norm``;
    returns that norm before clipping, as ``torch.nn.utils.clip_grad_norm_`` does."""
    params = [p for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0)
    if isinstance(total, DTensor):  # the norm of sharded gradients: reduce it to the global value
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def save_sharded(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Write the sharded module and AdamW state into ``directory``: every process its own shards (collective)."""
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(directory))


def load_sharded(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Restore what :func:`save_sharded` wrote into the sharded ``model`` and ``optimizer`` (collective)."""
    # A fresh optimizer has no state yet: get_state_dict initialises it (a step at learning rate 0) so that
    # there is something to load into.
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=str(directory))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The sharded module's whole state dict, on the CPU of the main process (empty elsewhere; collective)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
