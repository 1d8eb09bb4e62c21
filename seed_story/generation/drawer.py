"""Drawing: ViT-space features to pictures through the de-tokenizer's SDXL UNet, with classifier-free guidance."""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch
from diffusers import (
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UniPCMultistepScheduler,
)

from seed_story.models.detokenizer import Detokenizer


class ImageDrawer:
    """Draw pictures from ViT features with SDXL + classifier-free guidance; the pipeline is built once.

    Example::

        drawer = ImageDrawer(detok, vae, build_scheduler(cfg.scheduler), image_size=cfg.image_size)
        negative = vit(torch.zeros(1, 3, 448, 448))  # once per process: a zero image is the CFG negative
        images = drawer.draw(features, negative, num_inference_steps=50)  # list of N PIL images
    """

    def __init__(
        self,
        detokenizer: Detokenizer,
        vae: AutoencoderKL,
        scheduler: EulerDiscreteScheduler,
        *,
        image_size: int,
    ) -> None:
        self.detokenizer = detokenizer
        self.image_size = image_size
        # Every sampler shares the model's noise schedule (betas, prediction type, spacing): only the solver differs.
        self.samplers = {
            "euler": scheduler,
            "dpm++2m": DPMSolverMultistepScheduler.from_config(scheduler.config, algorithm_type="dpmsolver++",
                                                                solver_order=2),
            "unipc": UniPCMultistepScheduler.from_config(scheduler.config),
        }  # fmt: skip
        self.pipe = StableDiffusionXLPipeline(
            vae=vae,
            unet=detokenizer.unet,
            scheduler=scheduler,
            text_encoder=None,
            text_encoder_2=None,
            tokenizer=None,
            tokenizer_2=None,
            # Explicit: otherwise the output depends on whether `invisible-watermark` happens to be installed.
            add_watermarker=False,
        )
        self.pipe.set_progress_bar_config(disable=True)

    def check_inputs(self, features: torch.Tensor, negative_features: torch.Tensor, seeds: Sequence[int]) -> None:
        """Raise ``ValueError`` on shapes or seed lists that cannot be drawn."""
        if features.ndim != 3 or features.shape[0] == 0:
            raise ValueError(f"features must be (N, T, D) with N >= 1, got {tuple(features.shape)}")
        if negative_features.ndim != 3 or negative_features.shape[0] != 1:
            raise ValueError(f"negative_features must be (1, T, D), got {tuple(negative_features.shape)}")
        if negative_features.shape[-1] != features.shape[-1]:
            raise ValueError(
                f"negative_features dim {negative_features.shape[-1]} != features dim {features.shape[-1]}"
            )
        if len(seeds) != features.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for {features.shape[0]} feature sets; pass one seed per image")

    @torch.no_grad()
    def draw(
        self,
        features: torch.Tensor,
        negative_features: torch.Tensor,
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        seed: int | Sequence[int] = 42,
        sampler: str = "euler",
        progress: bool = False,
    ) -> list[PIL.Image.Image]:
        """Draw one picture per feature set (N, T, D) in one batched pipeline call.

        ``negative_features`` (1, T, D) are the ViT features of a zero image. ``seed`` is one seed for every
        picture (the reference uses 42 for all) or one per picture; each picture gets its own generator, so
        a picture does not depend on what else is in the batch.
        """
        n = features.shape[0]
        seeds = [seed] * n if isinstance(seed, int) else list(seed)
        self.check_inputs(features, negative_features, seeds)
        if sampler not in self.samplers:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(self.samplers)}")
        self.pipe.scheduler = self.samplers[sampler]

        # 1. Encode positives and the negative in one resampler pass; broadcast the negative to the batch.
        prompt_embeds, pooled = self.detokenizer.encode(torch.cat([features, negative_features.to(features)]))
        neg_embeds, neg_pooled = prompt_embeds[n:].expand(n, -1, -1), pooled[n:].expand(n, -1)

        # 2. Per-picture generators on the UNet's device (the reference seeds a generator on its device).
        device = self.detokenizer.unet.device
        generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

        # 3. Denoise and decode.
        self.pipe.set_progress_bar_config(disable=not progress)
        size = self.image_size
        return self.pipe(
            prompt_embeds=prompt_embeds[:n],
            pooled_prompt_embeds=pooled[:n],
            negative_prompt_embeds=neg_embeds,
            negative_pooled_prompt_embeds=neg_pooled,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=height or size,
            width=width or size,
            generator=generators,
            output_type="pil",
        ).images
