"""What ships for the demo: example prompts and openings, and the SEED-Story-Mini checkpoint (package data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_model() -> Path | None:
    """The SEED-Story-Mini checkpoint folder shipped with the package, or ``None`` where it was left out."""
    folder = Path(str(resources.files(__name__) / "seed-story-mini"))
    return folder if (folder / "seed_story.json").is_file() else None
