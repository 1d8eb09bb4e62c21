"""What the commands print: progress, the warnings a user can act on, and a summary.

Third-party INFO chatter (Prefect's task states, fontTools' subsetting, HTTP calls) and the embedded Prefect
API's telemetry are off unless ``-v`` asks for debug output; an error a user can cause is one line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from seed_story.registry import RegistryError
from seed_story.storage.base import StorageError

# Loggers that speak at INFO about their own internals; one line per font table or layout step otherwise.
CHATTY = ("httpx", "fontTools", "weasyprint.progress", "prefect", "docket", "uvicorn", "alembic")

# Errors whose message is the whole story for the user: no traceback, even without -v.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, OSError, LookupError, ValidationError, StorageError, RegistryError,
)  # fmt: skip


class OncePerMessage(logging.Filter):
    """Let each distinct warning through once: WeasyPrint repeats its missing-HarfBuzz warning for every PDF."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def configure_output(verbose: bool) -> None:
    """Set log levels for a command run; called before any command imports Prefect (it reads its settings then)."""
    # The embedded API's telemetry heartbeat competes with the flow for the SQLite database ("database is
    # locked" tracebacks) and would try to reach the internet; a cold first start migrates the database,
    # which can take longer than Prefect's default 20 s on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    level = "DEBUG" if verbose else "WARNING"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", level)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(OncePerMessage())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler], force=True)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def one_line(err: BaseException) -> str:
    """An exception as one line a user can act on (pydantic's multi-line report folded into ``field: problem``)."""
    if isinstance(err, ValidationError):
        problems = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in err.errors()]
        return f"invalid {err.title}: " + "; ".join(problems)
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, USER_ERRORS):
        return text
    return f"{type(err).__name__}: {text} (-v shows the traceback)"


class _Rate(ProgressColumn):
    """Completed units per second, e.g. ``1.83 steps/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.3g} {self.unit}/s")


BAR_COLUMNS = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


@contextmanager
def progress_bar(
    description: str, *, enabled: bool = True, rate: str | None = None
) -> Iterator[Callable[[int, int], None] | None]:
    """A bar on stderr, fed by the ``progress(done, total)`` callback that long library calls accept (``None``
    when not ``enabled``, e.g. for ``--json`` output). ``rate`` names the unit to show per second, with an ETA.

    Example::

        with progress_bar("rendering") as progress:
            render_run(store, run_id, progress=progress)
    """
    if not enabled:
        yield None
        return
    columns = BAR_COLUMNS if rate is None else (*BAR_COLUMNS, _Rate(rate), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bars:
        task = bars.add_task(description, total=None)
        yield lambda done, total: bars.update(task, completed=done, total=total)
