"""Where an input path may lead: inside the folder it was given, or inside a root the operator allowed.

Inputs (manifest rows, dataset records) are untrusted text: ``../`` or a symlink must not reach a secret beside
the input folder. Local paths are therefore resolved first, symlinks followed, and only then checked; S3 keys
have no links, so there a key is inside a prefix when it starts with it and holds no ``..`` segment.

Example::

    inside_local("pics/a.png", "/data/in")                 # PosixPath('/data/in/pics/a.png')
    inside_local("/mnt/pics/a.png", "/data/in", ["/mnt"])  # allowed by the root
    inside_local("../secret.png", "/data/in")              # OutsideRoots
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from seed_story.storage.base import check_key


class OutsideRoots(ValueError):
    """A path that leads outside the folder it was given and outside every allowed root."""


def inside_local(name: str | Path, folder: str | Path, roots: Sequence[str | Path] = ()) -> Path:
    """``name`` (relative to ``folder``, or absolute) resolved with its symlinks; :class:`OutsideRoots` unless
    the result lies inside ``folder`` or one of ``roots``. Nothing is read; a missing file resolves as given."""
    try:
        path = (Path(folder) / name).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a NUL byte
        raise OutsideRoots(f"{name}: cannot resolve ({err})") from err
    for root in (folder, *roots):
        if path.is_relative_to(Path(root).resolve()):
            return path
    if roots:
        hint = " and the allowed roots"
    else:
        hint = " (an absolute path needs an allowed root)" if Path(name).is_absolute() else ""
    raise OutsideRoots(f"{name} leads outside {folder}{hint}")


def inside_s3(uri: str, roots: Sequence[str]) -> str:
    """``uri`` (``s3://bucket/key``) if its key has no ``..`` or empty segment and it lies under one of the
    ``s3://bucket[/prefix]`` ``roots``; :class:`OutsideRoots` otherwise."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        check_key(key)
    except ValueError as err:
        raise OutsideRoots(f"{uri}: {err}") from err
    parts = (bucket, *PurePosixPath(key).parts)
    for root in roots:
        if root.startswith("s3://"):
            prefix = tuple(p for p in root.removeprefix("s3://").split("/") if p)
            if prefix and parts[: len(prefix)] == prefix:
                return uri
    raise OutsideRoots(f"{uri} is outside {' and '.join(roots) or 'every allowed root'}")
