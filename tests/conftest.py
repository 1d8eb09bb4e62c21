"""Shared fixtures. Tests never touch the network: the hub is forced offline before transformers loads, and S3
tests talk to a moto server on 127.0.0.1 (``s3_server``, ``s3_bucket``)."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Prefect reads these at import: a private home (never ~/.prefect) and no telemetry thread.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="seed-story-tests-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest
import torch

from seed_story.components import Components, load_native
from seed_story.config import ModelConfig
from seed_story.presets import from_preset
from seed_story.training.toy import toy_checkpoint
from tests.prefect_server import prefect_server  # a real server, for tests with workers and deployments

__all__ = ["prefect_server"]


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return from_preset("tiny")


@pytest.fixture(scope="session")
def george_config() -> ModelConfig:
    return from_preset("seed-story-george")


@pytest.fixture(scope="session")
def toy_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` model trained on the toy story world (~20 s, once per session), saved as a checkpoint."""
    return toy_checkpoint(tmp_path_factory.mktemp("toy-model"))


@pytest.fixture(scope="session")
def toy_components(toy_checkpoint_dir: Path) -> Components:
    """The toy checkpoint loaded; eval mode, frozen."""
    return load_native(toy_checkpoint_dir)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """Prefect's temporary local API (SQLite) for the session; yields its URL so subprocesses can share it."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # Generous: on a loaded 2-core machine the server has taken over a minute to come up.
    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- S3 on loopback: a moto server for storage tests (no network, never reads ~/.aws) ---


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the loopback S3 server, with a raw boto3 client for poking at it behind a store's back."""

    name: str
    endpoint_url: str
    client: Any


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of a moto S3 server on 127.0.0.1 (in-process thread, free port), stopped after the session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(timeout=15)  # start() waits for the socket with no timeout of its own
    if starter.is_alive():
        pytest.fail("moto S3 server did not start within 15 s")
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Fake AWS credentials in the environment; AWS config files point into ``tmp_path``, so ~/.aws is never read."""
    for name in (
        "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_bucket(s3_server: str, s3_env: None) -> S3Bucket:
    """A new, empty bucket for this test on the session's moto server."""
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "total_max_attempts": 1})
    client = boto3.client("s3", endpoint_url=s3_server, config=config)
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return S3Bucket(name=name, endpoint_url=s3_server, client=client)
