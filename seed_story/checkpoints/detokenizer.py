"""Loading the de-tokenizer: SDXL-base parts from their diffusers folder, the adapter checkpoint on top.

The released adapter files (stage 1 ``checkpoint-55000``, stage 3 ``checkpoint-4000``) hold ``resampler.*``
and the UNet weights the stages trained; the frozen UNet weights come from ``stable-diffusion-xl-base-1.0``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

from seed_story.checkpoints.safe_load import load_state_dict_file
from seed_story.checkpoints.strict import AllowList, KeyReport, load_strict
from seed_story.config import DetokenizerConfig
from seed_story.models.detokenizer import Detokenizer, ResamplerXLV2

SDXL_FROZEN_UNET = AllowList(
    "sdxl-frozen-unet",
    ("unet.*",),
    "frozen SDXL UNet weights, already loaded from the SDXL folder",
    # The trained to_k/to_v must come from the adapter checkpoint itself.
    exclude=("unet.*.to_k.weight", "unet.*.to_v.weight"),
)


def _check_sdxl_folder(sdxl_dir: Path) -> None:
    missing = [s for s in ("unet", "vae", "scheduler") if not (sdxl_dir / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{sdxl_dir} is not an SDXL diffusers folder: no {', '.join(missing)}/ inside")


def load_unet(sdxl_dir: str | Path, cfg: DetokenizerConfig, *, dtype: torch.dtype) -> UNet2DConditionModel:
    sdxl_dir = Path(sdxl_dir)
    _check_sdxl_folder(sdxl_dir)
    unet = UNet2DConditionModel.from_pretrained(str(sdxl_dir), subfolder="unet", torch_dtype=dtype)
    want = cfg.unet
    got = unet.config
    if tuple(got.block_out_channels) != want.block_out_channels or got.cross_attention_dim != want.cross_attention_dim:
        raise ValueError(
            f"{sdxl_dir}/unet does not match the preset: block_out_channels {tuple(got.block_out_channels)} vs "
            f"{want.block_out_channels}, cross_attention_dim {got.cross_attention_dim} vs {want.cross_attention_dim}"
        )
    return unet


def load_vae(sdxl_dir: str | Path, *, dtype: torch.dtype) -> AutoencoderKL:
    _check_sdxl_folder(Path(sdxl_dir))
    return AutoencoderKL.from_pretrained(str(sdxl_dir), subfolder="vae", torch_dtype=dtype)


def load_scheduler(sdxl_dir: str | Path) -> EulerDiscreteScheduler:
    _check_sdxl_folder(Path(sdxl_dir))
    return EulerDiscreteScheduler.from_pretrained(str(sdxl_dir), subfolder="scheduler")


def load_detokenizer(
    adapter_path: str | Path,
    sdxl_dir: str | Path,
    cfg: DetokenizerConfig,
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[Detokenizer, KeyReport]:
    """SDXL UNet from ``sdxl_dir`` + a released (or this project's) adapter checkpoint, loaded strictly.

    Example::

        detok, report = load_detokenizer(
            "pretrained/detokenizer/detokenizer_george_adapted/checkpoint-4000/pytorch_model.bin",
            "pretrained/stable-diffusion-xl-base-1.0", cfg.detokenizer, dtype=torch.float16)
    """
    detok = Detokenizer(ResamplerXLV2(cfg.resampler).to(dtype), load_unet(sdxl_dir, cfg, dtype=dtype))
    report = load_strict(
        detok,
        load_state_dict_file(adapter_path),
        what=f"de-tokenizer checkpoint {adapter_path}",
        allow_missing=[SDXL_FROZEN_UNET],
    )
    return detok.eval().requires_grad_(False), report
