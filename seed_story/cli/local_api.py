"""Prefect's temporary local API, started before a command imports torch, so both boot at once.

Without ``PREFECT_API_URL`` Prefect starts the same server itself, but only when the flow begins: the command
then waits ~3-5 s for it after spending ~5 s on imports and model loads. Started here first, the server boots on
the other core while this process imports, and the flow finds it ready. The command runs Prefect's own ephemeral
server app (the uvicorn command Prefect runs), on loopback, with the UI and telemetry off.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from importlib.util import find_spec
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class LocalAPI:
    """One temporary API server process, booted in the background; :meth:`wait` blocks until it answers,
    :meth:`stop` ends it."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api"
        prefect_dir = Path(find_spec("prefect").origin).parent  # type: ignore[union-attr, arg-type]
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # What Prefect sets for its own ephemeral server: no background services besides the API.
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        # Its output goes to a file, not to this command's terminal or pipe, which a server left behind would hold.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "error", "--lifespan", "on", "--timeout-graceful-shutdown", "1"],
            env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        self._error: str | None = None
        self._ready = threading.Thread(target=self._boot, args=(180.0,), name="local-api-boot", daemon=True)
        self._ready.start()

    def _boot(self, timeout: float) -> None:
        """Poll until the API answers, then make the requests a flow run starts with once: the server's first
        database and version calls cost ~0.5 s, paid here while the command is still importing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._error = f"the local Prefect API exited with code {self.process.returncode} while starting"
                return
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        else:
            self._error = f"the local Prefect API did not answer within {timeout:.0f} s"
            return
        json = {"Content-Type": "application/json"}
        for path, body in (("/admin/version", None), ("/flow_runs/filter", b'{"limit": 1}')):
            # Only a warm-up: the flow's own requests report real errors.
            with contextlib.suppress(urllib.error.URLError, OSError):
                urllib.request.urlopen(urllib.request.Request(f"{self.url}{path}", data=body, headers=json)).close()

    def wait(self) -> None:
        """Block until the API answers; ``RuntimeError`` (with the server's last line) if it exits or stays silent."""
        self._ready.join()
        if self._error is not None:
            raise RuntimeError(f"{self._error}: {self._why()}")

    def _why(self) -> str:
        """The server's own reason: its line naming an OS error, else its last line."""
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        named = [line for line in lines if "Errno" in line]
        return (named or lines or ["no output"])[-1].strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            # The flow's state is stored by now; open event streams would hold a graceful stop up (seconds).
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_current: LocalAPI | None = None


@contextmanager
def local_api() -> Iterator[None]:
    """Start a temporary API for this command unless one is configured (``PREFECT_API_URL``) or Prefect is already
    imported (its settings are read then); Prefect talks to it through ``PREFECT_API_URL``. Stopped on exit."""
    global _current
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules or _current is not None:
        yield
        return
    _current = LocalAPI(_free_port())
    os.environ["PREFECT_API_URL"] = _current.url
    try:
        yield
    finally:
        del os.environ["PREFECT_API_URL"]
        _current.stop()
        _current = None


@contextmanager
def ready_for_flows() -> Iterator[None]:
    """Around a flow call: wait for this command's temporary API, if it started one. Its flow runs send no
    heartbeats: no service of a temporary API watches them, and stopping the heartbeat thread (it sleeps a second at
    a time) would delay the command's end by up to a second."""
    if _current is None:
        yield
        return
    _current.wait()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def starts_local_api(command: Callable[P, R]) -> Callable[P, R]:
    """A command that runs a flow: its temporary API (if it needs one) starts before the command's body runs."""

    @wraps(command)  # typer reads the options from the wrapped signature
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with local_api():
            return command(*args, **kwargs)

    return run
