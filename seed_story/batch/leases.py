"""Story leases: at most one live attempt works on a story of a run, whatever else shares the store.

A run attempt (a flow run's attempt, a ``seed-story generate`` process) is a *holder*. It claims each story it
will work on by creating the story's next lease record with a create-only write (``ObjectStore.put_new``: an S3
conditional write ``If-None-Match: *``, an exclusive create locally), so of two attempts racing for a story
exactly one wins. Its liveness is one small record per holder, ``runs/{run_id}/_holders/{holder}.json``, that a
:class:`LeaseKeeper` thread rewrites every quarter of the lease time (one write per beat however many stories it
holds) and marks ended when the attempt stops.

Keys: ``runs/{run_id}/{story_id}/lease/{seq:06d}.json`` (:class:`Lease`, create-only, seq 1, 2, ...).

* A story whose newest lease's holder beat within ``ttl`` seconds and has not ended is skipped by other
  attempts ("leased by a live run").
* A story whose holder ended, or whose last beat is older than ``ttl`` (a SIGKILLed process, a lost machine),
  is taken over by creating lease ``seq + 1``; racing takers: one wins.
* A holder checks before every write to a story that nobody created the lease after its own (one HEAD), and
  stops writing that story otherwise (:class:`LeaseLost`): :class:`FencedStore` does this for every write.

Clocks: expiry compares the holder's beat time with the reader's clock, so machines sharing a store need
clocks within a small fraction of ``ttl`` (NTP is plenty for the default minute).

Example::

    with LeaseKeeper(store, run_id, holder, ttl=60):
        if claim(store, run_id, "s1", holder, ttl=60).held:
            fenced = FencedStore(store, run_id, holder)
            fenced.put_bytes("runs/r1/s1/step_01.png", png)   # raises LeaseLost once another run took s1
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pydantic import Field

from seed_story.config import StrictModel
from seed_story.runstore.keys import RunKeys, StoryKeys
from seed_story.storage import ObjectExists, ObjectInfo, ObjectStore, get_model, put_model
from seed_story.storage.base import StorageError

logger = logging.getLogger(__name__)

HOLDERS = "_holders"  # story ids start with a letter or digit: no story folder can be called this


class Lease(StrictModel):
    """One claim on a story, never changed once created."""

    story_id: str
    seq: int = Field(ge=1)
    holder: str
    claimed_at: datetime
    took_over: str | None = Field(None, description="the holder whose expired or ended lease this one replaced")


class HolderBeat(StrictModel):
    """A holder's liveness: rewritten every beat, ``ended`` when its attempt stops."""

    holder: str
    at: datetime
    ttl: float
    ended: bool = False
    host: str
    pid: int


class Claim(StrictModel):
    """What :func:`claim` found: whether this holder has the story, and if not who does."""

    story_id: str
    held: bool
    seq: int | None = None
    other: str | None = Field(None, description="the live holder that has the story")


class LeaseLost(RuntimeError):
    """Another attempt took over a story this one held: this attempt must not write it any more."""


def lease_key(run_id: str, story_id: str, seq: int) -> str:
    return StoryKeys(run_id, story_id).key(f"lease/{seq:06d}.json")


def holder_key(run_id: str, holder: str) -> str:
    return f"{RunKeys(run_id).prefix}/{HOLDERS}/{holder}.json"


def newest_lease(store: ObjectStore, run_id: str, story_id: str) -> Lease | None:
    keys = sorted(store.list(StoryKeys(run_id, story_id).key("lease/")))
    return get_model(store, keys[-1], Lease) if keys else None


def holder_alive(store: ObjectStore, run_id: str, holder: str, ttl: float) -> bool:
    """Whether ``holder`` beat within ``ttl`` seconds (its own or ours, the longer) and has not ended."""
    key = holder_key(run_id, holder)
    if not store.exists(key):
        return False
    beat = get_model(store, key, HolderBeat)
    age = (datetime.now(UTC) - beat.at).total_seconds()
    return not beat.ended and age <= max(ttl, beat.ttl)


def earlier_attempt(holder: str, other: str | None) -> bool:
    """Whether ``other`` is an earlier attempt of the same flow run as ``holder`` (ids ``{flow_run_id}.{count}``):
    Prefect only starts a flow run again once its last attempt crashed or failed."""
    if other is None or "." not in holder or "." not in other:
        return False
    ours, _, our_count = holder.rpartition(".")
    theirs, _, their_count = other.rpartition(".")
    return ours == theirs and their_count.isdigit() and our_count.isdigit() and int(their_count) < int(our_count)


def wait_until_gone(store: ObjectStore, run_id: str, holders: list[str], ttl: float, timeout: float) -> None:
    """Poll until none of ``holders`` is alive (ended, or silent for ``ttl``), or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while any(holder_alive(store, run_id, h, ttl) for h in holders) and time.monotonic() < deadline:
        time.sleep(min(1.0, ttl / 4))


def claim(store: ObjectStore, run_id: str, story_id: str, holder: str, ttl: float) -> Claim:
    """Claim ``story_id`` for ``holder``: create its first lease, keep one already ours, or take over one whose
    holder is gone. A story held by a live holder is not claimed (``held=False``, ``other`` names it)."""
    current = newest_lease(store, run_id, story_id)
    if current is not None and current.holder == holder:
        return Claim(story_id=story_id, held=True, seq=current.seq)
    if current is not None and holder_alive(store, run_id, current.holder, ttl):
        return Claim(story_id=story_id, held=False, other=current.holder)
    seq = 1 if current is None else current.seq + 1
    lease = Lease(story_id=story_id, seq=seq, holder=holder, claimed_at=datetime.now(UTC),
                  took_over=current.holder if current else None)  # fmt: skip
    try:
        store.put_new(lease_key(run_id, story_id, seq), lease.model_dump_json(indent=2).encode())
    except ObjectExists:  # another attempt claimed it between our read and our create
        winner = get_model(store, lease_key(run_id, story_id, seq), Lease)
        return Claim(story_id=story_id, held=False, other=winner.holder)
    if current is not None:
        logger.warning("story %s: took over from %s (ended or silent for over %.0f s)", story_id, current.holder, ttl)
    return Claim(story_id=story_id, held=True, seq=seq)


class LeaseKeeper:
    """Keeps ``holder`` alive in the store while the block runs (a daemon thread beats every ``ttl / 4``), and
    marks it ended when the block exits, so its stories are free at once rather than after ``ttl``."""

    def __init__(self, store: ObjectStore, run_id: str, holder: str, ttl: float) -> None:
        self.store, self.run_id, self.holder, self.ttl = store, run_id, holder, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-keeper-{holder}", daemon=True)

    def beat(self, *, ended: bool = False) -> None:
        record = HolderBeat(holder=self.holder, at=datetime.now(UTC), ttl=self.ttl, ended=ended,
                            host=socket.gethostname(), pid=os.getpid())  # fmt: skip
        put_model(self.store, holder_key(self.run_id, self.holder), record)

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.beat()
            except StorageError as err:  # a store hiccup: the next beat may work; expiry is ttl, not one beat
                logger.warning("lease heartbeat failed: %s", err)

    def __enter__(self) -> LeaseKeeper:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.beat(ended=True)
        except StorageError as failure:  # the leases then free themselves after ttl
            logger.warning("could not mark the run's leases ended: %s", failure)


class FencedStore:
    """``store`` for one holder: every write into a story folder first checks that the holder still has the
    story (its newest lease is ours, then that no later lease exists); reads pass through. Writes outside story
    folders (run records, books) are not fenced."""

    def __init__(self, store: ObjectStore, run_id: str, holder: str) -> None:
        self.inner, self.run_id, self.holder = store, run_id, holder
        self.uri = store.uri
        self._seq: dict[str, int] = {}
        self._prefix = RunKeys(run_id).prefix + "/"

    def __repr__(self) -> str:
        return f"FencedStore({self.inner!r}, holder={self.holder})"

    def check(self, key: str) -> None:
        """Raise :class:`LeaseLost` if ``key`` is in a story folder this holder does not hold any more."""
        if not key.startswith(self._prefix):
            return
        story_id, _, rest = key[len(self._prefix) :].partition("/")
        if not rest or story_id.startswith(HOLDERS) or rest.startswith("lease/"):
            return
        seq = self._seq.get(story_id)
        if seq is None:
            lease = newest_lease(self.inner, self.run_id, story_id)
            if lease is None or lease.holder != self.holder:
                other = lease.holder if lease else "nobody"
                raise LeaseLost(f"story {story_id} is not leased to this run (held by {other}); not writing it")
            seq = self._seq[story_id] = lease.seq
        if self.inner.exists(lease_key(self.run_id, story_id, seq + 1)):
            raise LeaseLost(f"story {story_id} was taken over by another run; this run stops writing it")

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        self.check(key)
        return self.inner.put_bytes(key, data, content_type=content_type)

    def put_new(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        self.check(key)
        return self.inner.put_new(key, data, content_type=content_type)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        self.check(key)
        return self.inner.put_file(key, path, content_type=content_type)

    def delete(self, key: str) -> None:
        self.check(key)
        self.inner.delete(key)

    def get_bytes(self, key: str) -> bytes:
        return self.inner.get_bytes(key)

    def get_file(self, key: str, path: Path) -> Path:
        return self.inner.get_file(key, path)

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)
