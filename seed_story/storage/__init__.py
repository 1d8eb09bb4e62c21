"""Object storage: one interface (``ObjectStore``) over a local folder and S3, with atomic writes and sha256.

Example::

    from seed_story.storage import open_store, put_model, get_model
    store = open_store("s3://books/prod")          # or "/data/store", "file:///data/store"
    put_model(store, "runs/r1/s1/story.json", record)
    record = get_model(store, "runs/r1/s1/story.json", StoryRecord)
"""

from seed_story.storage.base import (
    ChecksumMismatch,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    check_key,
    get_model,
    join_key,
    key_uri,
    put_model,
)
from seed_story.storage.local import LocalObjectStore, atomic_file
from seed_story.storage.paths import OutsideRoots, inside_local, inside_s3
from seed_story.storage.s3 import S3ObjectStore, S3Settings
from seed_story.storage.sync import download, exclusive_lock, publish, staged_folder, upload
from seed_story.storage.uri import open_store

__all__ = [
    "ChecksumMismatch",
    "LocalObjectStore",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "OutsideRoots",
    "S3ObjectStore",
    "S3Settings",
    "StorageError",
    "atomic_file",
    "check_key",
    "download",
    "exclusive_lock",
    "get_model",
    "inside_local",
    "inside_s3",
    "join_key",
    "key_uri",
    "open_store",
    "publish",
    "put_model",
    "staged_folder",
    "upload",
]
