"""Read inputs named by URI: manifests and opening pictures, from a local path or ``s3://bucket/key``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from seed_story.batch.manifest import Manifest, ManifestError, manifest_format, parse_manifest
from seed_story.generation.settings import InputLimits
from seed_story.storage import S3Settings, open_store


def read_uri_bytes(
    uri: str, s3: S3Settings | None = None, what: str = "file", check_size: Callable[[int], None] | None = None
) -> bytes:
    """Bytes of a local file or an S3 object; ``ValueError`` names ``what`` is missing. Never fetches http(s).

    ``check_size`` sees the size before anything is read (it raises ``ValueError`` to refuse the object).
    """
    if uri.startswith("s3://"):
        parts = urlsplit(uri)
        store, key = open_store(f"s3://{parts.netloc}", s3), parts.path.lstrip("/")
        if check_size is not None:
            info = store.head(key)
            if info is None:
                raise ValueError(f"{what} not found: {uri}")
            check_size(info.size)
        try:
            return store.get_bytes(key)
        except FileNotFoundError as err:
            raise ValueError(f"{what} not found: {uri}") from err
    path = Path(uri.removeprefix("file://"))
    if path.is_dir():
        raise ValueError(f"{what} is a directory, not a file: {path}")
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    if check_size is not None:
        check_size(path.stat().st_size)
    return path.read_bytes()


def load_manifest(
    uri: str, s3: S3Settings | None = None, image_roots: Sequence[str] = (), limits: InputLimits | None = None
) -> tuple[Manifest, bytes]:
    """Read and validate a manifest (see :func:`~seed_story.batch.manifest.parse_manifest`): relative image paths
    resolve against its folder (local or S3), and every image must lie inside it or one of ``image_roots``."""
    try:
        data = read_uri_bytes(uri, s3, "manifest")
    except ValueError as err:
        raise ManifestError(str(err)) from err
    if uri.startswith("s3://"):
        folder = uri.rsplit("/", 1)[0]
    else:
        folder = str(Path(uri.removeprefix("file://")).resolve().parent)
    return parse_manifest(data, uri, folder, manifest_format(uri), image_roots, limits), data
