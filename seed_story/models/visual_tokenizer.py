"""Visual tokenizer: the Qwen-VL ViT-G with its attention-pool resampler, and the image transform it expects.

Pictures go in as (B, 3, S, S) CLIP-normalised tensors and come out as (B, pool_grid**2, output_dim) "ViT
features": the MLLM's image input, its regression target and the de-tokenizer's condition (the release's ViT config,
qwen_vitg_448.yaml). Parameter names and shapes match the released ``qwen_vit_G.pt`` (no prefix), so it loads with
``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from seed_story.config import ResamplerConfig, VisionConfig
from seed_story.models.resampler import Resampler, resize_grid_embed

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class InterleavedSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention whose fused ``in_proj`` rows are [q_h0, k_h0, v_h0, q_h1, ...].

    The released weights store q/k/v head-major like this, unlike ``nn.MultiheadAttention``'s [Q; K; V], so
    the projection output is split per head rather than in three thirds.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        qkv = self.in_proj(x).view(b, n, self.heads, -1).transpose(1, 2)  # (B, heads, N, 3 * head_dim)
        q, k, v = qkv.chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)  # no mask: every patch sees every patch
        return self.out_proj(out.transpose(1, 2).reshape(b, n, w))


class ResidualBlock(nn.Module):
    """Pre-LN transformer block: x += attn(ln_1(x)); x += mlp(ln_2(x)), exact GELU."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        w, hidden = cfg.width, cfg.mlp_width
        self.ln_1 = nn.LayerNorm(w, eps=cfg.eps)
        self.attn = InterleavedSelfAttention(w, cfg.heads)
        self.ln_2 = nn.LayerNorm(w, eps=cfg.eps)
        # Named children give the checkpoint's ``mlp.c_fc`` / ``mlp.c_proj`` keys.
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(w, hidden), gelu=nn.GELU(), c_proj=nn.Linear(hidden, w)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class VisualTokenizer(nn.Module):
    """(B, 3, S, S) normalised images -> (B, pool_grid**2, output_dim) ViT features.

    Example::

        vit = VisualTokenizer(from_preset("tiny").vision)
        pixels = image_transform_batch([Image.new("RGB", (80, 60))], size=vit.cfg.image_size)
        vit(pixels).shape  # (1, 64, 64)
    """

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.pos_embed_grid**2, w))
        self.ln_pre = nn.LayerNorm(w, eps=cfg.eps)
        # A ModuleDict rather than a class of its own: it only exists to produce ``transformer.resblocks.{i}``.
        self.transformer = nn.ModuleDict({"resblocks": nn.ModuleList(ResidualBlock(cfg) for _ in range(cfg.layers))})
        pool = ResamplerConfig(
            grid=cfg.pool_grid,
            embed_dim=cfg.output_dim,
            num_heads=cfg.output_dim // cfg.pool_head_dim,
            kv_dim=w,
            eps=cfg.eps,
        )
        self.attn_pool = Resampler(pool)
        self.ln_post = nn.LayerNorm(cfg.output_dim, eps=cfg.eps)
        self.proj = nn.Parameter(torch.empty(cfg.output_dim, cfg.output_dim))  # used as x @ proj, not a Linear
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Only tests and from-scratch runs see these values; the released checkpoint overwrites them all.
        nn.init.normal_(self.positional_embedding, std=0.02)
        nn.init.normal_(self.proj, std=self.cfg.output_dim**-0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = images.to(device=self.proj.device, dtype=self.proj.dtype)
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, grid**2, width), patches in row-major order
        # The stored table is a coarser grid (16x16 vs 32x32 patches for ViT-G): resized on every call.
        x = x + resize_grid_embed(self.positional_embedding, x.shape[1]).to(x.dtype)
        x = self.ln_pre(x)
        for block in self.transformer["resblocks"]:
            x = block(x)
        return self.ln_post(self.attn_pool(x)) @ self.proj

    @torch.no_grad()
    def negative_features(self) -> torch.Tensor:
        """(1, pool_grid**2, output_dim) features of an all-zero image *in normalised space*.

        This is the classifier-free-guidance negative (the release's inference scripts); it is not a black picture,
        whose normalised pixels would be -mean/std.
        """
        s = self.cfg.image_size
        return self(torch.zeros(1, 3, s, s))


def _resize(image: Image.Image, size: int, keep_ratio: bool) -> Image.Image:
    image = image.convert("RGB")
    if not keep_ratio:
        # PIL's bilinear filter widens its support when shrinking, i.e. it antialiases like torchvision on PIL.
        return image.resize((size, size), Image.Resampling.BILINEAR)
    w, h = image.size
    # Shorter side to ``size``, longer side truncated to an int, then a centred square crop.
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = round((new_w - size) / 2), round((new_h - size) / 2)
    return image.crop((left, top, left + size, top + size))


def image_transform(image: Image.Image, size: int, keep_ratio: bool = False) -> torch.Tensor:
    """PIL image -> (3, size, size) float32 tensor, CLIP-normalised: the ViT's input (the release's image transforms).

    ``keep_ratio=False`` squashes to a square (stage 2 and inference); ``True`` resizes the shorter side
    and centre-crops (stage 3).

    Example::

        image_transform(Image.open("page.jpg"), size=448).shape  # (3, 448, 448)
    """
    pixels = np.asarray(_resize(image, size, keep_ratio), dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


def image_transform_batch(images: Sequence[Image.Image], size: int, keep_ratio: bool = False) -> torch.Tensor:
    """Several PIL images -> (N, 3, size, size), each through :func:`image_transform`."""
    if not images:
        raise ValueError("image_transform_batch needs at least one image")
    return torch.stack([image_transform(image, size, keep_ratio) for image in images])
