"""The de-tokenizer: ViT image features -> SDXL conditioning -> pictures (the release's SDXLAdapter).

``ResamplerXLV2`` turns (B, T, embedding_dim) features into SDXL's two conditioning inputs: per-token
``prompt_embeds`` (B, num_queries, output1_dim + output2_dim) and a ``pooled`` vector (B, output2_dim).
``Detokenizer`` pairs it with a ``diffusers.UNet2DConditionModel``; its ``state_dict()`` keys carry the
``resampler.`` and ``unet.`` prefixes of the released checkpoints. ``ImageDrawer`` wraps diffusers'
``StableDiffusionXLPipeline`` (no text encoders) to draw a batch of pictures with classifier-free guidance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from torch import nn

from seed_story.config import DetokenizerConfig, ResamplerXLConfig, UNetConfig, VAEConfig


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, H*D) -> (B, H, L, D)."""
    b, n, _ = x.shape
    return x.reshape(b, n, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, D) -> (B, L, H*D)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class PerceiverAttention(nn.Module):
    """Latents attend to concat(inputs, latents); bias-free projections (the release's ResamplerXLV2)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        # Scaling q and k by d^(-1/4) each (rather than the logits by d^(-1/2)) keeps fp16 logits smaller.
        self.scale = dim_head**-0.25
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        q = _split_heads(self.to_q(latents), self.heads)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        k, v = _split_heads(k, self.heads), _split_heads(v, self.heads)
        logits = (q * self.scale) @ (k * self.scale).transpose(-2, -1)
        weights = torch.softmax(logits.float(), dim=-1).to(v.dtype)
        return self.to_out(_merge_heads(weights @ v))


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    """LN -> Linear -> GELU -> Linear, bias-free linears; indices 0..3 match the checkpoint keys."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class AttentionPool2d(nn.Module):
    """Pool (B, L, dim) tokens to (B, output_dim): the mean token, prepended, attends to all tokens.

    Example::

        pool = AttentionPool2d(seq_len=64, dim=1024, heads=16, output_dim=1280)
        pool(torch.randn(2, 64, 1024)).shape  # (2, 1280)
    """

    def __init__(self, seq_len: int, dim: int, heads: int, output_dim: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(seq_len + 1, dim) / dim**0.5)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        q = _split_heads(self.q_proj(x[:, :1]), self.heads)
        k = _split_heads(self.k_proj(x), self.heads)
        v = _split_heads(self.v_proj(x), self.heads)
        out = F.scaled_dot_product_attention(q, k, v)  # default 1/sqrt(head_dim) scaling
        return self.c_proj(_merge_heads(out)[:, 0])


class ResamplerXLV2(nn.Module):
    """ViT features (B, T, embedding_dim) -> (prompt_embeds (B, Q, output1+output2), pooled (B, output2)).

    Example::

        r = ResamplerXLV2(from_preset("seed-story-george").detokenizer.resampler)
        prompt_embeds, pooled = r(torch.randn(1, 256, 4096))  # (1, 64, 2048), (1, 1280)
    """

    def __init__(self, cfg: ResamplerXLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.latents = nn.Parameter(torch.randn(1, cfg.num_queries, cfg.dim) / cfg.dim**0.5)
        self.proj_in = nn.Linear(cfg.embedding_dim, cfg.dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(cfg.dim, cfg.dim_head, cfg.heads), feed_forward(cfg.dim, cfg.ff_mult)])
            for _ in range(cfg.depth)
        )
        self.norm_out = nn.LayerNorm(cfg.dim)
        self.unet_proj_1 = nn.Linear(cfg.dim, cfg.output1_dim)
        self.unet_proj_2 = nn.Linear(cfg.dim, cfg.output2_dim)
        self.unet_attnpool = AttentionPool2d(cfg.num_queries, cfg.dim, cfg.pool_heads, cfg.output2_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Quirk kept on purpose (the release's ResamplerXLV2): F.normalize's default dim=1 is the *token* axis of (B,
        # T, C), so each channel is L2-normalised across the T tokens, not each token across channels. The released
        # weights were trained on exactly this input distribution.
        x = self.proj_in(F.normalize(x, dim=1))
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        h = self.norm_out(latents)
        prompt_embeds = torch.cat([self.unet_proj_1(h), self.unet_proj_2(h)], dim=-1)
        return prompt_embeds, self.unet_attnpool(h)


class Detokenizer(nn.Module):
    """ResamplerXLV2 + SDXL UNet; ``state_dict()`` keys are ``resampler.*`` and ``unet.*`` as released.

    Example::

        detok = build_detokenizer(from_preset("tiny").detokenizer)
        detok.set_trainable()
        optimizer = torch.optim.AdamW(detok.trainable_parameters(), lr=1e-4)
        loss = detok.denoising_loss(latents, features, time_ids, build_noise_scheduler(cfg.scheduler))
    """

    def __init__(self, resampler: ResamplerXLV2, unet: UNet2DConditionModel) -> None:
        super().__init__()
        self.resampler = resampler
        self.unet = unet

    def encode(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ViT features (B, T, D) -> (prompt_embeds, pooled), on the resampler's device and dtype."""
        ref = self.resampler.latents
        return self.resampler(features.to(device=ref.device, dtype=ref.dtype))

    def set_trainable(self) -> None:
        """Train the resampler and every UNet ``to_k``/``to_v`` (self- and cross-attention); freeze the rest."""
        self.requires_grad_(False)
        self.resampler.requires_grad_(True)
        for name, module in self.unet.named_modules():
            if name.endswith(("to_k", "to_v")):
                module.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters ``set_trainable`` left trainable: the optimiser's parameter list."""
        return [p for p in self.parameters() if p.requires_grad]

    def denoising_loss(
        self,
        latents: torch.Tensor,
        features: torch.Tensor,
        time_ids: torch.Tensor,
        noise_scheduler: DDPMScheduler,
        *,
        noise: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        snr_gamma: float | None = None,
        high_noise_weight: float = 1.0,
    ) -> torch.Tensor:
        """Mean float32 MSE between predicted and true noise (ε-prediction, the release's SDXLAdapter).

        ``latents`` are VAE latents already multiplied by the scaling factor; ``time_ids`` is (B, 6). Noise and
        per-sample timesteps t ~ U{0..T-1} are drawn with ``generator`` (on the latents' device) unless given.
        ``snr_gamma`` weights each sample by min(SNR(t), γ) / SNR(t) (Min-SNR-γ, Hang et al. 2023): nearly clean
        timesteps stop dominating, which speeds up training from scratch; None is the reference's plain mean.
        ``high_noise_weight`` draws timesteps in the noisier half that many times as often as those in the
        cleaner half (1 = uniform, the reference): layout and identity are decided there, and their ε-errors are
        small, so a model from scratch learns them last (the idea of diffusers' ``timestep_bias_strategy``).
        """
        if noise_scheduler.config.prediction_type != "epsilon":
            raise ValueError(f"only epsilon prediction is supported, got {noise_scheduler.config.prediction_type!r}")
        if noise is None:
            noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        if timesteps is None:
            timesteps = sample_timesteps(
                noise_scheduler.config.num_train_timesteps, latents.shape[0], high_noise_weight,
                generator=generator, device=latents.device,
            )  # fmt: skip
        prompt_embeds, pooled = self.encode(features)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        pred = self.unet(
            noisy,
            timesteps,
            encoder_hidden_states=prompt_embeds,
            added_cond_kwargs={"time_ids": time_ids.to(prompt_embeds), "text_embeds": pooled},
        ).sample
        if snr_gamma is None:
            return F.mse_loss(pred.float(), noise.float(), reduction="mean")
        alphas = noise_scheduler.alphas_cumprod.to(device=latents.device)[timesteps].float()
        snr = alphas / (1 - alphas)
        weight = torch.clamp(snr, max=snr_gamma) / snr
        per_sample = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
        return (weight * per_sample).mean()


def sample_timesteps(
    num_steps: int,
    n: int,
    high_noise_weight: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` training timesteps in [0, num_steps); the noisier half is ``high_noise_weight`` times as likely.

    Example::

        t = sample_timesteps(1000, 4096, 3.0)  # about 75% of t are >= 500
    """
    if high_noise_weight <= 0:
        raise ValueError(f"high_noise_weight must be > 0, got {high_noise_weight}")
    if high_noise_weight == 1.0:  # the reference's uniform draw, bit for bit
        return torch.randint(0, num_steps, (n,), generator=generator, device=device)
    weights = torch.ones(num_steps, device=device)
    weights[num_steps // 2 :] = high_noise_weight
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def build_unet(cfg: UNetConfig) -> UNet2DConditionModel:
    """A randomly initialised SDXL-shaped UNet; build under ``torch.device("meta")`` to skip the memory."""
    return UNet2DConditionModel(**cfg.to_diffusers())


def build_vae(cfg: VAEConfig) -> AutoencoderKL:
    """A randomly initialised ``AutoencoderKL``."""
    return AutoencoderKL(**cfg.to_diffusers())


def build_detokenizer(cfg: DetokenizerConfig) -> Detokenizer:
    """A randomly initialised ``Detokenizer`` (weights are loaded separately)."""
    return Detokenizer(ResamplerXLV2(cfg.resampler), build_unet(cfg.unet))
