"""The set of networks a story needs, built at random (tests, benchmarks) or loaded from disk.

``load_components(path)`` accepts either a ``pretrained/`` folder laid out like the original release or a
checkpoint folder written by this project (``seed_story.json`` inside).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler
from transformers import PreTrainedTokenizerBase

from seed_story.checkpoints.agent import load_agent
from seed_story.checkpoints.detokenizer import load_detokenizer, load_scheduler, load_vae
from seed_story.checkpoints.layout import AGENT_COMPONENT, AgentRelease, PretrainedLayout
from seed_story.checkpoints.native import MANIFEST, check_same_vae, load_part, read_manifest
from seed_story.checkpoints.vision import load_visual_tokenizer
from seed_story.config import ModelConfig
from seed_story.models.detokenizer import Detokenizer, build_detokenizer, build_vae
from seed_story.models.mllm import SeedStoryMLLM
from seed_story.models.schedulers import build_scheduler
from seed_story.models.visual_tokenizer import VisualTokenizer
from seed_story.presets import from_preset
from seed_story.tokenizer import build_byte_tokenizer, load_tokenizer


@dataclass
class Components:
    """Every network of SEED-Story plus its tokenizer and scheduler, on one device and dtype."""

    config: ModelConfig
    tokenizer: PreTrainedTokenizerBase
    visual_tokenizer: VisualTokenizer
    mllm: SeedStoryMLLM
    detokenizer: Detokenizer
    vae: AutoencoderKL
    scheduler: EulerDiscreteScheduler

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Components:
        for module in (self.visual_tokenizer, self.mllm, self.detokenizer, self.vae):
            # Cast only when needed: diffusers warns on every dtype cast of the VAE, even a no-op one.
            if dtype is None or next(module.parameters()).dtype == dtype:
                module.to(device=device)
            else:
                module.to(device=device, dtype=dtype)
        return self

    def eval(self) -> Components:
        for module in (self.visual_tokenizer, self.mllm, self.detokenizer, self.vae):
            module.eval().requires_grad_(False)
        return self

    def set_vae_scaling_factor(self, factor: float) -> None:
        """Set the VAE's ``scaling_factor`` on the network and in ``config`` (which checkpoints save)."""
        self.vae.register_to_config(scaling_factor=factor)
        vae_cfg = self.config.detokenizer.vae.model_copy(update={"scaling_factor": factor})
        detok = self.config.detokenizer.model_copy(update={"vae": vae_cfg})
        self.config = self.config.model_copy(update={"detokenizer": detok})

    def swap_detokenizer(self, checkpoint: str | Path) -> None:
        """Replace the de-tokenizer by ``checkpoint``'s, built from that checkpoint's own config.

        Stage 1 may train another de-tokenizer shape than the one stage 2's output carries (stage 2 never
        touches it); only the VAE must be the same one, since stage 1 learnt its latents.
        """
        det_cfg = read_manifest(checkpoint).model.detokenizer
        check_same_vae(det_cfg, self.config.detokenizer, str(checkpoint))
        self.detokenizer = build_detokenizer(det_cfg)
        load_part(checkpoint, "detokenizer", self.detokenizer)
        self.config = self.config.model_copy(update={"detokenizer": det_cfg})

    def swap_vae(self, checkpoint: str | Path) -> None:
        """Replace the VAE by ``checkpoint``'s, and its scaling factor (set by the VAE stage) with it."""
        load_part(checkpoint, "vae", self.vae)  # strict: a VAE of another shape fails here, by key and shape
        self.set_vae_scaling_factor(read_manifest(checkpoint).model.detokenizer.vae.scaling_factor)


def build_random(cfg: ModelConfig, *, seed: int = 0, device: str | torch.device | None = None) -> Components:
    """Randomly initialised components (byte-level tokenizer): for tests and speed benchmarks only.

    ``device="meta"`` builds the networks without memory (shapes, dtypes and trainable flags only, any size).
    """
    torch.manual_seed(seed)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        vit, mllm = VisualTokenizer(cfg.vision), SeedStoryMLLM(cfg.mllm)
        detokenizer, vae = build_detokenizer(cfg.detokenizer), build_vae(cfg.detokenizer.vae)
    return Components(
        config=cfg,
        tokenizer=build_byte_tokenizer(cfg.mllm.num_image_tokens),
        visual_tokenizer=vit,
        mllm=mllm,
        detokenizer=detokenizer,
        vae=vae,
        scheduler=build_scheduler(cfg.detokenizer.scheduler),  # keeps CPU tensors of its own: never on meta
    ).eval()


def load_native(directory: str | Path) -> Components:
    """Load a checkpoint folder written by :func:`seed_story.checkpoints.native.save_checkpoint`."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    missing = {"visual_tokenizer", "mllm", "detokenizer", "vae"} - set(manifest.parts)
    if missing or not manifest.has_tokenizer:
        raise ValueError(
            f"{directory} lacks {sorted(missing) or ''}{' tokenizer' if not manifest.has_tokenizer else ''}"
        )
    cfg = manifest.model
    parts = build_random(cfg)
    parts.tokenizer = load_tokenizer(directory / "tokenizer", cfg.mllm.num_image_tokens)
    for name in ("visual_tokenizer", "mllm", "detokenizer", "vae"):
        load_part(directory, name, getattr(parts, name))
    return parts.eval()


def load_released(
    root: str | Path,
    *,
    cfg: ModelConfig | None = None,
    dtype: torch.dtype = torch.float16,
    detokenizer_stage: str = "adapted",
    merge_lora: bool = False,
    agent: AgentRelease = "story",
) -> Components:
    """Load the original release from a ``pretrained/`` folder (see ``seed-story pretrained check``).

    ``agent="seedx"`` takes the SEED-X-pretrained agent instead of SEED-Story-George: stage 2's starting point,
    which the release pairs with the stage-1 de-tokenizer (``detokenizer_stage="pretrained"``).
    """
    cfg = cfg or from_preset("seed-story-george")
    layout = PretrainedLayout.discover(root)
    detok_key = {"adapted": "detokenizer_adapted", "pretrained": "detokenizer_pretrained"}[detokenizer_stage]
    agent_key = AGENT_COMPONENT[agent]
    layout.require("tokenizer", "llama", "sdxl", "qwen_vit", agent_key, detok_key)
    vit, _ = load_visual_tokenizer(layout.qwen_vit, cfg.vision, dtype=dtype)
    mllm, _ = load_agent(
        getattr(layout, agent_key), cfg.mllm, llama_dir=layout.llama, dtype=dtype, merge_lora=merge_lora, release=agent
    )
    detok, _ = load_detokenizer(getattr(layout, detok_key), layout.sdxl, cfg.detokenizer, dtype=dtype)
    return Components(
        config=cfg,
        tokenizer=load_tokenizer(layout.tokenizer, cfg.mllm.num_image_tokens),
        visual_tokenizer=vit,
        mllm=mllm,
        detokenizer=detok,
        vae=load_vae(layout.sdxl, dtype=dtype),
        scheduler=load_scheduler(layout.sdxl),
    ).eval()


def load_components(path: str | Path, *, dtype: torch.dtype = torch.float32, **released: object) -> Components:
    """Either kind of folder: this project's checkpoint (has ``seed_story.json``) or a released ``pretrained/``.

    ``released`` keyword arguments go to :func:`load_released` (``cfg``, ``detokenizer_stage``, ``merge_lora``,
    ``agent``).
    """
    path = Path(path)
    if (path / MANIFEST).is_file():
        return load_native(path).to("cpu", dtype)
    return load_released(path, dtype=dtype, **released)  # type: ignore[arg-type]
