"""The temporary Prefect API a command starts before its imports: it answers, it stops, and a server that cannot
start says why in one line."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from seed_story.cli.local_api import LocalAPI, _free_port


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> str:
    """One database for both servers: the first start creates it (the slow part), the second finds it."""
    return str(tmp_path_factory.mktemp("prefect-home"))


def test_the_api_answers_and_stops(prefect_home, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", prefect_home)
    api = LocalAPI(_free_port())
    try:
        api.wait()
        with urllib.request.urlopen(f"{api.url}/health", timeout=10) as response:
            assert json.loads(response.read()) is True
    finally:
        api.stop()
    assert api.process.poll() is not None  # gone, not left behind


def test_a_server_that_cannot_start_says_why(prefect_home, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", prefect_home)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api = LocalAPI(taken.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match=r"exited with code \d+ while starting: .*address already in use"):
                api.wait()
        finally:
            api.stop()
