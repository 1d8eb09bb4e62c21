"""Key renaming between the released (peft 0.4) agent checkpoint and today's peft, and LoRA merging.

peft 0.4 stored a LoRA-wrapped linear's frozen weight as ``...q_proj.weight``; peft >= 0.7 nests it as
``...q_proj.base_layer.weight``. The ``lora_A.default``/``lora_B.default`` and ``original_module``/
``modules_to_save.default`` names did not change (the released agent checkpoints' key names).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

import torch

from seed_story.checkpoints.safe_load import StateDict

PEFT_PREFIX = "llm.base_model.model."
_LORA_TARGET = re.compile(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.(weight|bias)$")


def drop_rotary_buffers(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """``rotary_emb.inv_freq`` is recomputed from the config; old modeling files persisted it."""
    return {k: v for k, v in state_dict.items() if not k.endswith("rotary_emb.inv_freq")}


def peft04_to_current(state_dict: Mapping[str, torch.Tensor], model_keys: Collection[str]) -> StateDict:
    """Rename peft 0.4 base-weight keys to the ``base_layer`` form wherever the model expects that form.

    Keys the model already knows are kept as they are, so the function is idempotent and also accepts
    checkpoints saved by this project.
    """
    keys = set(model_keys)
    out: StateDict = {}
    for key, value in state_dict.items():
        if key not in keys and _LORA_TARGET.search(key):
            new = _LORA_TARGET.sub(r".\1.base_layer.\2", key)
            if new in keys:
                key = new
        out[key] = value
    return out


def current_to_peft04(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The inverse rename, to write checkpoints the original code can read."""
    return {k.replace(".base_layer.", "."): v for k, v in state_dict.items()}


def merge_lora_state_dict(
    state_dict: Mapping[str, torch.Tensor], scaling: float, *, prefix: str = PEFT_PREFIX
) -> tuple[StateDict, StateDict]:
    """Fold LoRA into plain Llama weights: ``W = W_base + scaling * B @ A``.

    Accepts either key form. Returns ``(llama_state_dict, other)`` where the first uses plain
    ``transformers.LlamaForCausalLM`` names (``model.layers.N...``, ``lm_head.weight``), norms take their
    trained ``modules_to_save`` copy, and ``other`` holds the non-LLM keys (the resamplers).
    """
    llama: StateDict = {}
    other: StateDict = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in drop_rotary_buffers(state_dict).items():
        if not key.startswith(prefix):
            other[key] = value
            continue
        name = key[len(prefix) :].replace(".base_layer.", ".")
        if m := re.match(r"(.+)\.lora_([AB])\.default\.weight$", name):
            lora.setdefault(m.group(1), {})[m.group(2)] = value
        elif ".original_module." in name:
            continue
        else:
            llama[name.replace(".modules_to_save.default.", ".")] = value
    for module, ab in lora.items():
        if set(ab) != {"A", "B"}:
            raise ValueError(f"LoRA pair incomplete for {module}: has only {sorted(ab)}")
        base_key = f"{module}.weight"
        if base_key not in llama:
            raise ValueError(f"cannot merge LoRA into {base_key}: the base weight is not in the checkpoint")
        base = llama[base_key]
        delta = (ab["B"].float() @ ab["A"].float()) * scaling
        llama[base_key] = (base.float() + delta).to(base.dtype)
    return llama, other
