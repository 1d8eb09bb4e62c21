"""``seed-story pretrained check``: what a ``pretrained/`` folder holds, lacks or holds in the wrong shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from seed_story.checkpoints.agent import agent_allow_lists
from seed_story.checkpoints.detokenizer import SDXL_FROZEN_UNET
from seed_story.checkpoints.layout import AGENT_COMPONENT, COMPONENTS, Component, PretrainedLayout, path_size
from seed_story.checkpoints.remap import peft04_to_current
from seed_story.checkpoints.safe_load import read_shapes
from seed_story.checkpoints.strict import AllowList, compare_keys
from seed_story.config import ModelConfig, StrictModel
from seed_story.models.detokenizer import build_detokenizer
from seed_story.models.mllm import SeedStoryMLLM
from seed_story.models.visual_tokenizer import VisualTokenizer
from seed_story.presets import from_preset

Status = Literal["ok", "present", "missing", "mismatched", "unreadable"]

_REQUIRED_FILES = {
    "tokenizer": (("tokenizer.model", "tokenizer.json"),),
    "llama": (
        ("config.json",),
        ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"),
    ),
    "sdxl": (("unet/config.json",), ("vae/config.json",), ("scheduler/scheduler_config.json",)),
    "qwen_vl_chat": (("config.json",),),
}

_AGENT_RELEASE = {key: release for release, key in AGENT_COMPONENT.items()}


class ComponentStatus(StrictModel):
    key: str
    description: str
    needed_for: str
    status: Status
    path: str | None = None
    size_bytes: int = 0
    detail: str = ""


def _expected_shapes(key: str, cfg: ModelConfig) -> tuple[dict[str, tuple[int, ...]], list[AllowList], list[AllowList]]:
    with torch.device("meta"):
        if key == "qwen_vit":
            module, miss, extra = VisualTokenizer(cfg.vision), [], []
        elif key in _AGENT_RELEASE:
            module, (miss, extra) = SeedStoryMLLM(cfg.mllm), agent_allow_lists(_AGENT_RELEASE[key], llama_dir=True)
        else:
            module, miss, extra = build_detokenizer(cfg.detokenizer), [SDXL_FROZEN_UNET], []
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}, miss, extra


def _deep_check_file(component: Component, path: Path, cfg: ModelConfig) -> tuple[Status, str]:
    try:
        found = read_shapes(path)
    except Exception as err:  # any reason a file cannot be read is reported, not raised
        return "unreadable", f"{type(err).__name__}: {err}"
    expected, miss, extra = _expected_shapes(component.key, cfg)
    if component.key in _AGENT_RELEASE:
        found = dict(peft04_to_current(found, expected.keys()))
    report = compare_keys(expected, found, allow_missing=miss, allow_unexpected=extra)
    if report.ok:
        accepted = {**report.allowed_missing, **report.allowed_unexpected}
        named = ", ".join(f"{n} [{name}]" for name, n in accepted.items())
        return "ok", f"{report.loaded} tensors match" + (f"; allowed: {named}" if named else "")
    return "mismatched", report.describe(component.key, limit=5)


def _check_dir(component: Component, path: Path) -> tuple[Status, str]:
    absent = [
        " or ".join(group)
        for group in _REQUIRED_FILES.get(component.key, ())
        if not any((path / name).exists() for name in group)
    ]
    if absent:
        return "mismatched", "lacks " + "; ".join(absent)
    return "ok", ""


def check_pretrained(
    root: str | Path,
    cfg: ModelConfig | None = None,
    *,
    deep: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[ComponentStatus]:
    """One status per released component. ``deep`` also compares every tensor name and shape with the preset;
    ``progress(done, total)`` is called after each component.

    Example::

        for c in check_pretrained("pretrained", deep=True):
            c.key, c.status, c.detail  # e.g. ('mllm', 'ok', '')
    """
    cfg = cfg or from_preset("seed-story-george")
    layout = PretrainedLayout.discover(root)
    out = []
    for done, component in enumerate(COMPONENTS, start=1):
        path: Path | None = getattr(layout, component.key)
        if path is None:
            status, detail, size = "missing", "tried " + ", ".join(component.candidates), 0
        else:
            size = path_size(path)
            if component.is_dir:
                status, detail = _check_dir(component, path)
            elif deep:
                status, detail = _deep_check_file(component, path, cfg)
            else:
                status, detail = "present", ""
        out.append(
            ComponentStatus(
                key=component.key,
                description=component.description,
                needed_for=component.needed_for,
                status=status,
                path=str(path) if path else None,
                size_bytes=size,
                detail=detail,
            )
        )
        if progress is not None:
            progress(done, len(COMPONENTS))
    return out
