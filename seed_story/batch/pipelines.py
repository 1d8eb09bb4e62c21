"""Which model a batch runs, loaded once per worker process and shared by every task in it."""

from __future__ import annotations

import hashlib
import threading
from functools import cache
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from seed_story.checkpoints.native import MANIFEST
from seed_story.config import StrictModel
from seed_story.generation.pipeline import StoryPipeline
from seed_story.generation.settings import DrawSettings, WriterSettings

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelSpec(StrictModel):
    """A checkpoint folder (this project's or a released ``pretrained/``) and how to run it."""

    path: str = Field(
        description="checkpoint folder (`seed-story pretrained check`), or a registry version: models://name@alias "
        "or models://name@version_id, pinned for the whole run"
    )
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    writer: WriterSettings = WriterSettings()
    draw: DrawSettings = DrawSettings()

    def settings_json(self) -> dict:
        """The settings that change a story's content (stored with each story, so a resume can check them)."""
        draw = self.draw.model_dump(mode="json", exclude={"batch_size"})  # batching never changes a picture
        return {"writer": self.writer.model_dump(mode="json"), "draw": draw}


def model_version(path: str | Path) -> str:
    """``{folder name}-{12 hex}``: a digest of this project's checkpoint manifest, or of a released folder's
    file names and sizes (hashing 30 GB of weights per night would cost minutes)."""
    path = Path(path)
    digest = hashlib.sha256()
    if (path / MANIFEST).is_file():
        digest.update((path / MANIFEST).read_bytes())
    elif path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{f.relative_to(path)}:{f.stat().st_size}\n".encode())
    else:
        raise FileNotFoundError(f"model folder not found: {path}")
    return f"{path.name}-{digest.hexdigest()[:12]}"


_LOCKS: dict[str, threading.Lock] = {}


@cache
def _pipeline(spec_json: str) -> StoryPipeline:
    spec = ModelSpec.model_validate_json(spec_json)
    return StoryPipeline.from_pretrained(
        spec.path, device=spec.device, dtype=DTYPES[spec.dtype], writer_settings=spec.writer, draw_settings=spec.draw
    )


def load_pipeline(spec: ModelSpec) -> tuple[StoryPipeline, threading.Lock]:
    """The process's pipeline for ``spec`` (built on first use) and the lock that serialises its use.

    The writer merges LoRA in place and keeps per-call state, so two threads must not run one pipeline at once.
    """
    key = spec.model_dump_json()
    lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        return _pipeline(key), lock
