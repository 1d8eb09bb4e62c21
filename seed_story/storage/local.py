"""An object store on a local folder: keys are file paths under the root, written by temp file + rename."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from seed_story.storage.base import (
    CHUNK_BYTES,
    RESERVED_PREFIX,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_key,
    check_prefix,
    sha256_file,
    sha256_hex,
)


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the folder's entry is on disk too (POSIX; a no-op where unsupported).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would hide books from the other users of a shared folder. The name is cut so a
    # long key cannot push the temp name past the file system's 255-byte limit.
    return path.with_name(f"{RESERVED_PREFIX}{uuid.uuid4().hex}-{path.name[:64]}")


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` all at once: yields a temp file beside it, then fsyncs and renames it over ``path``.

    On any error the temp file is removed and ``path`` keeps its old content (or stays absent). A crash
    (kill -9, power loss) can leave a hidden ``.seedstore-tmp-*`` file behind, never a half-written ``path``.

    Example::

        with atomic_file(Path("book.pdf")) as f:
            document.write_pdf(f)
    """
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _copy_hashing(src: BinaryIO, dst: BinaryIO) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(CHUNK_BYTES):
        dst.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


class LocalObjectStore:
    """Objects as plain files under ``root`` (story folders stay browsable; no sidecar files).

    ``head`` hashes the file on demand: a file is only ever visible whole, so there is nothing to verify on read.

    Example::

        store = LocalObjectStore("/data/store")
        store.put_bytes("runs/r1/a.txt", b"hi")
        store.local_path("runs/r1/a.txt")  # PosixPath('/data/store/runs/r1/a.txt')
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        # Keys cannot hold '..'; resolving also catches a symlink inside the root that points out of it.
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"object key {key!r} resolves outside the store root {self.root}")
        return path

    def local_path(self, key: str) -> Path:
        """The file ``key`` maps to (whether or not it exists)."""
        return self._path(key)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        try:
            with atomic_file(self._path(key)) as f:
                f.write(data)
        except OSError as err:
            raise StorageError(f"cannot write {key!r} under {self.root}: {err}") from err
        return ObjectInfo(key=key, size=len(data), sha256=sha256_hex(data))

    def put_new(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        path, info = self._path(key), ObjectInfo(key=key, size=len(data), sha256=sha256_hex(data))
        try:
            tmp = _temp_beside(path)
            try:
                with open(tmp, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                # Unlike a rename, a hard link refuses an existing name: the create-only step is one system call,
                # and the object appears whole.
                os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except FileExistsError as err:
            if self.head(key) != info:
                raise ObjectExists(f"object {key!r} already exists in {self.uri}") from err
            return info
        except OSError as err:
            raise StorageError(f"cannot create {key!r} under {self.root}: {err}") from err
        _fsync_dir(path.parent)
        return info

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        target = self._path(key)
        with open(path, "rb") as src:
            try:
                with atomic_file(target) as dst:
                    size, digest = _copy_hashing(src, dst)
            except OSError as err:
                raise StorageError(f"cannot write {key!r} under {self.root}: {err}") from err
        return ObjectInfo(key=key, size=size, sha256=digest)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
            raise ObjectNotFound(f"no object {key!r} in {self.uri}") from err

    def get_file(self, key: str, path: Path) -> Path:
        source, path = self._path(key), Path(path)
        if not source.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.uri}")
        if path.exists() and path.resolve() == source.resolve():
            return path  # already there: copying a file onto itself would truncate it
        with open(source, "rb") as src, atomic_file(path) as dst:
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
        return path

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return ObjectInfo(key=key, size=path.stat().st_size, sha256=sha256_file(path))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        check_prefix(prefix)
        # Walk only the folder the prefix pins down; the rest of the match is a plain string prefix, as in S3.
        start = self.root / prefix.rpartition("/")[0]
        if not start.resolve().is_relative_to(self.root):
            return []
        keys: list[str] = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
            rel = Path(folder).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(RESERVED_PREFIX) or os.path.islink(os.path.join(folder, name)):
                    continue  # in-flight temp files and links (which could point out of the root)
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            raise StorageError(f"{key!r} is a folder in {self.uri}, not an object")
        path.unlink(missing_ok=True)
