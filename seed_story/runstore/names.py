"""Names a stored record may use: one plain file or folder name, never a path.

A record can then only ever refer to files inside its own story folder (the first line of defence; the PDF
renderer's URL fetcher is the second).
"""

from __future__ import annotations

import re

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def check_safe_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a single plain file/folder name, else raise ``ValueError``.

    Example::

        >>> check_safe_name("step_01.png")
        'step_01.png'
    """
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"{what} must be a plain name of letters, digits, '_', '-', '.' (got {name!r})")
    return name


def check_image_name(name: str) -> str:
    """A safe name with a picture's suffix."""
    check_safe_name(name, "image file")
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise ValueError(f"image file must end with one of {IMAGE_SUFFIXES} (got {name!r})")
    return name
