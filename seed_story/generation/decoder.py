"""A lean inference forward of the MLLM's Llama over a :class:`StoryKV`.

It computes exactly what ``transformers``' Llama computes (same RMSNorm, RoPE, SDPA, SiLU-gated MLP, in
the same dtypes) and reads the model's own weight tensors, but skips the generic machinery around every
call (output recorders, mask builders, cache objects, peft wrappers), which dominates decode time for
small models and launch-bound GPUs alike. LoRA must be merged into the base weights first
(:func:`merge_lora_for_inference`); the trained norm copies of peft's ``modules_to_save`` are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils import ModulesToSaveWrapper
from torch import nn

from seed_story.generation.kv import StoryKV
from seed_story.generation.rope import Rope
from seed_story.models.mllm import SeedStoryMLLM


def merge_lora_for_inference(mllm: SeedStoryMLLM) -> None:
    """Fold LoRA into the base weights in place (undo with ``mllm.llm.unmerge_adapter()`` to train again)."""
    if isinstance(mllm.llm, PeftModel) and any(isinstance(m, LoraLayer) and not m.merged for m in mllm.llm.modules()):
        mllm.llm.merge_adapter()


def _linear(module: nn.Module) -> nn.Linear:
    if isinstance(module, LoraLayer):
        if not module.merged:
            raise ValueError("LoRA is not merged: call merge_lora_for_inference(mllm) first")
        return module.get_base_layer()
    return module


def _norm(module: nn.Module) -> nn.Module:
    if isinstance(module, ModulesToSaveWrapper):
        if module.disable_adapters:
            return module.original_module
        return module.modules_to_save[module.active_adapters[0]]
    return module


def _lin(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    return F.linear(x, linear.weight, linear.bias)


def rms_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalise in float32, cast back, then scale in the input dtype."""
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return F.rms_norm(x, x.shape[-1:], norm.weight, eps=norm.variance_epsilon)  # same math, one kernel
    h = F.rms_norm(x.float(), x.shape[-1:], eps=norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


class LlamaDecoder:
    """Runs the decoder stack on input embeddings, appending to a :class:`StoryKV`; returns post-norm states.

    Example::

        merge_lora_for_inference(mllm)
        decoder = LlamaDecoder(mllm)
        hidden = decoder(embeds, kv, valid)   # (B, w, D); kv grows by w slots
    """

    def __init__(self, mllm: SeedStoryMLLM) -> None:
        model = mllm.language_model
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        if cfg.hidden_act != "silu":
            raise ValueError(f"only SiLU-gated Llama MLPs are supported, got {cfg.hidden_act!r}")
        self.layers = [
            (
                _norm(layer.input_layernorm),
                _linear(layer.self_attn.q_proj),
                _linear(layer.self_attn.k_proj),
                _linear(layer.self_attn.v_proj),
                _linear(layer.self_attn.o_proj),
                _norm(layer.post_attention_layernorm),
                _linear(layer.mlp.gate_proj),
                _linear(layer.mlp.up_proj),
                _linear(layer.mlp.down_proj),
            )
            for layer in model.layers
        ]
        self.final_norm = _norm(model.norm)
        self.rope = Rope.from_rotary(model.rotary_emb)
        self.scale = self.head_dim**-0.5

    def new_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> StoryKV:
        return StoryKV(
            num_layers=len(self.layers),
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            rope=self.rope,
        )

    def __call__(self, embeds: torch.Tensor, kv: StoryKV, valid: torch.Tensor) -> torch.Tensor:
        positions, mask = kv.prepare(valid)
        b, w, _ = embeds.shape
        cos, sin = self.rope.lookup(positions, embeds.dtype)
        x = embeds
        for i, (ln1, q_proj, k_proj, v_proj, o_proj, ln2, gate, up, down) in enumerate(self.layers):
            h = rms_norm(x, ln1)
            q = _lin(h, q_proj).view(b, w, self.heads, self.head_dim).transpose(1, 2)
            k = _lin(h, k_proj).view(b, w, self.kv_heads, self.head_dim).transpose(1, 2)
            v = _lin(h, v_proj).view(b, w, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self.rope.apply(q, cos, sin), self.rope.apply(k, cos, sin)
            keys, values = kv.append(i, k, v)
            attn = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, scale=self.scale, enable_gqa=self.kv_heads != self.heads
            )
            x = x + _lin(attn.transpose(1, 2).reshape(b, w, -1), o_proj)
            h = rms_norm(x, ln2)
            x = x + _lin(F.silu(_lin(h, gate)) * _lin(h, up), down)
        kv.commit(valid, positions)
        return rms_norm(x, self.final_norm)
