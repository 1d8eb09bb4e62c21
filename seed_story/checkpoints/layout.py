"""Where the released SEED-Story files live under a ``pretrained/`` folder, with every known path variant.

The release, its configs and its helper scripts disagree on several paths (the release's pretrained/ layout); each
component lists the variants in the order we try them. A ``.safetensors`` twin of any ``.bin``/``.pt`` is accepted
first, since it loads without unpickling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seed_story.config import StrictModel


@dataclass(frozen=True)
class Component:
    key: str
    description: str
    candidates: tuple[str, ...]
    is_dir: bool
    needed_for: str  # "inference", "training" or "conversion"


COMPONENTS: tuple[Component, ...] = (
    Component(
        "tokenizer",
        "Llama-2 tokenizer + 66 image tokens",
        ("cvlm_llama2_tokenizer",),
        True,
        "inference",
    ),
    Component("llama", "Llama-2-7B base weights (HF folder)", ("Llama-2-7b-hf",), True, "inference"),
    Component(
        "sdxl",
        "SDXL-base-1.0 (unet/, vae/, scheduler/)",
        ("stable-diffusion-xl-base-1.0",),
        True,
        "inference",
    ),
    Component(
        "qwen_vit",
        "Qwen-VL ViT-G visual tokenizer",
        ("visual_tokenizer/qwen_vit_G.pt", "QwenViT/qwen_vit_G.pt", "qwen_vit_G.pt"),
        False,
        "inference",
    ),
    Component(
        "agent",
        "SEED-Story-George MLLM (stage 2)",
        ("seed_story/george_sft/pytorch_model.bin",),
        False,
        "inference",
    ),
    Component(
        "detokenizer_adapted",
        "de-tokenizer adapted to George (stage 3)",
        ("detokenizer/detokenizer_george_adapted/checkpoint-4000/pytorch_model.bin",),
        False,
        "inference",
    ),
    Component(
        "detokenizer_pretrained",
        "de-tokenizer pre-trained on ViT features (stage 1)",
        (
            "detokenizer/detokenizer_pretrained/checkpoint-55000/pytorch_model.bin",
            "detokenizer_pretrained/checkpoint-55000/pytorch_model.bin",
        ),
        False,
        "training",
    ),
    Component(
        "seedx_agent",
        "SEED-X-pretrained 7B agent (stage-2 init: init_agent seedx)",
        ("seedx/checkpoint-30000/pytorch_model.bin",),
        False,
        "training",
    ),
    Component("qwen_vl_chat", "Qwen-VL-Chat (source of the ViT)", ("Qwen-VL-Chat",), True, "conversion"),
)

COMPONENT_BY_KEY = {c.key: c for c in COMPONENTS}

# The release's two MLLM ("agent") files: SEED-Story-George, and the SEED-X-pretrained agent stage 2 starts from.
AgentRelease = Literal["story", "seedx"]
AGENT_COMPONENT: dict[str, str] = {"story": "agent", "seedx": "seedx_agent"}


def _variants(rel: str) -> list[str]:
    stem, dot, suffix = rel.rpartition(".")
    if dot and suffix in {"bin", "pt", "pth"}:
        safe = stem.removesuffix("pytorch_model") + "model" if stem.endswith("pytorch_model") else stem
        return [f"{safe}.safetensors", rel]
    return [rel]


def find_component(root: Path, component: Component) -> Path | None:
    """First existing path of a component under ``root``, or None."""
    for rel in component.candidates:
        for variant in _variants(rel):
            path = root / variant
            if (component.is_dir and path.is_dir()) or (not component.is_dir and path.is_file()):
                return path
    return None


class PretrainedLayout(StrictModel):
    """Resolved paths of every released component found under one root (``None`` where absent)."""

    root: Path
    tokenizer: Path | None = None
    llama: Path | None = None
    sdxl: Path | None = None
    qwen_vit: Path | None = None
    agent: Path | None = None
    detokenizer_adapted: Path | None = None
    detokenizer_pretrained: Path | None = None
    seedx_agent: Path | None = None
    qwen_vl_chat: Path | None = None

    @classmethod
    def discover(cls, root: str | Path) -> PretrainedLayout:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"pretrained folder not found: {root}")
        return cls(root=root, **{c.key: find_component(root, c) for c in COMPONENTS})

    def require(self, *keys: str) -> None:
        """Raise ``FileNotFoundError`` naming every absent component and the paths that were tried."""
        absent = [COMPONENT_BY_KEY[k] for k in keys if getattr(self, k) is None]
        if absent:
            lines = [f"missing under {self.root}:"]
            lines += [f"  {c.key} ({c.description}): tried {', '.join(c.candidates)}" for c in absent]
            raise FileNotFoundError("\n".join(lines))


def path_size(path: Path) -> int:
    """Bytes in a file, or in every file below a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
