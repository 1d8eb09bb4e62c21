"""Pre-training stages for a model trained from scratch (SEED-Story-Mini): the ViT and the VAE.

The released model starts from a pre-trained Qwen-VL ViT and the SD-XL VAE. A model of this project's own
sizes has neither, so two stages come first, both on plain pictures:

- ``vision``: the ViT learns as the encoder of an autoencoder (a small convolutional decoder rebuilds the
  picture from its feature tokens, and each token must tell its own position); afterwards only the ViT is
  kept, frozen as in stages 1-3.
- ``vae``: the ``AutoencoderKL`` learns to reconstruct pictures with a small KL term, so its latents stay
  near unit scale (the de-tokenizer's noise schedule assumes it).
"""

from __future__ import annotations

import glob
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from seed_story.components import Components
from seed_story.models.visual_tokenizer import VisualTokenizer, image_transform_batch
from seed_story.training.config import PictureData


@dataclass
class PixelBatch:
    """The same pictures for the ViT (CLIP-normalised, ViT size) and in [-1, 1] at the de-tokenizer's size."""

    vit_images: torch.Tensor
    images: torch.Tensor


def picture_files(data: PictureData) -> list[str]:
    files = sorted(glob.glob(data.images, recursive=True))
    if not files:
        raise FileNotFoundError(f"no pictures match {data.images!r}")
    return files


def picture_batches(data: PictureData, parts: Components, seed: int) -> Iterator[PixelBatch]:
    """Endless batches: each epoch is a fresh seeded shuffle, so the stream is a function of ``seed`` alone
    and the trainer resumes by skipping the batches it consumed."""
    files = picture_files(data)
    rng = random.Random(seed)
    vit_size, size = parts.config.vision.image_size, parts.config.detokenizer.image_size
    order: list[str] = []
    for _ in itertools.count():
        while len(order) < data.batch_size:
            epoch = list(files)
            rng.shuffle(epoch)
            order += epoch
        chosen, order = order[: data.batch_size], order[data.batch_size :]
        pictures = [Image.open(f).convert("RGB") for f in chosen]
        yield PixelBatch(vit_images=image_transform_batch(pictures, vit_size), images=signed_pixels(pictures, size))


def signed_pixels(pictures: list[Image.Image], size: int) -> torch.Tensor:
    """(N, 3, size, size) pixels in [-1, 1], bicubic-resized: what the VAE encodes in stages 1 and 3."""
    arrays = [torch.frombuffer(bytearray(p.resize((size, size), Image.BICUBIC).tobytes()), dtype=torch.uint8)
              for p in pictures]  # fmt: skip
    return torch.stack(arrays).view(len(pictures), size, size, 3).permute(0, 3, 1, 2).float() / 127.5 - 1


class FeatureDecoder(nn.Module):
    """ViT feature tokens (B, g*g, D) on their g x g grid -> a (B, 3, S, S) picture, by transposed convolutions."""

    def __init__(self, dim: int, grid: int, image_size: int, width: int = 64) -> None:
        super().__init__()
        self.grid = grid
        layers: list[nn.Module] = [nn.Conv2d(dim, width, 3, padding=1)]
        size = grid
        while size < image_size:
            layers += [nn.SiLU(), nn.ConvTranspose2d(width, width, 4, stride=2, padding=1)]
            size *= 2
        layers += [nn.SiLU(), nn.Conv2d(width, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.image_size = image_size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, _, d = tokens.shape
        x = tokens.transpose(1, 2).reshape(b, d, self.grid, self.grid)
        out = self.net(x)
        return F.interpolate(out, size=self.image_size, mode="bilinear") if out.shape[-1] != self.image_size else out


# Weight of the position loss next to the pixel MSE (which ends near 0.08); cross-entropy starts at ln(64) = 4.2.
POSITION_WEIGHT = 0.1


class ViTAutoencoder(nn.Module):
    """The ViT as an encoder: pixel error of a grid decoder, plus each token's own grid position, read back.

    The de-tokenizer's resampler reads the features as a set (no positions on its inputs, the release's ResamplerXLV2),
    so where a token belongs must be written into the token itself, as it is in the real ViT-G's features. A grid
    decoder alone never asks for that (it takes token i as patch i), and a de-tokenizer trained on such
    features draws the right characters in random places. So a linear head must also tell each token's index
    from its content alone.
    """

    def __init__(self, vit: VisualTokenizer) -> None:
        super().__init__()
        self.vit = vit
        grid = vit.cfg.pool_grid
        self.decoder = FeatureDecoder(vit.cfg.output_dim, grid, vit.cfg.image_size)
        self.position_head = nn.Linear(vit.cfg.output_dim, grid * grid)

    def forward(self, vit_images: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.vit(vit_images)
        pixel = F.mse_loss(self.decoder(tokens), vit_images)
        logits = self.position_head(tokens)  # (B, T, T): token -> which of the T positions it came from
        index = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape[0], -1)
        position = F.cross_entropy(logits.flatten(0, 1).float(), index.flatten())
        accuracy = (logits.argmax(-1) == index).float().mean()
        return {
            "loss": pixel + POSITION_WEIGHT * position,
            "pixel_loss": pixel.detach(),
            "position_loss": position.detach(),
            "position_accuracy": accuracy,
        }


class VisionTask:
    """Stage ``vision``: pre-train the ViT as an autoencoder's encoder; the checkpoint keeps the ViT only."""

    stage = "vision"
    export = ("visual_tokenizer", "vit.")

    def __init__(self, parts: Components) -> None:
        self.parts = parts
        parts.visual_tokenizer.train().requires_grad_(True)
        self.module = ViTAutoencoder(parts.visual_tokenizer)

    def to(self, device: torch.device, frozen_dtype: torch.dtype) -> None:
        self.module.to(device)

    def loss(self, model: nn.Module, batch: PixelBatch) -> dict[str, torch.Tensor]:
        return model(batch.vit_images)


class VAELoss(nn.Module):
    """Reconstruction (MSE) plus ``kl_weight`` times the posterior's mean KL to N(0, 1) per latent element."""

    def __init__(self, vae: nn.Module, kl_weight: float) -> None:
        super().__init__()
        self.vae = vae
        self.kl_weight = kl_weight
        # Running variance of the sampled latents: the scaling factor that brings them to unit variance.
        self.register_buffer("latent_var", torch.ones(()))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        posterior = self.vae.encode(images).latent_dist
        latents = posterior.sample()
        with torch.no_grad():
            self.latent_var.lerp_(latents.float().var(), 0.05)
        recon = self.vae.decode(latents).sample
        rec = F.mse_loss(recon, images)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1 - posterior.logvar).mean()
        return {"loss": rec + self.kl_weight * kl, "rec_loss": rec.detach(), "kl": kl.detach()}


class VAETask:
    """Stage ``vae``: train the ``AutoencoderKL`` on pictures at the de-tokenizer's size."""

    stage = "vae"
    export = ("vae", "vae.")

    def __init__(self, parts: Components, *, kl_weight: float = 1e-3) -> None:
        self.parts = parts
        parts.vae.train().requires_grad_(True)
        self.module = VAELoss(parts.vae, kl_weight)

    def to(self, device: torch.device, frozen_dtype: torch.dtype) -> None:
        self.module.to(device)

    def loss(self, model: nn.Module, batch: PixelBatch) -> dict[str, Any]:
        return model(batch.images)

    def finalize(self) -> None:
        """Set the VAE's ``scaling_factor`` so scaled latents have unit variance (as SD's 0.13025 does)."""
        self.parts.set_vae_scaling_factor(round(float(self.module.latent_var.rsqrt()), 5))
