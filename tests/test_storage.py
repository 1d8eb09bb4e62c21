"""Object stores: a local folder and S3 (a moto server on 127.0.0.1), behind one interface.

Both backends: roundtrips, sha256, listing (prefix semantics, >1000 keys), key rules. Local: root escape,
failed and killed writes. S3: multipart, aborted uploads, checksum tampering, pickling, and retries through a
fault-injecting HTTP proxy (503s, dropped connections, truncated bodies).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError
from pydantic import BaseModel

from seed_story.storage import (
    ChecksumMismatch,
    LocalObjectStore,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    S3Settings,
    StorageError,
    get_model,
    open_store,
    publish,
    put_model,
    staged_folder,
)
from tests.conftest import S3Bucket
from tests.s3_faults import FaultProxy

MIB = 1 << 20
REPO = Path(__file__).resolve().parents[1]


def s3_store(bucket: S3Bucket, prefix: str = "root", endpoint: str | None = None, **settings) -> S3ObjectStore:
    return S3ObjectStore(bucket.name, prefix, S3Settings(endpoint_url=endpoint or bucket.endpoint_url, **settings))


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("s3_bucket"))


# --- both backends -------------------------------------------------------------------------------------------


def test_roundtrip_head_exists_delete(store):
    data = b"once upon a time" * 100
    info = store.put_bytes("runs/r1/s1/story.json", data, content_type="application/json")
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    assert store.get_bytes("runs/r1/s1/story.json") == data
    assert store.head("runs/r1/s1/story.json") == info
    assert store.exists("runs/r1/s1/story.json") and not store.exists("runs/r1/s1/other.json")
    assert store.head("runs/r1/s1/other.json") is None
    store.put_bytes("runs/r1/s1/story.json", b"v2")  # overwrite
    assert store.get_bytes("runs/r1/s1/story.json") == b"v2"
    store.delete("runs/r1/s1/story.json")
    store.delete("runs/r1/s1/story.json")  # a missing key is fine
    with pytest.raises(ObjectNotFound) as err:
        store.get_bytes("runs/r1/s1/story.json")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, StorageError)
    with pytest.raises(ObjectNotFound):
        store.get_file("runs/r1/s1/story.json", Path("/nonexistent/never-written"))


class Tiny(BaseModel):
    title: str
    pages: list[int]


def test_models_roundtrip_as_json(store):
    put_model(store, "runs/r1/meta.json", Tiny(title="George 🐱", pages=[1, 2]))
    assert get_model(store, "runs/r1/meta.json", Tiny) == Tiny(title="George 🐱", pages=[1, 2])


def test_put_new_creates_only_once(store):
    info = store.put_new("models/m/aliases/production/00000001.json", b'{"to": "a"}')
    assert info == store.head("models/m/aliases/production/00000001.json")
    with pytest.raises(ObjectExists, match=r"00000001\.json' already exists") as err:
        store.put_new("models/m/aliases/production/00000001.json", b'{"to": "b"}')
    assert isinstance(err.value, StorageError) and "\n" not in str(err.value)
    assert store.get_bytes("models/m/aliases/production/00000001.json") == b'{"to": "a"}'
    # The same bytes again: what a retry whose first try landed finds, so it is not an error.
    assert store.put_new("models/m/aliases/production/00000001.json", b'{"to": "a"}') == info
    assert store.list() == ["models/m/aliases/production/00000001.json"]  # no temp file left behind


def test_racing_put_new_has_exactly_one_winner(store):
    def create(key: str, data: bytes, start: threading.Barrier, won: list[bytes]) -> None:
        start.wait()  # both threads send their create at once
        try:
            store.put_new(key, data)
            won.append(data)
        except ObjectExists:
            pass

    for round_ in range(5):
        key, start, won = f"race/{round_}.json", threading.Barrier(2), []
        threads = [threading.Thread(target=create, args=(key, data, start, won)) for data in (b"one", b"two")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1 and store.get_bytes(key) == won[0]


def test_put_file_get_file_roundtrip(store, tmp_path):
    src = tmp_path / "in" / "opening.png"
    src.parent.mkdir()
    src.write_bytes(os.urandom(300_000))
    info = store.put_file("runs/r1/s1/opening.png", src)
    assert info == store.head("runs/r1/s1/opening.png")
    out = store.get_file("runs/r1/s1/opening.png", tmp_path / "out" / "deep" / "copy.png")
    assert out.read_bytes() == src.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["copy.png"]  # no temp files left beside it


def test_list_prefix_semantics(store):
    for key in ["a/b.txt", "a/c/d.txt", "ab.txt", "b.txt", "a/c/e/f.txt"]:
        store.put_bytes(key, b"x")
    assert store.list() == ["a/b.txt", "a/c/d.txt", "a/c/e/f.txt", "ab.txt", "b.txt"]
    assert store.list("a/") == ["a/b.txt", "a/c/d.txt", "a/c/e/f.txt"]
    assert store.list("a") == ["a/b.txt", "a/c/d.txt", "a/c/e/f.txt", "ab.txt"]  # a plain string prefix, as in S3
    assert store.list("a/c") == ["a/c/d.txt", "a/c/e/f.txt"]
    assert store.list("a/c/e/f.txt") == ["a/c/e/f.txt"]
    assert store.list("zzz/") == [] and store.list("a/x") == []


def test_list_paginates_past_1000_keys(store, tmp_path):
    keys = [f"many/{i:04d}.txt" for i in range(1234)]
    if isinstance(store, S3ObjectStore):
        # Seed moto's in-process backend directly (1234 HTTP PUTs would take ~6 s); listing still goes over HTTP.
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key in keys:
            backend.put_object(store.bucket, f"{store.prefix}/{key}", b"x")
        pages: list[int] = []
        store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: pages.append(1))
    else:
        (tmp_path / "store" / "many").mkdir(parents=True)
        for key in keys:
            (tmp_path / "store" / key).write_bytes(b"x")
    store.put_bytes("other.txt", b"x")
    assert store.list("many/") == keys
    assert len(store.list()) == len(keys) + 1
    if isinstance(store, S3ObjectStore):
        assert len(pages) == 4  # 1000 + 234 keys, twice


def test_staged_folder_and_publish(store):
    store.put_bytes("runs/r1/s1/opening.png", b"png")
    store.put_bytes("runs/r1/s1/notes.txt", b"not staged")
    with staged_folder(store, "runs/r1/s1", ["opening.png"]) as folder:
        assert (folder / "opening.png").read_bytes() == b"png"
        (folder / "book.html").write_text("<html></html>")
        assert publish(store, folder, ["book.html"], "runs/r1/s1") == ["runs/r1/s1/book.html"]
    assert store.get_bytes("runs/r1/s1/book.html") == b"<html></html>"
    if store.local_path("runs/r1/s1") is None:
        assert not folder.exists()  # a remote store's staging folder is removed, with anything left in it
    else:
        assert folder == store.local_path("runs/r1/s1")  # a local store renders in place
    with pytest.raises(ObjectNotFound), staged_folder(store, "runs/r1/s1", ["missing.png"]):
        pass


BAD_KEYS = ["", "/etc/passwd", "../x", "a/../../x", "a/./b", ".", "a//b", "a/", "a\\b", "a/\x00b", "new\nline",
            ".seedstore-tmp-1-book.pdf"]  # fmt: skip


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_before_any_io(store, key, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    calls: list[Callable[[], object]] = [
        lambda: store.put_bytes(key, b"x"), lambda: store.get_bytes(key), lambda: store.head(key),
        lambda: store.exists(key), lambda: store.delete(key), lambda: store.local_path(key),
        lambda: store.put_file(key, src), lambda: store.get_file(key, tmp_path / "dst"),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(ValueError, match="object key"):
            call()
    with pytest.raises(ValueError):
        store.list("../")
    assert store.list() == []


# --- local folder --------------------------------------------------------------------------------------------


def test_local_store_cannot_escape_its_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file-link.txt").symlink_to(outside / "secret.txt")
    store = LocalObjectStore(root)
    for key in ("link/secret.txt", "link/new.txt", "file-link.txt"):
        with pytest.raises(ValueError, match="outside the store root"):
            store.get_bytes(key)
        with pytest.raises(ValueError, match="outside the store root"):
            store.put_bytes(key, b"pwned")
    assert store.list() == [] and store.list("link/") == []
    assert (outside / "secret.txt").read_text() == "secret" and not (outside / "new.txt").exists()
    assert store.uri == root.resolve().as_uri() and store.local_path("a/b") == root.resolve() / "a" / "b"


def test_local_failed_write_keeps_the_old_object_and_no_temp_file(tmp_path, monkeypatch):
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("s1/book.pdf", b"old book")
    src = tmp_path / "new.pdf"
    src.write_bytes(b"new book" * 10_000)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageError, match="No space left"):
        store.put_file("s1/book.pdf", src)
    with pytest.raises(StorageError, match="No space left"):
        store.put_bytes("s1/new.pdf", b"new")
    assert store.get_bytes("s1/book.pdf") == b"old book"
    assert sorted(p.name for p in (tmp_path / "store" / "s1").iterdir()) == ["book.pdf"]


CRASH = """
import os, signal, sys
from pathlib import Path
from seed_story.storage import LocalObjectStore
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die once the bytes are written, before the rename
LocalObjectStore(sys.argv[1]).put_file(sys.argv[2], Path(sys.argv[3]))
"""


def test_local_write_killed_midway_leaves_nothing_at_the_key(tmp_path):
    src = tmp_path / "book.pdf"
    src.write_bytes(os.urandom(2 * MIB))
    root = tmp_path / "store"
    cmd = [sys.executable, "-c", CRASH, str(root), "s1/book.pdf", str(src)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    store = LocalObjectStore(root)
    assert not store.exists("s1/book.pdf") and store.head("s1/book.pdf") is None and store.list() == []
    [leftover] = (root / "s1").iterdir()  # the killed writer's temp file: hidden, never at the key
    assert leftover.name.startswith(".seedstore-tmp-") and leftover.stat().st_size == src.stat().st_size


# --- S3 ------------------------------------------------------------------------------------------------------


def test_s3_keys_live_under_the_store_prefix(s3_bucket):
    store = s3_store(s3_bucket, prefix="prod/books")
    store.put_bytes("runs/r1/index.html", b"<html></html>")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="prod/booksXX/other", Body=b"x")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="prod/books/folder-marker/", Body=b"")
    raw = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="prod/books/runs/r1/index.html")
    assert raw["ContentType"] == "text/html"  # guessed from the key, so browsers render books from the bucket
    assert raw["Metadata"]["sha256"] == hashlib.sha256(b"<html></html>").hexdigest()
    assert store.list() == ["runs/r1/index.html"] and store.local_path("runs/r1/index.html") is None
    assert store.uri == "s3://" + s3_bucket.name + "/prod/books"


def test_s3_multipart_upload_is_verified_and_whole(s3_bucket, tmp_path):
    store = s3_store(s3_bucket, multipart_threshold_mb=5, multipart_chunk_mb=5)
    src = tmp_path / "book.pdf"
    src.write_bytes(os.urandom(11 * MIB))
    info = store.put_file("runs/r1/s1/book.pdf", src)
    raw = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="root/runs/r1/s1/book.pdf")
    assert raw["ETag"].strip('"').endswith("-3")  # 5 + 5 + 1 MiB parts
    assert raw["ContentType"] == "application/pdf" and raw["ContentLength"] == 11 * MIB
    assert raw["Metadata"]["sha256"] == info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    out = store.get_file("runs/r1/s1/book.pdf", tmp_path / "out" / "book.pdf")
    assert out.read_bytes() == src.read_bytes()


def test_s3_failed_multipart_upload_is_aborted_and_leaves_nothing(s3_bucket, tmp_path):
    store = s3_store(s3_bucket, multipart_threshold_mb=5, multipart_chunk_mb=5, max_attempts=1, retry_attempts=2,
                     retry_base_delay_s=0.01)  # fmt: skip
    src = tmp_path / "book.pdf"
    src.write_bytes(os.urandom(11 * MIB))
    store.put_bytes("s1/book.pdf", b"old book")

    def fail_part_2(params: dict, **_: object) -> None:
        if params.get("PartNumber") == 2:
            raise EndpointConnectionError(endpoint_url="injected")

    store.client.meta.events.register("provide-client-params.s3.UploadPart", fail_part_2)
    for key in ("s1/book.pdf", "s2/book.pdf"):
        with pytest.raises(StorageError, match=r"upload part 2 of .* after 2 attempts"):
            store.put_file(key, src)
    assert store.get_bytes("s1/book.pdf") == b"old book" and not store.exists("s2/book.pdf")
    assert s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []


def test_s3_detects_a_body_that_does_not_match_its_checksum(s3_bucket, tmp_path):
    store = s3_store(s3_bucket)
    info = store.put_bytes("s1/story.json", b'{"title": "George"}')
    raw, key = s3_bucket.client, "root/s1/story.json"
    metadata = raw.head_object(Bucket=s3_bucket.name, Key=key)["Metadata"]
    raw.put_object(Bucket=s3_bucket.name, Key=key, Body=b'{"title": "Gorge!"}', Metadata=metadata)
    assert store.head("s1/story.json").sha256 == info.sha256  # the recorded digest survived the tampering
    with pytest.raises(ChecksumMismatch, match="sha256"):
        store.get_bytes("s1/story.json")
    dest = tmp_path / "dl" / "story.json"
    with pytest.raises(ChecksumMismatch):
        store.get_file("s1/story.json", dest)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a temp file
    # Objects written by other tools carry no digest: read as they are.
    raw.put_object(Bucket=s3_bucket.name, Key="root/s1/plain.txt", Body=b"plain")
    assert store.head("s1/plain.txt").sha256 is None and store.get_bytes("s1/plain.txt") == b"plain"


def test_s3_store_pickles_without_its_client_and_serves_threads(s3_bucket):
    store = s3_store(s3_bucket)
    for i in range(8):
        store.put_bytes(f"k/{i}", str(i).encode())
    clone = pickle.loads(pickle.dumps(store))
    assert clone.uri == store.uri and clone.settings == store.settings
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(clone.get_bytes, [f"k/{i}" for i in range(8)])) == [str(i).encode() for i in range(8)]


def test_s3_endpoint_from_the_environment(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_bucket.endpoint_url)
    store = open_store(f"s3://{s3_bucket.name}/env")
    store.put_bytes("a.txt", b"a")
    assert s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="env/a.txt")["Body"].read() == b"a"


def test_open_store_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_store(str(tmp_path / "a")).local_path("k") == tmp_path.resolve() / "a" / "k"
    assert open_store("rel/store").local_path("k") == tmp_path.resolve() / "rel" / "store" / "k"
    assert open_store((tmp_path / "b").as_uri()).uri == (tmp_path / "b").resolve().as_uri()
    s3 = open_store("s3://my-books/prod/", S3Settings(endpoint_url="http://127.0.0.1:9"))
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix, s3.uri) == ("my-books", "prod", "s3://my-books/prod")
    assert open_store("s3://my-books").uri == "s3://my-books"


@pytest.mark.parametrize("uri", ["", "gs://bucket/x", "s3://", "file://otherhost/x", "http://example.com/store"])
def test_open_store_names_the_accepted_forms(uri):
    with pytest.raises(ValueError, match=r"s3://bucket\[/prefix\]"):
        open_store(uri)


@pytest.mark.parametrize("uri", ["s3://Bad_Bucket/x", "s3://ok-bucket/a/../b"])
def test_open_store_validates_bucket_and_prefix(uri):
    with pytest.raises(ValueError):
        open_store(uri)


# --- retries through a fault-injecting proxy -----------------------------------------------------------------


FAST = {"retry_base_delay_s": 0.01, "connect_timeout_s": 2, "read_timeout_s": 5}


def test_transient_failures_are_retried_until_they_pass(s3_bucket, tmp_path):
    def plan(n: int, method: str) -> str | None:
        if n <= 2:
            return "503"
        if n % 3 == 0:
            return "truncate" if method == "GET" else "drop"
        return None

    with FaultProxy(s3_bucket.endpoint_url, plan) as proxy:
        # botocore gets a single attempt, so every fault reaches our own retry layer.
        store = s3_store(s3_bucket, endpoint=proxy.url, max_attempts=1, retry_attempts=4, **FAST)
        for i in range(6):
            store.put_bytes(f"k/{i}.txt", f"value {i}".encode() * 50)
        assert [store.get_bytes(f"k/{i}.txt") for i in range(6)] == [f"value {i}".encode() * 50 for i in range(6)]
        assert store.list("k/") == [f"k/{i}.txt" for i in range(6)]
        src = tmp_path / "art.png"
        src.write_bytes(os.urandom(200_000))
        store.put_file("art.png", src)
        assert store.get_file("art.png", tmp_path / "copy.png").read_bytes() == src.read_bytes()
        assert store.head("art.png").size == 200_000
    assert proxy.faults >= 8


def test_botocore_absorbs_short_outages(s3_bucket):
    with FaultProxy(s3_bucket.endpoint_url, lambda n, _: "503" if n <= 2 else None) as proxy:
        store = s3_store(s3_bucket, endpoint=proxy.url, max_attempts=3, retry_attempts=1, **FAST)
        store.put_bytes("a.txt", b"a")
    assert proxy.requests == 3 and s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="root/a.txt")


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_permanent_failure_raises_after_bounded_attempts(s3_bucket, fault):
    with FaultProxy(s3_bucket.endpoint_url, lambda n, _: fault) as proxy:
        store = s3_store(s3_bucket, endpoint=proxy.url, max_attempts=2, retry_attempts=3, **FAST)
        start = time.monotonic()
        with pytest.raises(StorageError, match="after 3 attempts") as err:
            store.put_bytes("a.txt", b"a")
        assert not isinstance(err.value, ObjectNotFound)
        assert time.monotonic() - start < 5
    assert proxy.requests == 2 * 3  # botocore's attempts times ours


def test_client_errors_are_not_retried(s3_bucket):
    with FaultProxy(s3_bucket.endpoint_url, lambda n, _: None) as proxy:
        store = s3_store(s3_bucket, endpoint=proxy.url, max_attempts=3, retry_attempts=3, **FAST)
        with pytest.raises(ObjectNotFound):
            store.get_bytes("missing.txt")
        assert store.head("missing.txt") is None
        assert proxy.requests == 2
        missing_bucket = S3ObjectStore("no-such-bucket", "", store.settings)
        with pytest.raises(StorageError, match="NoSuchBucket"):
            missing_bucket.put_bytes("a.txt", b"a")
        assert proxy.requests == 3
