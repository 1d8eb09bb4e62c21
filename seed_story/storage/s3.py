"""An object store on S3 or an S3-compatible server (MinIO, Ceph RGW, moto), through boto3.

Credentials come from the usual AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
``AWS_PROFILE`` or ``S3Settings.profile``, ~/.aws files, instance or task roles); they are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import mimetypes
import os
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import BaseModel, ConfigDict, Field

from seed_story.storage.base import (
    CHUNK_BYTES,
    ChecksumMismatch,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_key,
    check_prefix,
    sha256_file,
    sha256_hex,
)
from seed_story.storage.local import atomic_file

logger = logging.getLogger(__name__)
T = TypeVar("T")
MIB = 1 << 20
MAX_PARTS = 10_000  # S3's limit per multipart upload
SHA256_META = "sha256"  # user metadata key: sent as x-amz-meta-sha256
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
# A conditional create lost: the key exists (412), or another conditional write to it is in flight (409).
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
# 4xx codes that are still worth another try: the server asked us to slow down or timed out on its side.
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout"}


class S3Settings(BaseModel):
    """How to reach S3. Unset fields fall back to the AWS environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``...).

    Two retry layers: botocore retries each request ``max_attempts`` times (standard mode); on top, every store
    operation is retried ``retry_attempts`` times with exponential backoff for transient failures that got
    through (connection errors, 5xx, throttling), never for other 4xx errors.

    Example::

        >>> S3Settings(endpoint_url="http://127.0.0.1:9000").multipart_chunk_mb
        8
    """

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(None, description="e.g. http://127.0.0.1:9000 for MinIO; None: AWS or env")
    region: str | None = None
    profile: str | None = Field(None, description="a profile of ~/.aws/config; None: AWS_PROFILE or default")
    max_attempts: int = Field(5, ge=1, le=20, description="botocore's attempts per request, the first included")
    multipart_threshold_mb: int = Field(8, ge=1, description="files larger than this (MiB) upload in parts")
    multipart_chunk_mb: int = Field(8, ge=5, le=5120, description="part size in MiB (S3: 5 MiB to 5 GiB)")
    connect_timeout_s: float = Field(5, gt=0)
    read_timeout_s: float = Field(60, gt=0)
    retry_attempts: int = Field(3, ge=1, le=10, description="our attempts per operation, on top of botocore's")
    retry_base_delay_s: float = Field(0.5, ge=0, le=30, description="first backoff delay; doubles each time")


def _code(err: BaseException | None) -> str:
    return str(err.response.get("Error", {}).get("Code", "")) if isinstance(err, ClientError) else ""


def _transient(err: Exception) -> bool:
    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or status == 429 or _code(err) in _TRANSIENT_CODES
    return isinstance(err, BotoConnectionError | HTTPClientError | IncompleteReadError)


def _content_type(key: str, given: str | None) -> dict[str, str]:
    # Books are served straight from the bucket, so give browsers the right type even when the caller did not.
    content_type = given or mimetypes.guess_type(key)[0]
    return {"ContentType": content_type} if content_type else {}


def _endpoint_label(url: str | None) -> str:
    # Only scheme, host and port: a URL's user:password part must never reach a log line.
    if not url:
        return "aws"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class S3ObjectStore:
    """Objects under ``s3://bucket/prefix``; each carries its sha256 as user metadata, checked on every read.

    The boto3 client is built on first use and left out of pickles, so a store can be sent to worker threads or
    processes (boto3 clients are thread-safe).

    Example::

        store = S3ObjectStore("books", "prod", S3Settings(endpoint_url="http://127.0.0.1:9000"))
        store.put_file("runs/r1/s1/book.pdf", Path("book.pdf"))  # multipart above 8 MiB
        store.get_bytes("runs/r1/s1/story.json")
    """

    def __init__(self, bucket: str, prefix: str = "", settings: S3Settings | None = None) -> None:
        if not _BUCKET.match(bucket):
            raise ValueError(f"S3 bucket name must be 3-63 lowercase letters, digits, '.' or '-' (got {bucket!r})")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = check_key(prefix) if prefix else ""
        self.settings = settings or S3Settings()
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = (
            self.settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.uri!r}, endpoint={_endpoint_label(self.endpoint_url)!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Clients and locks do not pickle; the receiving side builds its own client on first use.
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _client=None, _lock=threading.Lock())

    @property
    def client(self) -> Any:
        """The boto3 S3 client, built on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        s = self.settings
        options: dict[str, Any] = {
            # botocore's own "max_attempts" counts retries only; "total_max_attempts" includes the first request,
            # which is what our field's name (and AWS_MAX_ATTEMPTS) means.
            "retries": {"mode": "standard", "total_max_attempts": s.max_attempts},
            "connect_timeout": s.connect_timeout_s,
            "read_timeout": s.read_timeout_s,
        }
        if self.endpoint_url:
            # MinIO and most S3-compatible servers only route bucket names in the path, not in the host name.
            options["s3"] = {"addressing_style": "path"}
        session = boto3.session.Session(profile_name=s.profile, region_name=s.region)
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(**options))

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    def _call(self, action: str, full_key: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """``fn(**kwargs)`` with our bounded retry; errors become ``ObjectNotFound`` or ``StorageError``."""
        where = f"s3://{self.bucket}/{full_key}"
        attempts = self.settings.retry_attempts
        for attempt in range(1, attempts + 1):
            try:
                return fn(**kwargs)
            except (ClientError, BotoCoreError) as err:
                if _code(err) in _NOT_FOUND:
                    raise ObjectNotFound(f"no object {where}") from err
                if not _transient(err) or attempt == attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise StorageError(f"{action} {where} failed{tries}: {err}") from err
                delay = min(self.settings.retry_base_delay_s * 2 ** (attempt - 1), 20.0) * random.uniform(0.5, 1.0)
                logger.warning(
                    "%s %s at %s failed (%s); retry %d/%d in %.2f s",
                    action, where, _endpoint_label(self.endpoint_url), type(err).__name__, attempt, attempts - 1, delay,
                )  # fmt: skip
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _verify(self, full_key: str, expected: str | None, actual: str) -> None:
        if expected is not None and expected != actual:
            raise ChecksumMismatch(f"s3://{self.bucket}/{full_key}: sha256 {actual} != recorded {expected}")

    def local_path(self, key: str) -> None:
        """Always None: objects live remotely."""
        check_key(key)
        return None

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        full, digest = self._full(key), sha256_hex(data)
        self._call(
            "put", full, self.client.put_object, Bucket=self.bucket, Key=full, Body=data,
            Metadata={SHA256_META: digest}, **_content_type(key, content_type),
        )  # fmt: skip
        return ObjectInfo(key=key, size=len(data), sha256=digest)

    def put_new(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        full, digest = self._full(key), sha256_hex(data)
        info = ObjectInfo(key=key, size=len(data), sha256=digest)
        try:
            self._call(
                "create", full, self.client.put_object, Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*",
                Metadata={SHA256_META: digest}, **_content_type(key, content_type),
            )  # fmt: skip
        except StorageError as err:
            if _code(err.__cause__) not in _EXISTS:
                raise
            # A retry (ours or botocore's) of a request that landed but lost its response finds its own object.
            if self.head(key) != info:
                raise ObjectExists(f"object {key!r} already exists in {self.uri}") from err
        return info

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        full, path = self._full(key), Path(path)
        size = path.stat().st_size
        if size <= self.settings.multipart_threshold_mb * MIB:
            return self.put_bytes(key, path.read_bytes(), content_type=content_type)
        # The digest goes into the metadata, which is fixed when the upload starts: hash the file first.
        info = ObjectInfo(key=key, size=size, sha256=sha256_file(path))
        self._multipart(full, path, info, _content_type(key, content_type))
        return info

    def _multipart(self, full: str, path: Path, info: ObjectInfo, extra: dict[str, str]) -> None:
        part_size = max(self.settings.multipart_chunk_mb * MIB, math.ceil(info.size / MAX_PARTS))
        upload_id = self._call(
            "start multipart upload of", full, self.client.create_multipart_upload, Bucket=self.bucket, Key=full,
            Metadata={SHA256_META: info.sha256}, **extra,
        )["UploadId"]  # fmt: skip
        try:
            parts = []
            with open(path, "rb") as f:
                while data := f.read(part_size):
                    number = len(parts) + 1
                    response = self._call(
                        f"upload part {number} of", full, self.client.upload_part, Bucket=self.bucket, Key=full,
                        UploadId=upload_id, PartNumber=number, Body=data,
                    )  # fmt: skip
                    parts.append({"ETag": response["ETag"], "PartNumber": number})
            self._complete(full, upload_id, parts, info)
        except BaseException:
            # An unfinished upload is invisible but its parts are billed until aborted.
            self._abort(full, upload_id)
            raise

    def _complete(self, full: str, upload_id: str, parts: list[dict[str, Any]], info: ObjectInfo) -> None:
        try:
            self._call(
                "complete multipart upload of", full, self.client.complete_multipart_upload, Bucket=self.bucket,
                Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts},
            )  # fmt: skip
        except StorageError as err:
            # If a completion succeeded but its response was lost, the retry finds the upload gone: check the object.
            landed = self.head(info.key) if _code(err.__cause__) == "NoSuchUpload" else None
            if landed is None or (landed.size, landed.sha256) != (info.size, info.sha256):
                raise

    def _abort(self, full: str, upload_id: str) -> None:
        try:
            self._call(
                "abort multipart upload of", full, self.client.abort_multipart_upload, Bucket=self.bucket, Key=full,
                UploadId=upload_id,
            )  # fmt: skip
        except StorageError as err:
            if _code(err.__cause__) != "NoSuchUpload":
                logger.warning("could not abort upload %s of s3://%s/%s: %s", upload_id, self.bucket, full, err)

    def get_bytes(self, key: str) -> bytes:
        full = self._full(key)

        def fetch() -> tuple[bytes, str | None]:
            # Reading the body inside the retried call: a connection dropped mid-body is retried too.
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            return response["Body"].read(), response.get("Metadata", {}).get(SHA256_META)

        data, expected = self._call("get", full, fetch)
        self._verify(full, expected, sha256_hex(data))
        return data

    def get_file(self, key: str, path: Path) -> Path:
        full, path = self._full(key), Path(path)

        def download() -> None:
            with atomic_file(path) as f:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
                digest = hashlib.sha256()
                for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                    f.write(chunk)
                    digest.update(chunk)
                # Raising here discards the temp file: a corrupt download never appears at ``path``.
                self._verify(full, response.get("Metadata", {}).get(SHA256_META), digest.hexdigest())

        self._call("get", full, download)
        return path

    def head(self, key: str) -> ObjectInfo | None:
        full = self._full(key)
        try:
            response = self._call("head", full, self.client.head_object, Bucket=self.bucket, Key=full)
        except ObjectNotFound:
            return None
        return ObjectInfo(key=key, size=response["ContentLength"], sha256=response.get("Metadata", {}).get(SHA256_META))

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def list(self, prefix: str = "") -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        full_prefix = root + check_prefix(prefix)
        keys: list[str] = []
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix}
        while True:
            # One retried call per page (at most 1000 keys each), so a failure does not restart the listing.
            page = self._call("list", full_prefix, self.client.list_objects_v2, **request)
            keys.extend(obj["Key"][len(root) :] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                break
            request["ContinuationToken"] = page["NextContinuationToken"]
        return sorted(k for k in keys if _addressable(k))

    def delete(self, key: str) -> None:
        full = self._full(key)
        self._call("delete", full, self.client.delete_object, Bucket=self.bucket, Key=full)


def _addressable(key: str) -> bool:
    # Keys other tools wrote that this API cannot name (console "folder/" markers, "a//b") are left out.
    try:
        check_key(key)
    except ValueError:
        logger.debug("skipping key %r: not a valid object key", key)
        return False
    return True
