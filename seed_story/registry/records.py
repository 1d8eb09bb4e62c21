"""The registry's records and where they live in the store (the layout in :mod:`seed_story.registry`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field, field_validator

from seed_story.config import StrictModel
from seed_story.registry.refs import check_alias, check_name, check_version_id
from seed_story.storage import check_key

MODELS = "models"
VERSION_JSON = "version.json"
AliasAction = Literal["set", "promote", "rollback"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class FileEntry(StrictModel):
    """One file of a version: its path inside the checkpoint folder ('/'-separated), sha256 and size."""

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_key(v)  # relative, no '..': a tampered version.json cannot write outside a cache folder


class ModelVersion(StrictModel):
    """An immutable model version (``version.json``): its files, lineage, training inputs and numbers."""

    name: str
    version_id: str
    parent: str | None = Field(None, description="the version this one was fine-tuned from")
    created_at: AwareDatetime = Field(default_factory=utc_now)
    files: list[FileEntry]
    train_config: dict[str, Any] | None = None
    data_shards: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    gate: dict[str, Any] | None = Field(None, description="the evaluation gate's decision, when one was made")
    source: str = Field("", description="where it was registered from (informational)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("version_id", "parent")
    @classmethod
    def _version_ids(cls, v: str | None) -> str | None:
        return None if v is None else check_version_id(v)

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)


class AliasEvent(StrictModel):
    """One move of an alias (``aliases/{alias}/{seq:08d}.json``); the highest ``seq`` is where it points now."""

    name: str
    alias: str
    seq: int = Field(ge=1)
    from_version: str | None
    to_version: str
    action: AliasAction
    by: str = Field(min_length=1, description="who moved it: user@host or a flow run id")
    at: AwareDatetime = Field(default_factory=utc_now)
    reason: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("alias")
    @classmethod
    def _alias(cls, v: str) -> str:
        return check_alias(v)

    @field_validator("from_version", "to_version")
    @classmethod
    def _version_ids(cls, v: str | None) -> str | None:
        return None if v is None else check_version_id(v)


def content_id(files: Iterable[FileEntry]) -> str:
    """A version id: the first 16 hex digits of sha256 over the sorted ``path<TAB>sha256`` lines of its files."""
    lines = sorted(f"{f.path}\t{f.sha256}\n" for f in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()[:16]


def versions_prefix(name: str) -> str:
    return f"{MODELS}/{check_name(name)}/versions/"


def version_prefix(name: str, version_id: str) -> str:
    return f"{versions_prefix(name)}{check_version_id(version_id)}"


def version_key(name: str, version_id: str) -> str:
    return f"{version_prefix(name, version_id)}/{VERSION_JSON}"


def aliases_prefix(name: str, alias: str | None = None) -> str:
    """All aliases' events of ``name``, or one alias's."""
    prefix = f"{MODELS}/{check_name(name)}/aliases/"
    return prefix if alias is None else f"{prefix}{check_alias(alias)}/"


def alias_event_key(name: str, alias: str, seq: int) -> str:
    return f"{aliases_prefix(name, alias)}{seq:08d}.json"
