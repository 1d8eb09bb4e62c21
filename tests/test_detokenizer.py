"""De-tokenizer: ResamplerXLV2 against hand-written oracles, trainable selection, batched drawing, real sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from seed_story.config import DetokenizerConfig, ModelConfig
from seed_story.generation.drawer import ImageDrawer
from seed_story.models.detokenizer import (
    AttentionPool2d,
    PerceiverAttention,
    ResamplerXLV2,
    build_detokenizer,
    build_unet,
    build_vae,
    sample_timesteps,
)
from seed_story.models.schedulers import build_noise_scheduler, build_scheduler
from seed_story.presets import from_preset


@pytest.fixture(scope="module")
def tiny_detok_cfg() -> DetokenizerConfig:
    return from_preset("tiny").detokenizer


@pytest.fixture(scope="module")
def drawer(tiny_detok_cfg: DetokenizerConfig) -> ImageDrawer:
    torch.manual_seed(0)
    cfg = tiny_detok_cfg
    detok = build_detokenizer(cfg).eval()
    return ImageDrawer(detok, build_vae(cfg.vae).eval(), build_scheduler(cfg.scheduler), image_size=cfg.image_size)


def _features(cfg: DetokenizerConfig, n: int, tokens: int = 8) -> torch.Tensor:
    return torch.randn(n, tokens, cfg.resampler.embedding_dim)


# --- ResamplerXLV2 -------------------------------------------------------------------------------------


def test_resampler_shapes_and_backward(tiny_detok_cfg: DetokenizerConfig) -> None:
    r = tiny_detok_cfg.resampler
    model = ResamplerXLV2(r)
    prompt_embeds, pooled = model(_features(tiny_detok_cfg, 3))
    assert prompt_embeds.shape == (3, r.num_queries, r.output1_dim + r.output2_dim)
    assert pooled.shape == (3, r.output2_dim)
    (prompt_embeds.square().mean() + pooled.square().mean()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.latents.grad.abs().sum() > 0


def test_resampler_normalises_across_tokens(tiny_detok_cfg: DetokenizerConfig) -> None:
    model = ResamplerXLV2(tiny_detok_cfg.resampler)
    x = _features(tiny_detok_cfg, 2) * 3 + 1
    seen: list[torch.Tensor] = []
    hook = model.proj_in.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    out_token_axis, _ = model(x)
    hook.remove()

    # Each channel of each sample has unit L2 norm over the token axis.
    manual = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(seen[0], manual)
    torch.testing.assert_close(seen[0].norm(dim=1), torch.ones(2, x.shape[-1]))

    # The "obvious" per-token normalisation feeds proj_in something else and changes the output.
    per_token = F.normalize(x, dim=-1)
    assert not torch.allclose(manual, per_token, atol=1e-3)
    hook = model.proj_in.register_forward_pre_hook(lambda _m, _args: (per_token,))
    out_per_token, _ = model(x)
    hook.remove()
    assert not torch.allclose(out_token_axis, out_per_token, atol=1e-4)


def test_resampler_batch_independent(tiny_detok_cfg: DetokenizerConfig) -> None:
    # The token-axis normalisation is per sample, so batching must not mix samples.
    model = ResamplerXLV2(tiny_detok_cfg.resampler)
    x = _features(tiny_detok_cfg, 3)
    batched, pooled = model(x)
    single, single_pooled = model(x[1:2])
    torch.testing.assert_close(batched[1:2], single)
    torch.testing.assert_close(pooled[1:2], single_pooled)


def test_attention_pool_matches_torch_mha() -> None:
    dim, heads, seq, out_dim = 32, 4, 9, 24
    pool = AttentionPool2d(seq, dim, heads, out_dim)
    for p in pool.parameters():  # non-trivial biases so a dropped bias shows
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, seq, dim)

    tokens = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + pool.positional_embedding
    tokens = tokens.transpose(0, 1)  # (L, B, C) as the functional MHA wants
    expected, _ = F.multi_head_attention_forward(
        query=tokens[:1],
        key=tokens,
        value=tokens,
        embed_dim_to_check=dim,
        num_heads=heads,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
        need_weights=False,
    )
    torch.testing.assert_close(pool(x), expected[0], rtol=1e-5, atol=1e-5)


def test_perceiver_attention_matches_torch_mha() -> None:
    # q·k scaled by d^(-1/4) twice == the standard 1/sqrt(d); to_kv is [keys; values] along its output rows.
    dim, heads, dim_head = 32, 4, 8
    attn = PerceiverAttention(dim, dim_head, heads)
    for p in (*attn.norm1.parameters(), *attn.norm2.parameters()):  # tell the two norms apart
        torch.nn.init.normal_(p)
    x, latents = torch.randn(2, 10, dim), torch.randn(2, 5, dim)
    q_in = attn.norm2(latents)
    kv_in = torch.cat([attn.norm1(x), q_in], dim=1)
    k_weight, v_weight = attn.to_kv.weight.chunk(2)
    expected, _ = F.multi_head_attention_forward(
        query=q_in.transpose(0, 1),
        key=kv_in.transpose(0, 1),
        value=kv_in.transpose(0, 1),
        embed_dim_to_check=dim,
        num_heads=heads,
        in_proj_weight=None,
        in_proj_bias=None,
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=attn.to_out.weight,
        out_proj_bias=None,
        use_separate_proj_weight=True,
        q_proj_weight=attn.to_q.weight,
        k_proj_weight=k_weight,
        v_proj_weight=v_weight,
        need_weights=False,
    )
    torch.testing.assert_close(attn(x, latents), expected.transpose(0, 1), rtol=1e-5, atol=1e-5)


# --- Detokenizer ---------------------------------------------------------------------------------------


def test_trainable_selection(tiny_detok_cfg: DetokenizerConfig) -> None:
    detok = build_detokenizer(tiny_detok_cfg)
    detok.set_trainable()
    attention = [m for m in detok.unet.modules() if isinstance(m, Attention)]
    expected = {id(p) for p in detok.resampler.parameters()}
    expected |= {id(p) for a in attention for p in (*a.to_k.parameters(), *a.to_v.parameters())}
    trainable = detok.trainable_parameters()
    assert {id(p) for p in trainable} == expected
    # Tiny UNet: 1 down + 1 mid + 2 up transformer blocks, each with self- and cross-attention.
    assert len(attention) == 8
    n_resampler = len(list(detok.resampler.parameters()))
    assert len(trainable) == n_resampler + 2 * len(attention)  # bias-free to_k/to_v: one weight each
    frozen = [n for n, p in detok.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("unet.") and not n.endswith(("to_k.weight", "to_v.weight")) for n in frozen)


def test_state_dict_prefixes(tiny_detok_cfg: DetokenizerConfig) -> None:
    keys = build_detokenizer(tiny_detok_cfg).state_dict().keys()
    assert {k.split(".", 1)[0] for k in keys} == {"resampler", "unet"}
    assert "resampler.layers.0.0.to_kv.weight" in keys
    assert "unet.conv_in.weight" in keys


def test_denoising_loss_reaches_resampler(tiny_detok_cfg: DetokenizerConfig) -> None:
    cfg = tiny_detok_cfg
    detok = build_detokenizer(cfg)
    detok.set_trainable()
    latent_size = cfg.image_size // cfg.vae.downscale
    latents = torch.randn(2, cfg.vae.latent_channels, latent_size, latent_size)
    time_ids = torch.tensor([[cfg.image_size, cfg.image_size, 0, 0, cfg.image_size, cfg.image_size]] * 2)
    generator = torch.Generator().manual_seed(0)
    loss = detok.denoising_loss(
        latents, _features(cfg, 2), time_ids, build_noise_scheduler(cfg.scheduler), generator=generator
    )
    assert loss.dtype == torch.float32 and loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert detok.resampler.proj_in.weight.grad.abs().sum() > 0
    assert detok.resampler.unet_attnpool.c_proj.weight.grad.abs().sum() > 0  # the pooled path too
    assert all(p.grad is None for p in detok.unet.parameters() if not p.requires_grad)


def test_denoising_loss_is_noise_mse(tiny_detok_cfg: DetokenizerConfig) -> None:
    cfg = tiny_detok_cfg
    detok = build_detokenizer(cfg).eval()
    scheduler = build_noise_scheduler(cfg.scheduler)
    latents = torch.randn(1, 4, 16, 16)
    noise, t = torch.randn_like(latents), torch.tensor([500])
    time_ids = torch.tensor([[32, 32, 0, 0, 32, 32]])
    feats = _features(cfg, 1)
    loss = detok.denoising_loss(latents, feats, time_ids, scheduler, noise=noise, timesteps=t)
    prompt_embeds, pooled = detok.encode(feats)
    pred = detok.unet(
        scheduler.add_noise(latents, noise, t),
        t,
        encoder_hidden_states=prompt_embeds,
        added_cond_kwargs={"time_ids": time_ids.float(), "text_embeds": pooled},
    ).sample
    torch.testing.assert_close(loss, (pred - noise).square().mean())


def test_min_snr_weighting_scales_each_sample(tiny_detok_cfg: DetokenizerConfig) -> None:
    detok = build_detokenizer(tiny_detok_cfg).eval()
    scheduler = build_noise_scheduler(tiny_detok_cfg.scheduler)
    latents, t = torch.randn(2, 4, 16, 16), torch.tensor([10, 900])
    noise = torch.randn_like(latents)
    time_ids = torch.tensor([[32, 32, 0, 0, 32, 32]] * 2)
    feats = _features(tiny_detok_cfg, 2)
    kw = dict(noise=noise, timesteps=t)
    per = [detok.denoising_loss(latents[i : i + 1], feats[i : i + 1], time_ids[:1], scheduler, noise=noise[i : i + 1],
                                timesteps=t[i : i + 1]) for i in range(2)]  # fmt: skip
    alphas = scheduler.alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    assert snr[0] > 5 > snr[1]  # t=10 is nearly clean: down-weighted; t=900 is noisy: kept
    weighted = detok.denoising_loss(latents, feats, time_ids, scheduler, snr_gamma=5.0, **kw)
    expected = (5.0 / snr[0] * per[0] + per[1]) / 2
    torch.testing.assert_close(weighted, expected.float(), rtol=1e-4, atol=1e-6)


def test_high_noise_weight_biases_the_timestep_draw() -> None:
    uniform = sample_timesteps(1000, 64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(uniform, torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3)))
    biased = sample_timesteps(1000, 20000, 3.0, generator=torch.Generator().manual_seed(0))
    assert int(biased.min()) >= 0 and int(biased.max()) < 1000
    assert abs(float((biased >= 500).float().mean()) - 0.75) < 0.02  # 3 : 1 for the noisier half
    with pytest.raises(ValueError, match="high_noise_weight"):
        sample_timesteps(1000, 4, 0.0)


def test_denoising_loss_draws_timesteps_with_the_bias(
    tiny_detok_cfg: DetokenizerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import seed_story.models.detokenizer as module

    seen = []
    real = module.sample_timesteps
    monkeypatch.setattr(module, "sample_timesteps", lambda *a, **kw: seen.append(a) or real(*a, **kw))
    detok = build_detokenizer(tiny_detok_cfg).eval()
    time_ids = torch.tensor([[32, 32, 0, 0, 32, 32]] * 2)
    detok.denoising_loss(torch.randn(2, 4, 16, 16), _features(tiny_detok_cfg, 2), time_ids,
                         build_noise_scheduler(tiny_detok_cfg.scheduler), high_noise_weight=4.0)  # fmt: skip
    assert seen == [(1000, 2, 4.0)]


def test_noise_scheduler_shares_betas(tiny_detok_cfg: DetokenizerConfig) -> None:
    euler, ddpm = build_scheduler(tiny_detok_cfg.scheduler), build_noise_scheduler(tiny_detok_cfg.scheduler)
    torch.testing.assert_close(euler.betas, ddpm.betas)


# --- Drawing -------------------------------------------------------------------------------------------


def _pixels(images: list) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def test_draw_batch_equals_separate(drawer: ImageDrawer, tiny_detok_cfg: DetokenizerConfig) -> None:
    cfg = tiny_detok_cfg
    feats, negative = _features(cfg, 3), _features(cfg, 1)
    batched = drawer.draw(feats, negative, num_inference_steps=2)
    assert len(batched) == 3
    assert all(im.size == (cfg.image_size, cfg.image_size) and im.mode == "RGB" for im in batched)

    separate = [drawer.draw(feats[i : i + 1], negative, num_inference_steps=2)[0] for i in range(3)]
    assert np.abs(_pixels(batched) - _pixels(separate)).max() <= 1

    # Different features (same seed) give different pictures.
    pixels = _pixels(batched)
    assert np.abs(pixels[0] - pixels[1]).mean() > 1.0


def test_draw_seeds(drawer: ImageDrawer, tiny_detok_cfg: DetokenizerConfig) -> None:
    feats = _features(tiny_detok_cfg, 1).expand(2, -1, -1)
    negative = _features(tiny_detok_cfg, 1)
    same = _pixels(drawer.draw(feats, negative, num_inference_steps=2, seed=7))
    assert np.abs(same[0] - same[1]).max() <= 1
    other = _pixels(drawer.draw(feats, negative, num_inference_steps=2, seed=[7, 8]))
    assert np.abs(other[0] - same[0]).max() <= 1
    assert np.abs(other[1] - same[1]).mean() > 1.0


def test_draw_uses_negative_as_unconditional(drawer: ImageDrawer, tiny_detok_cfg: DetokenizerConfig) -> None:
    # With negative == positive, eps_u + g * (eps_c - eps_u) == eps_c: the same picture as no guidance at all.
    feats = _features(tiny_detok_cfg, 2)
    guided = _pixels(drawer.draw(feats, feats[:1], num_inference_steps=2, guidance_scale=7.5))
    unguided = _pixels(drawer.draw(feats, feats[:1], num_inference_steps=2, guidance_scale=1.0))
    assert np.abs(guided[0] - unguided[0]).max() <= 1
    assert np.abs(guided[1] - unguided[1]).mean() > 1.0  # item 1 is guided away from item 0's features
    other_negative = _pixels(drawer.draw(feats, feats[1:], num_inference_steps=2))
    assert np.abs(other_negative[0] - guided[0]).mean() > 1.0


def test_draw_rejects_bad_inputs(drawer: ImageDrawer, tiny_detok_cfg: DetokenizerConfig) -> None:
    feats = _features(tiny_detok_cfg, 2)
    with pytest.raises(ValueError, match="one seed per image"):
        drawer.draw(feats, feats[:1], seed=[1, 2, 3])
    with pytest.raises(ValueError, match=r"\(1, T, D\)"):
        drawer.draw(feats, feats)


# --- Real sizes on the meta device ---------------------------------------------------------------------


def test_real_resampler_keys_and_size(george_config: ModelConfig) -> None:
    with torch.device("meta"):
        model = ResamplerXLV2(george_config.detokenizer.resampler)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "latents": (1, 64, 1024),
        "proj_in.weight": (1024, 4096),
        "proj_in.bias": (1024,),
        "norm_out.weight": (1024,),
        "norm_out.bias": (1024,),
        "unet_proj_1.weight": (768, 1024),
        "unet_proj_1.bias": (768,),
        "unet_proj_2.weight": (1280, 1024),
        "unet_proj_2.bias": (1280,),
        "unet_attnpool.positional_embedding": (65, 1024),
        "unet_attnpool.c_proj.weight": (1280, 1024),
        "unet_attnpool.c_proj.bias": (1280,),
    }
    for proj in ("q_proj", "k_proj", "v_proj"):
        expected |= {f"unet_attnpool.{proj}.weight": (1024, 1024), f"unet_attnpool.{proj}.bias": (1024,)}
    for i in range(4):
        block = f"layers.{i}"
        for norm in ("norm1", "norm2"):
            expected |= {f"{block}.0.{norm}.weight": (1024,), f"{block}.0.{norm}.bias": (1024,)}
        expected |= {
            f"{block}.0.to_q.weight": (1024, 1024),
            f"{block}.0.to_kv.weight": (2048, 1024),
            f"{block}.0.to_out.weight": (1024, 1024),
            f"{block}.1.0.weight": (1024,),
            f"{block}.1.0.bias": (1024,),
            f"{block}.1.1.weight": (4096, 1024),
            f"{block}.1.3.weight": (1024, 4096),
        }
    assert shapes == expected
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(61.25e6, rel=5e-3)


def test_real_unet_trainable_size(george_config: ModelConfig) -> None:
    with torch.device("meta"):
        unet = build_unet(george_config.detokenizer.unet)
    kv = [m for n, m in unet.named_modules() if n.endswith(("to_k", "to_v"))]
    assert len(kv) == 280  # 70 transformer blocks x (attn1, attn2) x (to_k, to_v)
    assert sum(p.numel() for m in kv for p in m.parameters()) == pytest.approx(545.6e6, rel=1e-3)
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(2.567e9, rel=1e-3)  # SDXL-base UNet
