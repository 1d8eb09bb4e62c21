"""Typed records the batch stages write to the store (see :mod:`seed_story.batch.layout`)."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from typing import Literal

import torch
from PIL import Image
from pydantic import Field
from safetensors.torch import load, save

from seed_story.batch.manifest import ManifestProblem, ManifestRow
from seed_story.config import StrictModel
from seed_story.generation.records import StopReason


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class StoryPlan(StrictModel):
    """What a story runs with: its validated manifest row, where the opening comes from, the model."""

    run_id: str
    story_id: str
    line: int
    row: ManifestRow
    image_uri: str = Field(description="the row's image resolved against the manifest's folder")
    model_version: str
    settings: dict = Field(description="writer + draw settings, as JSON")

    def same_work(self, other: StoryPlan) -> bool:
        """Whether ``other`` asks for the same story (the manifest line may move between nights)."""
        keys = ("row", "image_uri", "model_version", "settings")
        return self.model_dump(include=set(keys)) == other.model_dump(include=set(keys))


class StepRecord(StrictModel):
    """A written step; stored after its features, so its presence means the step is safely written."""

    story_id: str
    step: int = Field(ge=1)
    text: str
    token_ids: list[int]
    feature_key: str
    generator_state: str | None = Field(default=None, description="base64 torch generator state after the step")
    prompt_tokens: int
    kv_tokens: int
    write_seconds: float
    attempt: str
    written_at: str = Field(default_factory=now)

    def generator_tensor(self) -> torch.Tensor | None:
        if self.generator_state is None:
            return None
        return torch.frombuffer(bytearray(base64.b64decode(self.generator_state)), dtype=torch.uint8)


def encode_generator_state(state: torch.Tensor | None) -> str | None:
    return None if state is None else base64.b64encode(state.numpy().tobytes()).decode("ascii")


class DrawRecord(StrictModel):
    """A step's picture is stored (written after the PNG)."""

    story_id: str
    step: int
    image_key: str
    draw_seconds: float
    attempt: str
    drawn_at: str = Field(default_factory=now)


class WritingDone(StrictModel):
    """The MLLM has finished a story: how many steps and why it stopped."""

    story_id: str
    steps: int
    stop_reason: StopReason
    attempt: str


StoryState = Literal["finished", "failed", "pending"]


class StoryFailure(StrictModel):
    story_id: str
    stage: str
    reason: str


class RunSummary(StrictModel):
    """What one attempt at a run did: counts, failures, bad rows and stage timings."""

    run_id: str
    attempt: str
    manifest: str
    model_version: str
    started_at: str
    finished_at: str
    rows: int
    bad_rows: list[ManifestProblem]
    skipped_finished: list[str]
    completed: list[str]
    failed: list[StoryFailure]
    steps_written: int
    steps_resumed: int
    pictures_drawn: int
    seconds: dict[str, float]


def features_to_bytes(features: torch.Tensor) -> bytes:
    return save({"features": features.detach().float().cpu().contiguous()})


def features_from_bytes(data: bytes) -> torch.Tensor:
    return load(data)["features"]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
