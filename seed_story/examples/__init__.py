"""What ships for the demo: example prompts and openings, and the SEED-Story-Mini checkpoint (package data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_model() -> Path | None:
    """The SEED-Story-Mini checkpoint folder shipped with the package, or ``None`` where it was left out."""
    folder = Path(str(resources.files(__name__) / "seed-story-mini"))
    return folder if (folder / "seed_story.json").is_file() else None


# The mini de-tokenizer draws best without classifier-free guidance (1 skips the unconditional pass); the
# reference's 7.5 saturates it (docs/mini-model.md, lesson 5).
MINI_GUIDANCE = 1.0
REFERENCE_GUIDANCE = 7.5
# The mini's drawing: the fastest sampler x steps whose judge reconstruction is within 0.02 of the best, from
# bench/samplers.py (12 held-out stories x 4 steps: DPM-Solver++ 2M at 12 steps scores what Euler at 25 does, in
# half the time; docs/generation.md). Other models (the toy) draw with the reference's Euler at half its 50 steps:
# a demo, not a night.
MINI_DRAW = ("dpm++2m", 12)
OTHER_DRAW = ("euler", 25)


def is_mini(model: Path) -> bool:
    """Whether the checkpoint folder holds the SEED-Story-Mini preset (the demo's prompts and guidance differ)."""
    from seed_story.checkpoints.native import read_manifest

    return read_manifest(model).model.name == "seed-story-mini"


def demo_guidance(model: Path) -> float:
    """The guidance scale the demo draws ``model``'s pictures with."""
    return MINI_GUIDANCE if is_mini(model) else REFERENCE_GUIDANCE


def demo_draw(model: Path) -> tuple[str, int]:
    """(sampler, denoising steps) the demo draws ``model``'s pictures with."""
    return MINI_DRAW if is_mini(model) else OTHER_DRAW


def demo_prompts(model: Path) -> str:
    """The bundled prompts (relative to this package) that suit a model: story-world openings for the mini."""
    return "mini/demo.jsonl" if is_mini(model) else "demo.jsonl"
