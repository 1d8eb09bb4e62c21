"""This project's own checkpoints: one safetensors file per network and a JSON manifest beside them.

Layout of a checkpoint folder::

    seed_story.json              # CheckpointManifest: format, ModelConfig, parts, dtype, free-form metadata
    visual_tokenizer.safetensors # any subset of the parts
    mllm.safetensors
    detokenizer.safetensors
    vae.safetensors
    tokenizer/                   # optional, save_pretrained() of the tokenizer

Each file is written under a temporary name and renamed, and the manifest is written last, so a folder
with a manifest is always complete.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from safetensors.torch import save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from seed_story.checkpoints.safe_load import load_state_dict_file
from seed_story.checkpoints.strict import KeyReport, load_strict
from seed_story.config import DetokenizerConfig, ModelConfig, StrictModel

FORMAT = "seed-story-checkpoint/1"
MANIFEST = "seed_story.json"
PARTS = ("visual_tokenizer", "mllm", "detokenizer", "vae")


class CheckpointManifest(StrictModel):
    format: str = FORMAT
    model: ModelConfig
    parts: dict[str, str]
    dtype: str
    created: str
    has_tokenizer: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


def save_checkpoint(
    directory: str | Path,
    cfg: ModelConfig,
    parts: Mapping[str, nn.Module],
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save the given networks (a subset of ``PARTS``) and their config; returns the manifest path.

    Example::

        save_checkpoint("out/mini", cfg, {"mllm": mllm, "detokenizer": detok}, tokenizer=tok)
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown checkpoint part(s) {sorted(unknown)}; expected a subset of {PARTS}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files, dtypes = {}, set()
    for name, module in parts.items():
        tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
        dtypes |= {str(v.dtype).removeprefix("torch.") for v in tensors.values() if v.is_floating_point()}
        path = directory / f"{name}.safetensors"
        tmp = path.with_name(path.name + ".partial")
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "part": name})
        tmp.replace(path)
        files[name] = path.name
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory / "tokenizer"))
    manifest = CheckpointManifest(
        model=cfg,
        parts=files,
        dtype=",".join(sorted(dtypes)),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        has_tokenizer=tokenizer is not None,
        metadata=dict(metadata or {}),
    )
    out = directory / MANIFEST
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(manifest.model_dump_json(indent=2))
    tmp.replace(out)
    return out


def read_manifest(directory: str | Path) -> CheckpointManifest:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a seed-story checkpoint (no {MANIFEST})")
    manifest = CheckpointManifest.model_validate_json(path.read_text())
    if manifest.format != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {manifest.format!r}, this version reads {FORMAT!r}")
    return manifest


def load_part(directory: str | Path, part: str, module: nn.Module) -> KeyReport:
    """Strictly load one saved network into ``module`` (built from the manifest's config)."""
    manifest = read_manifest(directory)
    if part not in manifest.parts:
        raise KeyError(f"checkpoint {directory} has no {part!r}; it has {sorted(manifest.parts)}")
    state = load_state_dict_file(Path(directory) / manifest.parts[part])
    return load_strict(module, state, what=f"{part} of {directory}")


def check_same_vae(detokenizer: DetokenizerConfig, model: DetokenizerConfig, source: str | Path) -> None:
    """Raise unless ``source``'s de-tokenizer was trained over the model's VAE (it learnt that VAE's latents)."""
    if detokenizer.vae != model.vae:
        raise ValueError(f"the de-tokenizer in {source} was trained over another VAE than the model's")


def export_checkpoint(
    source: str | Path,
    target: str | Path,
    dtype: torch.dtype = torch.float16,
    *,
    detokenizer: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Copy a checkpoint with its floating-point weights stored as ``dtype`` (e.g. to ship it half the size).

    Loading casts each tensor back to the module's own dtype, so a float16 export loads into a float32
    model. ``detokenizer`` takes the de-tokenizer, with its config, from another checkpoint (say stage 1's
    output); it must have been trained over the same VAE. The manifest is written last, as by
    :func:`save_checkpoint`. ``progress(done, total)`` is called after each network.

    Example::

        export_checkpoint("runs/mini/stage2_anneal/final", "out/mini", detokenizer="runs/mini/stage1/final")
    """
    source, target = Path(source), Path(target)
    manifest = read_manifest(source)
    sources = {name: source / file for name, file in manifest.parts.items()}
    if detokenizer is not None:
        other = read_manifest(detokenizer)
        if "detokenizer" not in other.parts or "detokenizer" not in manifest.parts:
            raise ValueError(f"both {source} and {detokenizer} must hold a de-tokenizer")
        check_same_vae(other.model.detokenizer, manifest.model.detokenizer, detokenizer)
        sources["detokenizer"] = Path(detokenizer) / other.parts["detokenizer"]
        model = manifest.model.model_copy(update={"detokenizer": other.model.detokenizer})
        manifest = manifest.model_copy(update={"model": model})
    target.mkdir(parents=True, exist_ok=True)
    for done, (part, name) in enumerate(manifest.parts.items(), start=1):
        tensors = load_state_dict_file(sources[part])
        cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        tmp = target / (name + ".partial")
        save_file(cast, str(tmp), metadata={"format": FORMAT, "part": name.removesuffix(".safetensors")})
        tmp.replace(target / name)
        if progress is not None:
            progress(done, len(manifest.parts))
    if manifest.has_tokenizer:
        shutil.copytree(source / "tokenizer", target / "tokenizer", dirs_exist_ok=True)
    metadata = {**manifest.metadata, "exported_from": str(source)}
    if detokenizer is not None:
        metadata["detokenizer_from"] = str(detokenizer)
    exported = manifest.model_copy(update={"dtype": str(dtype).removeprefix("torch."), "metadata": metadata})
    out = target / MANIFEST
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(exported.model_dump_json(indent=2))
    tmp.replace(out)
    return out
