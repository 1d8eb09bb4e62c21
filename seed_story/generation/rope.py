"""Rotary position embedding, as Llama applies it, plus re-rotating cached keys to new positions."""

from __future__ import annotations

import torch
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding


class Rope:
    """cos/sin tables for arbitrary (B, w) positions, and key re-rotation R(p + d) k = R(d) R(p) k.

    Only plain RoPE composes this way; scaled variants (yarn, dynamic, llama3) are refused.
    """

    def __init__(self, inv_freq: torch.Tensor, attention_scaling: float = 1.0) -> None:
        self.inv_freq = inv_freq.float()
        self.attention_scaling = attention_scaling
        # Per (device, dtype): cos and signed-sin rows for positions 0..n-1, grown by doubling. Decoding looks
        # rows up instead of recomputing them (a handful of kernel launches per token saved).
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_rotary(cls, rotary: LlamaRotaryEmbedding) -> Rope:
        rope_type = getattr(rotary, "rope_type", "default")
        if rope_type != "default" or rotary.attention_scaling != 1.0:
            raise ValueError(f"story KV re-positioning supports plain RoPE only, got {rope_type!r}")
        return cls(rotary.inv_freq, rotary.attention_scaling)

    def lookup(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Same values as :meth:`tables` for non-negative positions, read from a cached table."""
        key = (positions.device, dtype)
        cos, sin = self._cache.get(key, (None, None))
        needed = int(positions.max()) + 1 if positions.numel() else 1
        if cos is None or cos.shape[0] < needed:
            size = max(256, 1 << (needed - 1).bit_length())
            cos, sin = self.tables(torch.arange(size, device=positions.device)[None], dtype)
            cos, sin = cos[0, 0], sin[0, 0]
            self._cache[key] = (cos, sin)
        return cos[positions][:, None], sin[positions][:, None]

    def tables(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin (B, 1, w, head_dim), computed in float32 like transformers, cast to ``dtype``.

        The sine's first half is negated so that :meth:`apply` can use one ``roll`` instead of
        ``rotate_half``'s slice, negate and concatenate: roll(x) * [-s, s] == rotate_half(x) * [s, s].
        """
        inv_freq = self.inv_freq.to(positions.device)
        freqs = positions[..., None].float() * inv_freq
        cos = torch.cat((freqs, freqs), dim=-1).cos() * self.attention_scaling
        sin = freqs.sin() * self.attention_scaling
        sin = torch.cat((-sin, sin), dim=-1)
        return cos.to(dtype)[:, None], sin.to(dtype)[:, None]

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate (B, heads, w, d) queries or keys with tables from :meth:`tables`."""
        return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin

    def rotate(self, keys: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Move already-rotated keys (B, h, L, d) by ``delta`` (B, L) positions, in float32."""
        cos, sin = self.tables(delta, torch.float32)
        return self.apply(keys.float(), cos, sin).to(keys.dtype)
