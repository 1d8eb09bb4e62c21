"""Read inputs named by URI: manifests and opening pictures, from a local path or ``s3://bucket/key``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from seed_story.batch.manifest import Manifest, ManifestError, manifest_format, parse_manifest
from seed_story.storage import S3Settings, open_store


def read_uri_bytes(uri: str, s3: S3Settings | None = None, what: str = "file") -> bytes:
    """Bytes of a local file or an S3 object; ``ValueError`` names ``what`` is missing. Never fetches http(s)."""
    if uri.startswith("s3://"):
        parts = urlsplit(uri)
        try:
            return open_store(f"s3://{parts.netloc}", s3).get_bytes(parts.path.lstrip("/"))
        except FileNotFoundError as err:
            raise ValueError(f"{what} not found: {uri}") from err
    path = Path(uri.removeprefix("file://"))
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    return path.read_bytes()


def load_manifest(uri: str, s3: S3Settings | None = None) -> tuple[Manifest, bytes]:
    """Read and validate a manifest; relative image paths resolve against its folder (local or S3)."""
    try:
        data = read_uri_bytes(uri, s3, "manifest")
    except ValueError as err:
        raise ManifestError(str(err)) from err
    if uri.startswith("s3://"):
        folder = uri.rsplit("/", 1)[0]
    else:
        folder = str(Path(uri.removeprefix("file://")).resolve().parent)
    return parse_manifest(data, uri, folder, manifest_format(uri)), data
