"""Visual tokenizer (the release's ViT config, qwen_vitg_448.yaml) and its image transform (the release's image
transforms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from seed_story.config import ModelConfig
from seed_story.models.visual_tokenizer import (
    CLIP_MEAN,
    CLIP_STD,
    VisualTokenizer,
    image_transform,
    image_transform_batch,
)
from seed_story.presets import from_preset


@pytest.fixture
def vit(tiny_config: ModelConfig) -> VisualTokenizer:
    return VisualTokenizer(tiny_config.vision).eval()


def _images(vit: VisualTokenizer, batch: int = 2) -> torch.Tensor:
    s = vit.cfg.image_size
    return torch.randn(batch, 3, s, s)


# --- tiny model -----------------------------------------------------------------------------------------


def test_forward_shape_and_determinism(vit: VisualTokenizer) -> None:
    x = _images(vit)
    out = vit(x)
    assert out.shape == (2, vit.cfg.n_queries, vit.cfg.output_dim)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out, vit(x))


def test_backward_reaches_every_trainable_parameter(vit: VisualTokenizer) -> None:
    vit(_images(vit)).square().mean().backward()
    trainable = {n: p for n, p in vit.named_parameters() if p.requires_grad}
    assert "attn_pool.pos_embed" not in trainable  # the fixed sin-cos table stays frozen
    for name, p in trainable.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_input_is_cast_to_module_dtype(vit: VisualTokenizer) -> None:
    vit = vit.to(torch.bfloat16)
    assert vit(_images(vit, 1)).dtype == torch.bfloat16


def test_rejects_non_image_input(vit: VisualTokenizer) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        vit(torch.zeros(1, 56, 56))


def test_in_proj_is_head_interleaved(vit: VisualTokenizer) -> None:
    """Oracle: torch MHA fed the block's in_proj rows permuted from [q_h, k_h, v_h]... to [Q; K; V]."""
    cfg = vit.cfg
    attn = vit.transformer["resblocks"][0].attn
    with torch.no_grad():
        attn.in_proj.bias.normal_()  # a non-zero bias so the bias permutation is exercised too
    head_dim = cfg.width // cfg.heads

    def to_qkv_major(t: torch.Tensor) -> torch.Tensor:
        # rows (heads, 3, head_dim) -> (3, heads, head_dim)
        return t.reshape(cfg.heads, 3, head_dim, -1).transpose(0, 1).reshape(t.shape)

    def mha_with(in_w: torch.Tensor, in_b: torch.Tensor) -> nn.MultiheadAttention:
        mha = nn.MultiheadAttention(cfg.width, cfg.heads, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(in_w)
            mha.in_proj_bias.copy_(in_b)
            mha.out_proj.weight.copy_(attn.out_proj.weight)
            mha.out_proj.bias.copy_(attn.out_proj.bias)
        return mha.eval()

    x = torch.randn(2, cfg.grid**2, cfg.width)
    with torch.no_grad():
        ours = attn(x)
        w, b = attn.in_proj.weight, attn.in_proj.bias
        oracle = mha_with(to_qkv_major(w), to_qkv_major(b.unsqueeze(1)).squeeze(1))(x, x, x, need_weights=False)[0]
        wrong = mha_with(w, b)(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(ours, oracle, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, wrong, atol=1e-3)


def test_patch_tokens_get_bicubic_positional_embedding(vit: VisualTokenizer) -> None:
    """The ln_pre input must be row-major patch embeddings + the stored table bicubically resized to the grid."""
    cfg = vit.cfg
    assert cfg.pos_embed_grid != cfg.grid  # the tiny preset must exercise the resize
    seen: list[torch.Tensor] = []
    vit.ln_pre.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    x = _images(vit, 1)
    with torch.no_grad():
        vit(x)

    def resized(mode: str) -> torch.Tensor:
        table = vit.positional_embedding.detach()
        src = table.reshape(1, cfg.pos_embed_grid, cfg.pos_embed_grid, cfg.width).permute(0, 3, 1, 2)
        out = F.interpolate(src, size=(cfg.grid, cfg.grid), mode=mode, align_corners=False)
        return out.permute(0, 2, 3, 1).reshape(cfg.grid**2, cfg.width)

    # Patches by explicit unfolding: row-major over the grid, channel-major within a patch, like conv1's kernel.
    p = cfg.patch_size
    patches = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(1, cfg.grid**2, -1)
    tokens = patches @ vit.conv1.weight.detach().reshape(cfg.width, -1).T
    torch.testing.assert_close(seen[0], tokens + resized("bicubic"), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(seen[0], tokens + resized("bilinear"), atol=1e-4)


def test_negative_features_are_vit_of_zeros(vit: VisualTokenizer) -> None:
    s = vit.cfg.image_size
    neg = vit.negative_features()
    assert neg.shape == (1, vit.cfg.n_queries, vit.cfg.output_dim)
    assert not neg.requires_grad
    torch.testing.assert_close(neg, vit(torch.zeros(1, 3, s, s)))
    # Zeros in normalised space, not a black picture (whose normalised pixels are -mean/std).
    black = image_transform(Image.new("RGB", (s, s)), s).unsqueeze(0)
    assert not torch.allclose(neg, vit(black), atol=1e-4)


# --- real size on the meta device ------------------------------------------------------------------------

TOP_LEVEL = {
    "conv1.weight": (1664, 3, 14, 14),
    "positional_embedding": (256, 1664),
    "ln_pre.weight": (1664,),
    "ln_pre.bias": (1664,),
    "attn_pool.query": (256, 4096),
    "attn_pool.pos_embed": (256, 4096),
    "attn_pool.kv_proj.weight": (4096, 1664),
    "attn_pool.attn.in_proj_weight": (12288, 4096),
    "attn_pool.attn.in_proj_bias": (12288,),
    "attn_pool.attn.out_proj.weight": (4096, 4096),
    "attn_pool.attn.out_proj.bias": (4096,),
    "attn_pool.ln_q.weight": (4096,),
    "attn_pool.ln_q.bias": (4096,),
    "attn_pool.ln_kv.weight": (4096,),
    "attn_pool.ln_kv.bias": (4096,),
    "ln_post.weight": (4096,),
    "ln_post.bias": (4096,),
    "proj": (4096, 4096),
}
BLOCK = {
    "ln_1.weight": (1664,),
    "ln_1.bias": (1664,),
    "attn.in_proj.weight": (4992, 1664),
    "attn.in_proj.bias": (4992,),
    "attn.out_proj.weight": (1664, 1664),
    "attn.out_proj.bias": (1664,),
    "ln_2.weight": (1664,),
    "ln_2.bias": (1664,),
    "mlp.c_fc.weight": (8192, 1664),
    "mlp.c_fc.bias": (8192,),
    "mlp.c_proj.weight": (1664, 8192),
    "mlp.c_proj.bias": (1664,),
}


@pytest.fixture(scope="module")
def george_vit() -> VisualTokenizer:
    with torch.device("meta"):
        return VisualTokenizer(from_preset("seed-story-george").vision)


def test_george_state_dict_matches_checkpoint_table(george_vit: VisualTokenizer) -> None:
    shapes = {k: tuple(v.shape) for k, v in george_vit.state_dict().items()}
    for key, shape in TOP_LEVEL.items():
        assert shapes[key] == shape, key
    for i in (0, 47):
        for suffix, shape in BLOCK.items():
            assert shapes[f"transformer.resblocks.{i}.{suffix}"] == shape, (i, suffix)
    assert len(george_vit.transformer["resblocks"]) == 48
    expected = set(TOP_LEVEL) | {f"transformer.resblocks.{i}.{s}" for i in range(48) for s in BLOCK}
    assert set(shapes) == expected


def test_george_layer_norms_use_eps_1e6(george_vit: VisualTokenizer) -> None:
    norms = [m for m in george_vit.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 1 + 2 * 48 + 2 + 1  # ln_pre, ln_1/ln_2 per block, ln_q/ln_kv, ln_post
    assert all(m.eps == 1e-6 for m in norms)


def test_george_parameter_counts(george_vit: VisualTokenizer) -> None:
    def count(*prefixes: str) -> int:
        return sum(p.numel() for n, p in george_vit.named_parameters() if n.startswith(prefixes))

    total = sum(p.numel() for p in george_vit.parameters())
    assert total == pytest.approx(1.936e9, rel=5e-3)
    assert count("attn_pool.") == pytest.approx(76.1e6, rel=5e-3)
    assert count("ln_post.", "proj") == pytest.approx(16.8e6, rel=5e-3)
    assert george_vit.attn_pool.attn.num_heads == 32


# --- image transform --------------------------------------------------------------------------------------


def test_transform_shape_dtype_and_grey_input() -> None:
    out = image_transform(Image.new("L", (37, 23), 128), 28)
    assert out.shape == (3, 28, 28)
    assert out.dtype == torch.float32
    assert out.is_contiguous()


def test_transform_normalises_solid_colour() -> None:
    colour = (200, 30, 90)
    out = image_transform(Image.new("RGB", (50, 30), colour), 16)
    for c in range(3):
        expected = torch.full((16, 16), (colour[c] / 255 - CLIP_MEAN[c]) / CLIP_STD[c])
        torch.testing.assert_close(out[c], expected)


def test_transform_resizes_bilinear() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)

    def reference(resample: Image.Resampling) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image.resize((20, 20), resample))).permute(2, 0, 1)
        return (pixels.float() / 255 - mean) / std

    out = image_transform(image, 20)
    torch.testing.assert_close(out, reference(Image.Resampling.BILINEAR))
    assert not torch.allclose(out, reference(Image.Resampling.BICUBIC))


def _bands(size: int, horizontal: bool) -> Image.Image:
    """Three size x size squares side by side (or stacked): red, green, blue."""
    rgb = np.zeros((size, 3 * size, 3), dtype=np.uint8)
    for i in range(3):
        rgb[:, i * size : (i + 1) * size, i] = 255
    return Image.fromarray(rgb if horizontal else rgb.transpose(1, 0, 2).copy())


@pytest.mark.parametrize("horizontal", [True, False])
def test_keep_ratio_crops_the_centre(horizontal: bool) -> None:
    green = torch.tensor([(v - m) / s for v, m, s in zip((0, 1, 0), CLIP_MEAN, CLIP_STD, strict=True)])
    # Shorter side already at the target: the crop must be exactly the middle (green) square.
    out = image_transform(_bands(16, horizontal), 16, keep_ratio=True)
    torch.testing.assert_close(out, green.view(3, 1, 1).expand(3, 16, 16))
    # Downscaled by 2 first: away from the blended band edges the crop is still pure green.
    out = image_transform(_bands(32, horizontal), 16, keep_ratio=True)
    assert out.shape == (3, 16, 16)
    inner = out[:, 2:-2, 2:-2]
    torch.testing.assert_close(inner, green.view(3, 1, 1).expand_as(inner))
    # Without keep_ratio the whole strip is squashed in, red and blue included.
    squashed = image_transform(_bands(16, horizontal), 16)
    assert not torch.allclose(squashed, green.view(3, 1, 1).expand(3, 16, 16))


def test_transform_batch_stacks_single_transforms() -> None:
    images = [Image.new("RGB", (30, 20), (10, 20, 30)), _bands(8, True)]
    batch = image_transform_batch(images, 12, keep_ratio=True)
    assert batch.shape == (2, 3, 12, 12)
    for image, row in zip(images, batch, strict=True):
        torch.testing.assert_close(row, image_transform(image, 12, keep_ratio=True))
    with pytest.raises(ValueError, match="at least one image"):
        image_transform_batch([], 12)
