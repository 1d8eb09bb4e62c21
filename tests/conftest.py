"""Shared fixtures. Tests never touch the network: the hub is forced offline before transformers loads."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

from seed_story.components import Components
from seed_story.config import ModelConfig
from seed_story.toy import train_toy_model


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return ModelConfig.from_preset("tiny")


@pytest.fixture(scope="session")
def george_config() -> ModelConfig:
    return ModelConfig.from_preset("seed-story-george")


@pytest.fixture(scope="session")
def toy_components() -> Components:
    """The ``tiny`` model trained on the toy story world (~20 s, once per session); eval mode, frozen."""
    return train_toy_model()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
