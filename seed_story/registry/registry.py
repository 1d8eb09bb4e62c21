"""``Registry``: model versions and the aliases that point at them, in an object store."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from seed_story.registry.cache import fetch_version
from seed_story.registry.records import (
    MODELS,
    VERSION_JSON,
    AliasAction,
    AliasEvent,
    FileEntry,
    ModelVersion,
    alias_event_key,
    aliases_prefix,
    content_id,
    version_key,
    version_prefix,
    versions_prefix,
)
from seed_story.registry.refs import check_alias, check_name, check_version_id, parse_model_ref
from seed_story.storage import ObjectExists, ObjectNotFound, ObjectStore, get_model
from seed_story.storage.base import sha256_file

Progress = Callable[[int, int], None]
_EVENT = re.compile(r"^(\d{8})\.json$")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done as asked (the message says why, in one line)."""


class UnknownVersion(RegistryError, LookupError):
    """No complete version (or no alias) by that name."""


class AliasConflict(RegistryError):
    """The alias moved between reading it and moving it: another promotion won. Nothing was changed."""


def scan_checkpoint(folder: Path) -> list[FileEntry]:
    """The files of a checkpoint folder with their sha256 and size, by path.

    A top-level ``version.json`` is left out: it is the registry's own record, so a fetched copy of a version
    registers as that same version.
    """
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p != folder / VERSION_JSON)
    return [
        FileEntry(path=p.relative_to(folder).as_posix(), sha256=sha256_file(p), bytes=p.stat().st_size) for p in paths
    ]


class Registry:
    """Versions of named models and their aliases, kept in ``store`` under ``models/`` (no server).

    Example::

        registry = Registry(open_store("s3://books/prod"))
        version = registry.register(Path("training/stage2/run7/final"), "seed-story", metrics={"heldout_loss": 2.1})
        registry.promote("seed-story", version.version_id, by="ci@builder")
        registry.resolve("models://seed-story@production")  # the version just promoted
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"Registry({self.store!r})"

    # --- versions -------------------------------------------------------------------------------------------

    def register(
        self,
        folder: Path,
        name: str,
        *,
        parent: str | None = None,
        train_config: Mapping[str, Any] | None = None,
        data_shards: Iterable[str] = (),
        metrics: Mapping[str, float] | None = None,
        gate: Mapping[str, Any] | None = None,
        source: str | None = None,
        progress: Progress | None = None,
    ) -> ModelVersion:
        """Store the checkpoint in ``folder`` as a version of ``name``: its files first, ``version.json`` last.

        The version id is the files' content hash, so registering the same files again returns the version
        already there (its record unchanged), and a version whose upload was cut short is completed.
        """
        # The checkpoint module loads torch; listing and resolving versions must not.
        from seed_story.checkpoints.native import MANIFEST, read_manifest

        folder = Path(folder)
        check_name(name)
        if parent is not None:
            check_version_id(parent)
        if not (folder / MANIFEST).is_file():
            raise ValueError(f"{folder} is not a seed-story checkpoint folder (no {MANIFEST})")
        read_manifest(folder)  # a manifest this version cannot read is refused before anything is uploaded
        files = scan_checkpoint(folder)
        version_id = content_id(files)
        key = version_key(name, version_id)
        if self.store.exists(key):
            return get_model(self.store, key, ModelVersion)
        self._upload(folder, version_prefix(name, version_id), files, progress)
        record = ModelVersion(
            name=name, version_id=version_id, parent=parent, files=files,
            train_config=dict(train_config) if train_config is not None else None, data_shards=list(data_shards),
            metrics=dict(metrics or {}), gate=dict(gate) if gate is not None else None,
            source=source or str(folder.resolve()),
        )  # fmt: skip
        try:
            self.store.put_new(key, record.model_dump_json(indent=2).encode("utf-8"), content_type="application/json")
        except ObjectExists:
            return get_model(self.store, key, ModelVersion)  # the same files, registered at the same time
        return record

    def _upload(self, folder: Path, prefix: str, files: list[FileEntry], progress: Progress | None) -> None:
        total, done = sum(f.bytes for f in files), 0
        for entry in files:
            key = f"{prefix}/{entry.path}"
            stored = self.store.head(key)
            # Keys are content-addressed: a file a cut-short upload left is only skipped if it is the same bytes.
            if stored is None or (stored.size, stored.sha256) != (entry.bytes, entry.sha256):
                info = self.store.put_file(key, folder / entry.path)
                if info.sha256 != entry.sha256:
                    raise ValueError(f"{folder / entry.path} changed while it was being registered; try again")
            done += entry.bytes
            if progress is not None:
                progress(done, total)

    def versions(self, name: str) -> list[ModelVersion]:
        """The complete versions of ``name``, oldest first."""
        prefix = versions_prefix(name)
        keys = [k for k in self.store.list(prefix) if k.removeprefix(prefix).count("/") == 1]
        records = [get_model(self.store, k, ModelVersion) for k in keys if k.endswith(f"/{VERSION_JSON}")]
        return sorted(records, key=lambda v: (v.created_at, v.version_id))

    def version(self, name: str, version_id: str) -> ModelVersion:
        """One complete version (``UnknownVersion`` if there is none by that id)."""
        try:
            return get_model(self.store, version_key(name, version_id), ModelVersion)
        except ObjectNotFound:
            raise UnknownVersion(f"no version {version_id} of {name} in {self.store.uri}") from None

    def names(self) -> list[str]:
        """The model names with at least one complete version."""
        found = set()
        for key in self.store.list(f"{MODELS}/"):
            parts = key.split("/")
            if len(parts) == 5 and parts[2] == "versions" and parts[4] == VERSION_JSON:
                found.add(parts[1])
        return sorted(found)

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``models://name@alias`` or ``models://name@version_id`` names.

        Example::

            registry.resolve("models://seed-story@production").version_id  # '3f2a9c0d1e4b5a67'
        """
        parsed = parse_model_ref(ref)
        if parsed.is_version:
            return self.version(parsed.name, parsed.at)
        event = self.alias(parsed.name, parsed.at)
        if event is None:
            raise UnknownVersion(f"{parsed.at} of {parsed.name} is not set in {self.store.uri}")
        return self.version(parsed.name, event.to_version)

    def fetch(self, version: ModelVersion, cache_dir: Path, *, progress: Progress | None = None) -> Path:
        """A local checkpoint folder of ``version`` (see :func:`~seed_story.registry.cache.fetch_version`)."""
        return fetch_version(self.store, version, cache_dir, progress=progress)

    # --- aliases --------------------------------------------------------------------------------------------

    def _event_keys(self, name: str, alias: str | None = None) -> dict[str, list[str]]:
        """Alias -> its event keys, in seq order."""
        prefix = aliases_prefix(name, alias)
        keys: dict[str, list[str]] = {}
        for key in self.store.list(prefix):
            alias_name, _, file_name = key.removeprefix(aliases_prefix(name)).partition("/")
            if _EVENT.match(file_name):
                keys.setdefault(alias_name, []).append(key)
        return keys  # zero-padded seqs: the listing's order is seq order

    def aliases(self, name: str) -> dict[str, AliasEvent]:
        """Each alias of ``name`` and its current event (the one with the highest seq)."""
        return {a: get_model(self.store, keys[-1], AliasEvent) for a, keys in sorted(self._event_keys(name).items())}

    def alias(self, name: str, alias: str) -> AliasEvent | None:
        """The current event of ``alias`` (where it points: ``.to_version``), or None if it was never set."""
        keys = self._event_keys(name, check_alias(alias)).get(alias)
        return get_model(self.store, keys[-1], AliasEvent) if keys else None

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every move of one alias of ``name``, or of all its aliases, in time order."""
        keys = [k for ks in self._event_keys(name, alias).values() for k in ks]
        return sorted((get_model(self.store, k, AliasEvent) for k in keys), key=lambda e: (e.at, e.seq))

    def move_alias(
        self,
        name: str,
        alias: str,
        to_version: str,
        *,
        action: AliasAction,
        by: str,
        reason: str = "",
        expected_seq: int | None = None,
    ) -> AliasEvent:
        """Point ``alias`` at ``to_version`` by creating its next event; returns that event.

        The event's key is the alias's next seq, created only if absent: of two moves that read the same seq,
        exactly one lands and the other raises ``AliasConflict`` (never retried here: the caller decides). With
        ``expected_seq``, the move also fails if the alias is no longer at that seq (0: never set). An alias
        already at ``to_version`` is left alone and its current event returned, so a retried move is harmless.
        """
        current = self.alias(name, alias)
        seq = current.seq if current is not None else 0
        if expected_seq is not None and expected_seq != seq:
            raise AliasConflict(_moved(name, alias, current))
        self.version(name, to_version)  # only complete versions can be pointed at
        if current is not None and current.to_version == to_version:
            return current
        event = AliasEvent(
            name=name, alias=alias, seq=seq + 1, from_version=current.to_version if current else None,
            to_version=to_version, action=action, by=by, reason=reason,
        )  # fmt: skip
        data = event.model_dump_json(indent=2).encode("utf-8")
        try:
            self.store.put_new(alias_event_key(name, alias, event.seq), data, content_type="application/json")
        except ObjectExists:
            raise AliasConflict(_moved(name, alias, self.alias(name, alias))) from None
        return event

    def promote(
        self,
        name: str,
        version_id: str,
        alias: str = "production",
        *,
        by: str,
        reason: str = "",
        expected_seq: int | None = None,
    ) -> AliasEvent:
        """Point ``alias`` (``production``) at ``version_id``; see :meth:`move_alias` for races.

        Example::

            registry.promote("seed-story", "3f2a9c0d1e4b5a67", by="ana@lab", reason="gate passed")
        """
        return self.move_alias(
            name, alias, version_id, action="promote", by=by, reason=reason, expected_seq=expected_seq
        )

    def rollback(self, name: str, alias: str = "production", *, by: str, reason: str = "") -> AliasEvent:
        """Point ``alias`` back at the version it named before its last move.

        Example::

            registry.rollback("seed-story", by="ana@lab", reason="books came out blurry")
        """
        current = self.alias(name, alias)
        if current is None:
            raise UnknownVersion(f"{alias} of {name} is not set in {self.store.uri}")
        if current.from_version is None:
            raise RegistryError(f"{alias} of {name} has no earlier version")
        return self.move_alias(
            name, alias, current.from_version, action="rollback", by=by, reason=reason, expected_seq=current.seq
        )


def _moved(name: str, alias: str, current: AliasEvent | None) -> str:
    now = f"seq {current.seq} -> {current.to_version}" if current is not None else "seq 0, not set"
    return f"{alias} of {name} moved meanwhile (now {now}); nothing changed"
