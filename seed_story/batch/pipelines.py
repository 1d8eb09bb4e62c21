"""Which model a batch runs, loaded once per worker process and shared by every task in it."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator

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
    device: str = Field(default="cpu", description="where the model runs: cpu, cuda, cuda:0, ...")
    draw_device: str | None = Field(
        default=None, description="where the drawer half runs, if not on `device` (a second GPU: cuda:1)"
    )
    memory: Literal["normal", "low"] = Field(
        default="normal",
        description="normal: both halves stay on their devices (pictures may be drawn while stories are written); "
        "low: only the half in use stays on the device (a 24 GB card at the released size), stages in turn",
    )
    draw_alongside: bool | None = Field(
        default=None,
        description="draw each step as soon as it is stored, while writing goes on (memory: normal only); "
        "default: on where the writer runs on a GPU or the drawer has a device of its own",
    )
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    writer: WriterSettings = WriterSettings()
    draw: DrawSettings = DrawSettings()

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.memory == "low" and self.draw_device not in (None, self.device):
            raise ValueError("memory: low keeps one half on one device; a draw_device of its own needs memory: normal")
        if self.memory == "low" and self.draw_alongside:
            raise ValueError("draw_alongside needs both halves resident (memory: normal), not memory: low")
        return self

    @property
    def draws_while_writing(self) -> bool:
        """Whether pictures are drawn while stories are written: both halves resident and ``draw_alongside``, by
        default where the writer runs on a GPU (it leaves the device idle between its small decode steps) or the
        drawer on a device of its own. Both halves on CPU cores compete for them: measured slower than in turn."""
        if self.memory == "low":
            return False
        if self.draw_alongside is not None:
            return self.draw_alongside
        return torch.device(self.device).type != "cpu" or self.draw_device not in (None, self.device)

    def settings_json(self) -> dict:
        """The settings that change a story's content (stored with each story, so a resume can check them)."""
        draw = self.draw.model_dump(mode="json", exclude={"batch_size"})  # batching moves a pixel by a level at most
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


class LoadedModel:
    """A worker's model for one :class:`ModelSpec`: the pipeline and who may use which half when.

    The writer half (ViT + MLLM) and the drawer half (de-tokenizer resampler + UNet + VAE) are separate networks,
    so with ``memory: normal`` each has its own lock and a story's pictures can be drawn while other steps are
    written; with ``draw_device`` the halves sit on two devices. With ``memory: low`` one lock covers both and
    only the half in use stays on the device: the other is parked in CPU memory until it is needed again.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.pipeline = StoryPipeline.from_pretrained(
            spec.path, device="cpu", dtype=DTYPES[spec.dtype], writer_settings=spec.writer, draw_settings=spec.draw
        )
        parts = self.pipeline.components
        self._halves = {"writer": (parts.visual_tokenizer, parts.mllm), "drawer": (parts.detokenizer, parts.vae)}
        self._devices = {"writer": torch.device(spec.device), "drawer": torch.device(spec.draw_device or spec.device)}
        self._resident: set[str] = set()
        self._place("writer")
        # The guidance negative is the ViT's output for a zero image: made once, where the ViT runs in every mode.
        _ = self.pipeline.negative_features
        if spec.memory == "normal":
            self._place("drawer")
            self._locks = {"writer": threading.Lock(), "drawer": threading.Lock()}
        else:
            self._locks = dict.fromkeys(("writer", "drawer"), threading.Lock())

    @property
    def resident(self) -> frozenset[str]:
        """The halves on their devices now (both with ``memory: normal``; at most one with ``low``)."""
        return frozenset(self._resident)

    def _place(self, half: str) -> None:
        for module in self._halves[half]:
            module.to(self._devices[half])
        self._resident.add(half)

    def _park(self, half: str) -> None:
        for module in self._halves[half]:
            module.to("cpu")
        self._resident.discard(half)
        if self._devices[half].type == "cuda":
            torch.cuda.empty_cache()  # give the parked half's blocks back before the other half allocates

    @contextmanager
    def use(self, half: Literal["writer", "drawer"]) -> Iterator[StoryPipeline]:
        """Hold ``half`` for one task: its lock, and (``memory: low``) the device to itself."""
        with self._locks[half]:
            if self.spec.memory == "low" and half not in self._resident:
                for other in self._resident - {half}:
                    self._park(other)
                self._place(half)
            yield self.pipeline


_LOADING = threading.Lock()


@cache
def _load(spec_json: str) -> LoadedModel:
    return LoadedModel(ModelSpec.model_validate_json(spec_json))


def load_model(spec: ModelSpec) -> LoadedModel:
    """The process's model for ``spec``, built on first use and shared by every task in the process."""
    with _LOADING:  # two tasks starting at once build it once
        return _load(spec.model_dump_json())
