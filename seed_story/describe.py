"""Parameter counts of every part of a preset, computed on the ``meta`` device (no memory, any size)."""

from __future__ import annotations

import torch
from pydantic import Field

from seed_story.config import ModelConfig, StrictModel
from seed_story.models.detokenizer import build_detokenizer, build_vae
from seed_story.models.mllm import SeedStoryMLLM
from seed_story.models.visual_tokenizer import VisualTokenizer


class PartCount(StrictModel):
    part: str
    parameters: int = Field(ge=0)
    trainable: bool
    note: str = ""


class ModelDescription(StrictModel):
    preset: str
    parts: list[PartCount]

    @property
    def total(self) -> int:
        return sum(p.parameters for p in self.parts)

    @property
    def trainable(self) -> int:
        return sum(p.parameters for p in self.parts if p.trainable)


def _count(named: list[tuple[str, torch.nn.Parameter]]) -> int:
    return sum(p.numel() for _, p in named)


def describe_model(cfg: ModelConfig) -> ModelDescription:
    """Count parameters per part; "trainable" follows the reference's stage-2/stage-3 recipes.

    Example::

        describe_model(from_preset("seed-story-george")).total  # ~12.5e9
    """
    with torch.device("meta"):
        vit = VisualTokenizer(cfg.vision)
        mllm = SeedStoryMLLM(cfg.mllm)
        detok = build_detokenizer(cfg.detokenizer)
        vae = build_vae(cfg.detokenizer.vae)
    detok.set_trainable()
    llm = list(mllm.llm.named_parameters())
    lora = [(n, p) for n, p in llm if "lora_" in n]
    norms = [(n, p) for n, p in llm if ".modules_to_save." in n]
    embeds = [(n, p) for n, p in llm if n.endswith(("embed_tokens.weight", "lm_head.weight"))]
    taken = {n for n, _ in lora + norms + embeds}
    base = [(n, p) for n, p in llm if n not in taken]
    unet = list(detok.unet.named_parameters())
    parts = [
        PartCount(
            part="visual tokenizer",
            parameters=_count(list(vit.named_parameters())),
            trainable=False,
            note=f"ViT {cfg.vision.layers}x{cfg.vision.width} + attention pool to "
            f"{cfg.vision.n_queries}x{cfg.vision.output_dim}",
        ),
        PartCount(
            part="LLM base",
            parameters=_count(base),
            trainable=False,
            note="frozen Llama weights (incl. peft's unused original norm copies)",
        ),
        PartCount(
            part="LLM embeddings + lm_head",
            parameters=_count(embeds),
            trainable=True,
            note=f"vocab {cfg.mllm.vocab_size}",
        ),
        PartCount(part="LLM norms", parameters=_count(norms), trainable=True, note="peft modules_to_save copies"),
        PartCount(
            part="LoRA",
            parameters=_count(lora),
            trainable=True,
            note=f"r{cfg.mllm.lora.r}/alpha{cfg.mllm.lora.alpha} on {len(cfg.mllm.lora.target_modules)} projections",
        ),
        PartCount(
            part="input resampler",
            parameters=_count(list(mllm.input_resampler.named_parameters())),
            trainable=True,
            note=f"-> {cfg.mllm.num_image_tokens} LLM embeddings",
        ),
        PartCount(
            part="output resampler",
            parameters=_count(list(mllm.output_resampler.named_parameters())),
            trainable=True,
            note=f"-> {cfg.vision.n_queries} ViT-space tokens",
        ),
        PartCount(
            part="de-tokenizer resampler",
            parameters=_count(list(detok.resampler.named_parameters())),
            trainable=True,
            note="ResamplerXLV2",
        ),
        PartCount(
            part="UNet trainable",
            parameters=_count([(n, p) for n, p in unet if p.requires_grad]),
            trainable=True,
            note="every to_k / to_v",
        ),
        PartCount(
            part="UNet frozen", parameters=_count([(n, p) for n, p in unet if not p.requires_grad]), trainable=False
        ),
        PartCount(part="VAE", parameters=_count(list(vae.named_parameters())), trainable=False),
    ]
    return ModelDescription(preset=cfg.name, parts=parts)
