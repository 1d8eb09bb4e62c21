"""The perceiver resampler shared by the ViT's attention pool and the MLLM's input/output resamplers.

One cross-attention layer: ``grid**2`` learned queries attend to a square grid of input tokens. Query
positions use the fixed 2-D sin-cos table; key positions use the same table bicubically resized to the
input grid, so a resampler trained on 16x16 inputs reads 8x8 ones and vice versa (the release's Resampler).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seed_story.config import ResamplerConfig


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos table (grid**2, dim), MAE recipe: first half encodes the column, second the row."""
    if dim % 4:
        raise ValueError(f"sin-cos embedding needs dim divisible by 4, got {dim}")
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


def resize_grid_embed(embed: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Bicubically resize a square (grid**2, dim) position table to ``num_tokens`` positions.

    Done in float32 and cast back, as the reference does; a no-op when the sizes already agree.
    """
    src = math.isqrt(embed.shape[0])
    dst = math.isqrt(num_tokens)
    if src * src != embed.shape[0] or dst * dst != num_tokens:
        raise ValueError(f"position tables must be square grids, got {embed.shape[0]} -> {num_tokens} tokens")
    if src == dst:
        return embed
    grid = embed.float().reshape(1, src, src, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(dst * dst, -1).to(embed.dtype)


class Resampler(nn.Module):
    """(B, L, kv_dim) with L a square number -> (B, grid**2, embed_dim).

    Example::

        r = Resampler(ResamplerConfig(grid=8, embed_dim=4096, num_heads=32, kv_dim=4096))
        r(torch.randn(2, 256, 4096)).shape  # (2, 64, 4096)
    """

    def __init__(self, cfg: ResamplerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n, d = cfg.num_queries, cfg.embed_dim
        self.query = nn.Parameter(torch.empty(n, d))
        # Fixed table, kept in the state dict (the released checkpoints carry it) but never trained.
        self.pos_embed = nn.Parameter(sincos_pos_embed_2d(d, cfg.grid), requires_grad=False)
        self.kv_proj = nn.Linear(cfg.kv_dim, d, bias=False) if cfg.kv_dim != d else nn.Identity()
        self.attn = nn.MultiheadAttention(d, cfg.num_heads, batch_first=True)
        self.ln_q = nn.LayerNorm(d, eps=cfg.eps)
        self.ln_kv = nn.LayerNorm(d, eps=cfg.eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.query, std=0.02)
        with torch.no_grad():
            self.pos_embed.copy_(sincos_pos_embed_2d(self.cfg.embed_dim, self.cfg.grid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos_k = resize_grid_embed(self.pos_embed, x.shape[1]).to(x.dtype)
        x = self.ln_kv(self.kv_proj(x))
        query = (self.ln_q(self.query) + self.pos_embed).to(x.dtype)
        query = query.unsqueeze(0).expand(x.shape[0], -1, -1)
        # Keys carry positions, values do not (the release's Resampler).
        out, _ = self.attn(query, x + pos_k, x, need_weights=False)
        return out
