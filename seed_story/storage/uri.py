"""``open_store``: one URI string (CLI flag, flow parameter, config value) to an ``ObjectStore``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from seed_story.storage.base import ObjectStore
from seed_story.storage.local import LocalObjectStore
from seed_story.storage.s3 import S3ObjectStore, S3Settings

ACCEPTED = "a local path ('/data/store', 'store'), 'file:///data/store' or 's3://bucket[/prefix]'"


def open_store(uri: str, settings: S3Settings | None = None) -> ObjectStore:
    """The store a URI names. ``settings`` apply to ``s3://`` URIs only (local paths ignore them).

    Example::

        open_store("/data/store")                    # LocalObjectStore
        open_store("s3://books/prod", S3Settings(endpoint_url="http://127.0.0.1:9000"))
    """
    if not uri or not uri.strip():
        raise ValueError(f"empty store URI; expected {ACCEPTED}")
    if "://" not in uri:
        return LocalObjectStore(Path(uri))
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        return LocalObjectStore(Path(url2pathname(parts.path)))
    if scheme == "s3" and parts.netloc and not (parts.query or parts.fragment):
        return S3ObjectStore(parts.netloc, parts.path, settings)
    raise ValueError(f"unsupported store URI {uri!r}; expected {ACCEPTED}")
