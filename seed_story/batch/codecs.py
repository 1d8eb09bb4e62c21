"""Bytes of what the batch stages store: feature tensors (safetensors), pictures (PNG), sampling generator state."""

from __future__ import annotations

import base64
import io

import torch
from PIL import Image
from safetensors.torch import load, save

from seed_story.runstore.records import StepRecord


def features_to_bytes(features: torch.Tensor) -> bytes:
    return save({"features": features.detach().float().cpu().contiguous()})


def features_from_bytes(data: bytes) -> torch.Tensor:
    return load(data)["features"]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_generator_state(state: torch.Tensor | None) -> str | None:
    return None if state is None else base64.b64encode(state.numpy().tobytes()).decode("ascii")


def generator_state(record: StepRecord) -> torch.Tensor | None:
    """The sampling generator's state after a stored step (``None`` when decoding was greedy)."""
    if record.generator_state is None:
        return None
    return torch.frombuffer(bytearray(base64.b64decode(record.generator_state)), dtype=torch.uint8)
