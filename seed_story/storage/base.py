"""The object-store contract: records, errors, key rules and the ``ObjectStore`` protocol.

A store maps '/'-separated keys (``runs/r1/s1/story.json``) to whole objects. Every backend writes
atomically (a reader sees the old object or the new one, never half of one) and records or computes a
sha256 per object, so the pipeline can treat a local folder and a bucket alike.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

M = TypeVar("M", bound=BaseModel)

# Local temporary files start with this, so keys may not: a listing could otherwise show a half-written file.
RESERVED_PREFIX = ".seedstore-tmp-"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CHUNK_BYTES = 1 << 20  # read/hash/copy granularity


class ObjectInfo(BaseModel):
    """What a store knows about one object: its key, size in bytes and sha256 (hex; None if never recorded)."""

    model_config = ConfigDict(frozen=True)

    key: str
    size: int
    sha256: str | None


class StorageError(RuntimeError):
    """Any failure of a store operation (after retries, for remote stores)."""


class ObjectNotFound(StorageError, FileNotFoundError):
    """No object at the key."""


class ObjectExists(StorageError):
    """``put_new`` found an object at the key already: someone else created it first."""


class ChecksumMismatch(StorageError):
    """The bytes read do not hash to the sha256 recorded when the object was written."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative '/'-separated key, else raise ``ValueError`` saying why.

    Example::

        >>> check_key("runs/r1/s1/story.json")
        'runs/r1/s1/story.json'
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"object key must be a non-empty string (got {key!r})")
    if _CONTROL.search(key):
        raise ValueError(f"object key must not contain control characters (got {key!r})")
    if "\\" in key:
        raise ValueError(f"object key must use '/' separators, not backslashes (got {key!r})")
    if key.startswith("/"):
        raise ValueError(f"object key must be relative, without a leading '/' (got {key!r})")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"object key must not have empty, '.' or '..' segments (got {key!r})")
        if segment.startswith(RESERVED_PREFIX):
            raise ValueError(f"object key segments must not start with {RESERVED_PREFIX!r} (got {key!r})")
    return key


def check_prefix(prefix: str) -> str:
    """Return a listing prefix: '' or a key, optionally ending in '/' (matching is plain string prefix)."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def key_uri(store: ObjectStore, key: str) -> str:
    """The URI of ``key`` in ``store`` (``file:///...`` or ``s3://bucket/prefix/key``): what flows pass around."""
    return f"{store.uri.rstrip('/')}/{check_key(key)}"


def join_key(*parts: str) -> str:
    """Join key parts with '/' and validate the result."""
    return check_key("/".join(p.strip("/") for p in parts if p.strip("/")))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@runtime_checkable
class ObjectStore(Protocol):
    """One interface over a local folder and an S3 bucket (see ``open_store``).

    Keys are relative to the store root (``uri``). Writes are atomic; reads verify the recorded sha256.

    Example::

        store = open_store("s3://books/prod")
        store.put_bytes("runs/r1/index.html", b"<html>...", content_type="text/html")
        assert store.list("runs/r1/") == ["runs/r1/index.html"]
    """

    uri: str

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo: ...

    def get_bytes(self, key: str) -> bytes: ...

    def put_new(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Create ``key`` only if no object has it, atomically: of writers racing to put different bytes at one
        key, exactly one wins and the others get ``ObjectExists``. Finding exactly ``data`` there already counts as
        success, so a retried create whose first try landed (its response lost) does not fail."""
        ...

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo: ...

    def get_file(self, key: str, path: Path) -> Path: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def local_path(self, key: str) -> Path | None: ...


def put_model(store: ObjectStore, key: str, model: BaseModel) -> ObjectInfo:
    """Store a pydantic model as indented JSON.

    Example::

        put_model(store, "runs/r1/s1/story.json", record)
    """
    data = model.model_dump_json(indent=2).encode("utf-8")
    return store.put_bytes(key, data, content_type="application/json")


def get_model(store: ObjectStore, key: str, model_type: type[M]) -> M:
    """Read and validate a JSON object as ``model_type`` (``ObjectNotFound`` if absent).

    Example::

        record = get_model(store, "runs/r1/s1/story.json", StoryRecord)
    """
    return model_type.model_validate_json(store.get_bytes(key))
