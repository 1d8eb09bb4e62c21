"""Names in the registry and the ``models://name@alias`` / ``models://name@version`` references to them."""

from __future__ import annotations

import re

from seed_story.config import StrictModel

SCHEME = "models://"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^[0-9a-f]{16}$")


def check_name(name: str) -> str:
    """Return ``name`` if it can name a model (``seed-story``), else raise ``ValueError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"model name must be lowercase letters, digits, '_' or '-' (got {name!r})")
    return name


def is_version_id(text: str) -> bool:
    """Whether ``text`` has the form of a version id: 16 lowercase hex digits."""
    return bool(_VERSION.match(text))


def check_version_id(version_id: str) -> str:
    if not isinstance(version_id, str) or not is_version_id(version_id):
        raise ValueError(f"version id must be 16 lowercase hex digits (got {version_id!r})")
    return version_id


def check_alias(alias: str) -> str:
    """Return ``alias`` if it can name an alias (``production``), else raise ``ValueError``.

    An alias never looks like a version id, so ``name@x`` always means one or the other.
    """
    if not isinstance(alias, str) or not _ALIAS.match(alias) or is_version_id(alias):
        raise ValueError(
            f"alias must start with a letter and hold lowercase letters, digits, '_' or '-', and not be 16 hex "
            f"digits (got {alias!r})"
        )
    return alias


class ModelRef(StrictModel):
    """A parsed ``models://name@at``: ``at`` is an alias or a version id."""

    name: str
    at: str

    @property
    def is_version(self) -> bool:
        return is_version_id(self.at)

    def __str__(self) -> str:
        return f"{SCHEME}{self.name}@{self.at}"


def is_model_ref(text: str) -> bool:
    """Whether ``text`` is meant as a registry reference (rather than a folder): it starts with ``models://``."""
    return isinstance(text, str) and text.startswith(SCHEME)


def parse_model_ref(ref: str) -> ModelRef:
    """Split and check ``models://name@alias`` or ``models://name@version``; ``ValueError`` saying why if not.

    Example::

        >>> parse_model_ref("models://seed-story@production").at
        'production'
    """
    if not is_model_ref(ref):
        raise ValueError(f"model reference must start with {SCHEME!r} (got {ref!r})")
    name, sep, at = ref.removeprefix(SCHEME).partition("@")
    if not sep:
        raise ValueError(f"model reference must be {SCHEME}NAME@ALIAS or {SCHEME}NAME@VERSION (got {ref!r})")
    check_name(name)
    if not is_version_id(at):
        check_alias(at)
    return ModelRef(name=name, at=at)
