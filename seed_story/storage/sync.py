"""Staging: give code that needs real files (WeasyPrint, PIL) a local folder for a key prefix, on any store."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from seed_story.storage.base import ObjectInfo, ObjectNotFound, ObjectStore, StorageError, check_key, join_key

try:
    import fcntl
except ImportError:  # not POSIX: staging still works, two renders of one story on one machine just are not serialised
    fcntl = None  # type: ignore[assignment]


def download(store: ObjectStore, prefix: str, names: Iterable[str], folder: Path) -> list[Path]:
    """Copy each object ``prefix/name`` to ``folder/name`` (atomic and verified); returns the paths."""
    return [store.get_file(join_key(prefix, name), Path(folder) / check_key(name)) for name in names]


def upload(store: ObjectStore, folder: Path, names: Iterable[str], prefix: str) -> list[ObjectInfo]:
    """Put each file ``folder/name`` at ``prefix/name`` (each object appears whole or not at all)."""
    return [store.put_file(join_key(prefix, name), Path(folder) / check_key(name)) for name in names]


def _stage_root() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else None
    root = Path(tempfile.gettempdir()) / f"seedstore-stage-{uid if uid is not None else 'user'}"
    root.mkdir(mode=0o700, exist_ok=True)
    # The temp folder is shared: refuse a folder someone else created under our name.
    if uid is not None and root.stat().st_uid != uid:
        raise StorageError(f"staging folder {root} belongs to another user")
    return root


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` against other processes of this machine (the file is created, and
    removed when done, so lock files do not pile up; the OS releases it if the holder dies).

    Example::

        with exclusive_lock(cache / "v1.lock"):
            fill(cache / "v1")
    """
    if fcntl is None:
        yield
        return
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the OS even if this process dies
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # the holder removed this file while we waited: lock the new one instead
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def _stable_folder(uri: str, prefix: str) -> Iterator[Path]:
    # The path depends only on (store, prefix): tools that embed absolute paths in their output (WeasyPrint names
    # images after the md5 of their URL) then give the same bytes on every render. The lock keeps it private.
    root = _stage_root()
    base = root / hashlib.sha256(f"{uri}\n{prefix}".encode()).hexdigest()[:24]
    with exclusive_lock(base.with_suffix(".lock")):
        shutil.rmtree(base, ignore_errors=True)  # leftovers of a killed render
        folder = base / (prefix.rstrip("/").rpartition("/")[2] or "root")
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(base, ignore_errors=True)


@contextmanager
def staged_folder(store: ObjectStore, prefix: str, names: Iterable[str] = ()) -> Iterator[Path]:
    """A local folder holding the objects ``prefix/name`` for each name.

    A local store yields its own folder (nothing is copied). A remote one yields a private staging folder with
    downloaded copies, at a path that depends only on the store and prefix, emptied on exit. Pair it with
    ``publish`` to send outputs back.

    Example::

        with staged_folder(store, "runs/r1/s1", ["opening.png"]) as folder:
            render(folder / "opening.png", folder / "book.pdf")
            publish(store, folder, ["book.pdf"], "runs/r1/s1")
    """
    names = list(names)
    local = store.local_path(prefix)
    if local is not None:
        for name in names:
            if not store.exists(join_key(prefix, name)):
                raise ObjectNotFound(f"no object {join_key(prefix, name)!r} in {store.uri}")
        yield local
        return
    with _stable_folder(store.uri, prefix) as folder:
        download(store, prefix, names, folder)
        yield folder


def publish(store: ObjectStore, folder: Path, names: Iterable[str], prefix: str) -> list[str]:
    """Send files written in a ``staged_folder`` back to the store; a no-op when the folder is the store's own.

    Returns the keys written (or already in place).
    """
    names = list(names)
    if store.local_path(prefix) != Path(folder):
        upload(store, folder, names, prefix)
    return [join_key(prefix, name) for name in names]
