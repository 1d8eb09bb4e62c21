"""A training run kept in an object store: push checkpoints and metrics as they appear, pull the newest back.

Layout under ``training/{stage}/{run_name}/``: ``checkpoints/checkpoint-{step}/`` (``trainer_state.json`` put
last, so it marks a whole copy), ``metrics.jsonl``/``metrics.csv``, ``loss.png``, ``final/`` (``seed_story.json``
put last), ``train_config.json``, ``summary.json``. No Prefect here: ``tasks/training.py`` wraps it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from seed_story.storage import ObjectNotFound, ObjectStore, StorageError, join_key, key_uri
from seed_story.storage.base import sha256_file
from seed_story.training.trainer import STATE_FILE

METRICS = ("metrics.jsonl", "metrics.csv")


def training_prefix(stage: str, run_name: str) -> str:
    """Where a training run lives in the store: ``training/{stage}/{run_name}`` (beside the runs' ``runs/``)."""
    return join_key("training", stage, run_name)


def _checkpoint_key(prefix: str, step: int) -> str:
    return join_key(prefix, "checkpoints", f"checkpoint-{step}")


def stored_checkpoints(store: ObjectStore, prefix: str) -> dict[int, list[str]]:
    """The run's checkpoint folders in the store, whole or not: step -> names of their objects."""
    base = join_key(prefix, "checkpoints") + "/"
    found: dict[int, list[str]] = {}
    for key in store.list(base):
        folder, _, name = key[len(base) :].partition("/")
        step = folder.removeprefix("checkpoint-")
        if folder.startswith("checkpoint-") and step.isdigit() and name:
            found.setdefault(int(step), []).append(name)
    return found


def _whole(found: dict[int, list[str]]) -> list[int]:
    return sorted(step for step, names in found.items() if STATE_FILE in names)


def local_checkpoints(output_dir: Path) -> dict[int, Path]:
    """The complete checkpoints in a trainer's output folder: step -> folder."""
    done = (p.parent for p in (output_dir / "checkpoints").glob(f"checkpoint-*/{STATE_FILE}"))
    return {int(p.name.rpartition("-")[2]): p for p in done}


def push_folder(store: ObjectStore, folder: Path, key: str, last: str) -> bool:
    """Put every file of ``folder`` under ``key``, ``last`` (its completion marker) after all the others.

    Returns False when the folder vanished meanwhile (the trainer deletes checkpoints a newer one replaced).
    """
    try:
        files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p == folder / last)
        if not files or files[-1] != folder / last:
            return False
        for path in files:
            store.put_file(join_key(key, path.relative_to(folder).as_posix()), path)
    except FileNotFoundError:
        return False
    return True


def prune_checkpoints(store: ObjectStore, prefix: str, keep: int) -> None:
    """Delete the store's checkpoints older than its newest ``keep`` whole ones (marker first: never a fake whole)."""
    found = stored_checkpoints(store, prefix)
    whole = _whole(found)
    if len(whole) <= keep:
        return
    for step in [s for s in found if s < whole[-keep]]:
        for name in sorted(found[step], key=lambda n: n != STATE_FILE):
            store.delete(join_key(_checkpoint_key(prefix, step), name))


def sync_checkpoints(store: ObjectStore, output_dir: Path, prefix: str, keep: int) -> list[int]:
    """Push the complete local checkpoints the store lacks, then prune the store; returns the steps pushed."""
    stored = set(_whole(stored_checkpoints(store, prefix)))
    pushed = [
        step
        for step, folder in sorted(local_checkpoints(output_dir).items())
        if step not in stored and push_folder(store, folder, _checkpoint_key(prefix, step), last=STATE_FILE)
    ]
    prune_checkpoints(store, prefix, keep)
    return pushed


def push_metrics(store: ObjectStore, output_dir: Path, prefix: str) -> None:
    for name in METRICS:
        path = output_dir / name
        if path.is_file():
            data = path.read_bytes()  # the trainer may be appending: send complete lines only
            store.put_bytes(join_key(prefix, name), data[: data.rfind(b"\n") + 1])


def pull_checkpoint(store: ObjectStore, prefix: str, output_dir: Path) -> int | None:
    """Put the store's newest whole checkpoint (and the metrics) into ``output_dir`` unless a local one is as new.

    Returns the step the trainer will resume from (None: it starts at step 0).
    """
    local = max(local_checkpoints(output_dir), default=None)
    found = stored_checkpoints(store, prefix)
    remote = max(_whole(found), default=None)
    if remote is None or (local is not None and local >= remote):
        return local
    folder = output_dir / "checkpoints" / f"checkpoint-{remote}"
    for name in sorted(found[remote], key=lambda n: n == STATE_FILE):
        store.get_file(join_key(_checkpoint_key(prefix, remote), name), folder / name)
    for name in METRICS:  # the trainer keeps their rows up to the resumed step
        if store.exists(key := join_key(prefix, name)):
            store.get_file(key, output_dir / name)
    return remote


def mirror(store: ObjectStore, prefix: str, folder: Path) -> int:
    """Download every object under ``prefix`` into ``folder``, keeping files whose sha256 matches; returns how many
    were fetched. A local store's own folder is used in place."""
    keys = store.list(prefix + "/")
    if not keys:
        raise ObjectNotFound(f"nothing under {prefix!r} in {store.uri}")
    if store.local_path(prefix) == folder:
        return 0
    wanted = {key[len(prefix) + 1 :]: key for key in keys}
    for path in [p for p in folder.rglob("*") if p.is_file()]:
        if path.relative_to(folder).as_posix() not in wanted:
            path.unlink()  # gone from the store (a re-ingest wrote fewer shards): a trainer must not read it
    fetched = 0
    for name, key in wanted.items():
        info = store.head(key)
        if (folder / name).is_file() and info is not None and info.sha256 == sha256_file(folder / name):
            continue
        store.get_file(key, folder / name)
        fetched += 1
    return fetched


class CheckpointPusher:
    """While training runs, push every new complete checkpoint (then the metrics so far) each ``interval`` seconds,
    and once more on exit, even after a crash. Failures are logged, not raised: ``push_outputs_task`` pushes again
    with retries."""

    def __init__(self, store: ObjectStore, output_dir: Path, prefix: str, keep: int, interval: float,
                 log: logging.Logger | logging.LoggerAdapter) -> None:  # fmt: skip
        self.store, self.output_dir, self.prefix, self.keep = store, output_dir, prefix, keep
        self.interval, self.log = interval, log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-pusher", daemon=True)

    def __enter__(self) -> CheckpointPusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.push()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def push(self) -> None:
        try:
            pushed = sync_checkpoints(self.store, self.output_dir, self.prefix, self.keep)
            if pushed:
                push_metrics(self.store, self.output_dir, self.prefix)
                self.log.info("pushed checkpoint(s) %s to %s", pushed, key_uri(self.store, self.prefix))
        except (StorageError, OSError) as err:
            self.log.warning("could not push checkpoints to %s yet: %s", self.store.uri, err)
