"""Shared fixtures. Tests never touch the network: the hub is forced offline before transformers loads."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

from seed_story.config import ModelConfig


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return ModelConfig.from_preset("tiny")


@pytest.fixture(scope="session")
def george_config() -> ModelConfig:
    return ModelConfig.from_preset("seed-story-george")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
