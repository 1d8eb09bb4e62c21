"""What each stage trains and how its loss is computed, as small task objects the trainer drives.

A task owns the networks of a run: ``module`` is the one network the optimiser updates (given to
``accelerator.prepare``), every other network is frozen and runs under ``no_grad``. ``loss(model, batch)``
takes the *prepared* module, so data-parallel wrappers see the forward.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from diffusers import AutoencoderKL, DDPMScheduler
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import nn

from seed_story.components import Components
from seed_story.config import RecLoss
from seed_story.data.mllm_batch import MLLMBatch
from seed_story.data.sequence import TrainBatch
from seed_story.models.detokenizer import Detokenizer, sample_timesteps
from seed_story.models.mllm import SeedStoryMLLM
from seed_story.models.schedulers import build_noise_scheduler


class StageTask(Protocol):
    """The interface the trainer needs from a stage."""

    stage: str
    export: tuple[str, str]  # (checkpoint part, key prefix in the trained module's state dict)
    module: nn.Module
    parts: Components

    def to(self, device: torch.device, frozen_dtype: torch.dtype) -> None: ...

    def loss(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]: ...


def unmerge_lora(mllm: SeedStoryMLLM) -> None:
    """Undo ``merge_lora_for_inference``: training a merged model would train LoRA on top of itself."""
    if isinstance(mllm.llm, PeftModel) and any(isinstance(m, LoraLayer) and m.merged for m in mllm.llm.modules()):
        mllm.llm.unmerge_adapter()


def set_mllm_trainable(mllm: SeedStoryMLLM, *, full_llm: bool = False) -> list[str]:
    """Stage 2's trainable set (the release's training scripts): LoRA, the norm copies, embed_tokens, lm_head, both
    resamplers except their fixed sin-cos ``pos_embed``; with ``full_llm`` also the LLM's base weights (a model trained
    from scratch has no pre-trained Llama to adapt). Returns the names made trainable."""
    if not isinstance(mllm.llm, PeftModel):
        raise ValueError("stage 2 trains LoRA: the MLLM's LLM must be LoRA-wrapped (build it with lora=True)")
    unmerge_lora(mllm)
    mllm.requires_grad_(False)
    names = []
    for name, p in mllm.named_parameters():
        in_llm = any(k in name for k in ("lora_", "modules_to_save", "embed_tokens", "lm_head"))
        in_resampler = name.startswith(("input_resampler.", "output_resampler.")) and not name.endswith("pos_embed")
        in_llm = in_llm or (full_llm and name.startswith("llm."))
        # peft's untouched `original_module` norm copies get no gradient; leave them frozen (the release's training
        # scripts).
        if (in_llm or in_resampler) and "original_module" not in name:
            p.requires_grad_(True)
            names.append(name)
    return names


@contextmanager
def _quiet_dtype_casts() -> Iterator[None]:
    """diffusers warns on every dtype cast of the VAE ("modules ... should be kept in float32: []"), even one
    that keeps nothing in float32: a frozen VAE in the mixed-precision dtype is what training means to do."""
    log = logging.getLogger("diffusers")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def enable_llm_checkpointing(mllm: SeedStoryMLLM) -> None:
    """Recompute each decoder layer's activations in backward (the reference trains stage 2 this way).

    Non-reentrant checkpointing needs no input that requires grad, so frozen embeddings (LoRA-only runs) work.
    """
    llm = mllm.causal_lm
    llm.config.use_cache = False  # a KV cache is of no use to a teacher-forced forward
    llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def _batch_kwargs(batch: Any) -> dict[str, torch.Tensor]:
    """What SeedStoryMLLM.forward reads; batches may carry more (pixels, texts, provenance)."""
    return {k: v for k, v in MLLMBatch.from_fields(batch).as_kwargs().items() if v is not None}


class Stage2Task:
    """MLLM instruction tuning: next-token CE + cosine regression of the target's ViT features.

    A batch carries either ``image_embeds`` (ViT features) or pixel ``images`` that the frozen ViT
    encodes under ``no_grad``.
    """

    stage = "stage2"
    export = ("mllm", "")

    def __init__(
        self,
        parts: Components,
        *,
        full_llm: bool = False,
        rec_loss_scale: float | None = None,
        rec_loss: RecLoss | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        self.parts = parts
        self.module = parts.mllm
        update = {k: v for k, v in (("rec_loss_scale", rec_loss_scale), ("rec_loss", rec_loss)) if v is not None}
        if update:
            # Kept in the exported config too, so a checkpoint says what it was trained with.
            parts.mllm.cfg = parts.mllm.cfg.model_copy(update=update)
            parts.config = parts.config.model_copy(update={"mllm": parts.mllm.cfg})
        set_mllm_trainable(parts.mllm, full_llm=full_llm)
        parts.visual_tokenizer.eval().requires_grad_(False)
        if gradient_checkpointing:
            enable_llm_checkpointing(parts.mllm)

    def to(self, device: torch.device, frozen_dtype: torch.dtype) -> None:
        self.module.to(device)
        self.parts.visual_tokenizer.to(device=device, dtype=frozen_dtype)

    def loss(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        kwargs = _batch_kwargs(batch)
        if kwargs.get("image_embeds") is None and getattr(batch, "images", None) is not None:
            with torch.no_grad():
                kwargs["image_embeds"] = self.parts.visual_tokenizer(batch.images).float()
        out = model(**kwargs)
        return {"loss": out.loss, "lm_loss": out.lm_loss.detach(), "rec_loss": out.rec_loss.detach()}


class DenoisingModel(nn.Module):
    """The de-tokenizer with its training objective as ``forward``, so data-parallel wrappers see it."""

    def __init__(
        self,
        detokenizer: Detokenizer,
        noise_scheduler: DDPMScheduler,
        snr_gamma: float | None = None,
        high_noise_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.detokenizer = detokenizer
        self.noise_scheduler = noise_scheduler
        self.snr_gamma = snr_gamma
        self.high_noise_weight = high_noise_weight

    def forward(
        self,
        latents: torch.Tensor,
        features: torch.Tensor,
        time_ids: torch.Tensor,
        noise: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.detokenizer.denoising_loss(latents, features, time_ids, self.noise_scheduler, noise=noise,
                                               timesteps=timesteps, snr_gamma=self.snr_gamma,
                                               high_noise_weight=self.high_noise_weight)  # fmt: skip


def _generators(seeds: torch.Tensor) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


def _per_sample_randn(generators: list[torch.Generator], shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """One standard-normal draw of ``shape`` per generator (on the CPU, so any device gives the same numbers)."""
    draws = [torch.randn(shape, generator=g) for g in generators]
    return torch.stack(draws).to(device=like.device, dtype=like.dtype)


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL, images: torch.Tensor, generators: list[torch.Generator] | None = None
) -> torch.Tensor:
    """Scaled VAE latents of pictures in [-1, 1], sampled from the posterior as the reference does (with one
    generator per picture when given, else the global RNG)."""
    ref = next(vae.parameters())
    posterior = vae.encode(images.to(device=ref.device, dtype=ref.dtype)).latent_dist
    if generators is None:
        latents = posterior.sample()
    else:
        latents = posterior.mean + posterior.std * _per_sample_randn(generators, posterior.mean.shape[1:], ref)
    return (latents * vae.config.scaling_factor).float()


def _sd_pictures(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(SD pixels, time_ids) of a stage-1/3 batch: a StoryStream ``TrainBatch`` or a toy picture batch."""
    if isinstance(batch, TrainBatch):
        if batch.sd_images is None or batch.time_ids is None:
            raise ValueError("stages 1 and 3 need SD pictures: build the batches with SequenceSettings.sd_size")
        return batch.sd_images, batch.time_ids
    return batch.images, batch.time_ids


class Stage1Task:
    """De-tokenizer pre-training: denoise the VAE latents of a picture given the frozen ViT's features of it.

    With StoryStream batches the picture is each sequence's target: its ViT pixels and its SD pixels.

    Trainable: the resampler and every UNet ``to_k``/``to_v`` (``Detokenizer.set_trainable``), or with
    ``full_unet`` the whole UNet too (the reference's ``full_ft=True`` option).
    """

    stage = "stage1"
    export = ("detokenizer", "detokenizer.")

    def __init__(
        self,
        parts: Components,
        *,
        full_unet: bool = False,
        snr_gamma: float | None = None,
        high_noise_weight: float = 1.0,
        gradient_checkpointing: bool = False,
    ) -> None:
        self.parts = parts
        self._prepare()
        parts.detokenizer.set_trainable()
        if full_unet:
            parts.detokenizer.unet.requires_grad_(True)
        if gradient_checkpointing:  # the UNet's blocks recompute in backward (the reference's stage 3 does)
            parts.detokenizer.unet.enable_gradient_checkpointing()
        scheduler = build_noise_scheduler(parts.config.detokenizer.scheduler)
        self.module = DenoisingModel(parts.detokenizer, scheduler, snr_gamma, high_noise_weight)
        for frozen in self._frozen():
            frozen.eval().requires_grad_(False)

    def _prepare(self) -> None:
        """Adjust ``self.parts`` before anything is frozen or made trainable (nothing to do in stage 1)."""

    def _frozen(self) -> list[nn.Module]:
        return [self.parts.visual_tokenizer, self.parts.vae]

    def to(self, device: torch.device, frozen_dtype: torch.dtype) -> None:
        self.module.to(device)
        with _quiet_dtype_casts():
            for frozen in self._frozen():
                frozen.to(device=device, dtype=frozen_dtype)

    def condition(self, batch: Any) -> torch.Tensor:
        vit_images = batch.target_images if isinstance(batch, TrainBatch) else batch.vit_images
        with torch.no_grad():
            return self.parts.visual_tokenizer(vit_images).float()

    def loss(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        features = self.condition(batch)
        sd_images, time_ids = _sd_pictures(batch)
        seeds = getattr(batch, "noise_seeds", None)
        if seeds is None:  # the global RNG, as the reference
            return {"loss": model(encode_latents(self.parts.vae, sd_images), features, time_ids)}
        # Each picture's latent sample, noise and timestep from its own seed: the same in any process count.
        generators = _generators(seeds)
        latents = encode_latents(self.parts.vae, sd_images, generators)
        noise = _per_sample_randn(generators, latents.shape[1:], latents)
        scheduler = self.module.noise_scheduler
        steps = [sample_timesteps(scheduler.config.num_train_timesteps, 1, self.module.high_noise_weight, generator=g)
                 for g in generators]  # fmt: skip
        timesteps = torch.cat(steps).to(latents.device)
        return {"loss": model(latents, features, time_ids, noise, timesteps)}


class Stage3Task(Stage1Task):
    """De-tokenizer adaptation: as stage 1, conditioned on the frozen stage-2 MLLM's regressed features.

    The MLLM runs teacher-forced on the batch's interleaved ``sequence`` (``return_recon_image_embeds``);
    its output-resampler features for each target image condition the de-tokenizer. With
    ``true_feature_fraction`` > 0 that share of targets (drawn per target) is conditioned on its true ViT
    features instead, stage 1's task, so the de-tokenizer keeps reading features that say who stands where
    while it learns the MLLM's (the reference trains on the regression alone: 0).
    """

    stage = "stage3"

    def __init__(self, parts: Components, *, true_feature_fraction: float = 0.0, **stage1: Any) -> None:
        if not 0.0 <= true_feature_fraction <= 1.0:
            raise ValueError(f"true_feature_fraction must be in [0, 1], got {true_feature_fraction}")
        self.true_feature_fraction = true_feature_fraction
        super().__init__(parts, **stage1)

    def _prepare(self) -> None:
        unmerge_lora(self.parts.mllm)  # a merged MLLM would be run with LoRA applied twice by peft's forward

    def _frozen(self) -> list[nn.Module]:
        return [self.parts.vae, self.parts.mllm, self.parts.visual_tokenizer]

    def condition(self, batch: Any) -> torch.Tensor:
        with torch.no_grad():
            if isinstance(batch, TrainBatch):  # StoryStream: the frozen ViT encodes the sequence's pictures
                sequence = batch.with_embeds(self.parts.visual_tokenizer(batch.images).float())
            else:
                sequence = batch.sequence
            out = self.parts.mllm(**vars(sequence), return_recon_image_embeds=True)
        if out.recon_image_embeds is None or out.recon_image_embeds.shape[0] != _sd_pictures(batch)[0].shape[0]:
            raise ValueError("stage 3 needs exactly one target image per sequence and one picture per target")
        features = out.recon_image_embeds.float()
        if self.true_feature_fraction > 0:
            true = sequence.image_embeds[sequence.embeds_gen_mask].float()
            pick = torch.rand(len(features), device=features.device) < self.true_feature_fraction
            features = torch.where(pick[:, None, None], true, features)
        return features
