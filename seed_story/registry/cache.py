"""A machine's local copies of model versions, by id: fetched once, complete or absent, shared by its processes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from seed_story.registry.records import VERSION_JSON, ModelVersion, version_prefix
from seed_story.storage import ChecksumMismatch, ObjectStore, exclusive_lock
from seed_story.storage.base import sha256_file

Progress = Callable[[int, int], None]


def cached_folder(cache_dir: Path, version: ModelVersion) -> Path:
    """Where ``version`` lives in ``cache_dir``: ``{name}/{version_id}/``."""
    return Path(cache_dir).expanduser() / version.name / version.version_id


def fetch_version(
    store: ObjectStore, version: ModelVersion, cache_dir: Path, *, progress: Progress | None = None
) -> Path:
    """A local folder holding ``version``'s files (a checkpoint folder, plus its ``version.json``).

    A local store's own folder is used in place. Otherwise the files are downloaded into
    ``cache_dir/{name}/{version_id}/``, each checked against the sha256 the version records; a folder already
    there is complete (it only ever appears whole), so it is used without any download.

    Example::

        folder = fetch_version(store, version, Path("~/.cache/seed-story/models"))
    """
    prefix = version_prefix(version.name, version.version_id)
    in_place = store.local_path(prefix)
    if in_place is not None:
        return in_place
    target = cached_folder(cache_dir, version)
    if (target / VERSION_JSON).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One download per machine: other processes wait here, then find the folder complete.
    with exclusive_lock(target.with_name(f"{version.version_id}.lock")):
        if not (target / VERSION_JSON).is_file():
            _download(store, version, prefix, target, progress)
    return target


def _download(store: ObjectStore, version: ModelVersion, prefix: str, target: Path, progress: Progress | None) -> None:
    staging = target.with_name(f"{version.version_id}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by a fetch that was killed
    total, done = version.total_bytes, 0
    for entry in version.files:
        path = store.get_file(f"{prefix}/{entry.path}", staging / entry.path)
        if sha256_file(path) != entry.sha256:
            raise ChecksumMismatch(f"{prefix}/{entry.path}: the file does not match the sha256 its version records")
        done += entry.bytes
        if progress is not None:
            progress(done, total)
    (staging / VERSION_JSON).write_text(version.model_dump_json(indent=2), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)  # a folder without version.json was not made here: never used
    # The rename publishes the folder whole; a half-written one is never at ``target``.
    os.replace(staging, target)
