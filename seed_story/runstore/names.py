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


# BCP 47 language tags as books use them: language[-script][-region][-variant...] (RFC 5646's common shapes).
_LANGUAGE_TAG = re.compile(
    r"^[a-zA-Z]{2,3}(-[a-zA-Z]{4})?(-([a-zA-Z]{2}|[0-9]{3}))?(-([a-zA-Z0-9]{5,8}|[0-9][a-zA-Z0-9]{3}))*$"
)
# Written right to left: by language (Arabic, Hebrew, Persian, Urdu, Yiddish, Pashto, Sindhi, Uyghur, Dhivehi,
# Sorani Kurdish) or by script subtag (Arabic, Hebrew, Thaana, Syriac, N'Ko, Adlam).
_RTL_LANGUAGES = {"ar", "he", "iw", "fa", "ur", "yi", "ps", "sd", "ug", "dv", "ckb"}
_RTL_SCRIPTS = {"arab", "hebr", "thaa", "syrc", "nkoo", "adlm"}


def check_language(tag: str) -> str:
    """Return a BCP 47 language tag (``en``, ``zh-Hans``, ``ar-EG``) if well formed, else raise ``ValueError``.

    Example::

        >>> check_language("pt-BR")
        'pt-BR'
    """
    if not _LANGUAGE_TAG.match(tag):
        raise ValueError(f"language must be a BCP 47 tag such as 'en', 'zh-Hans' or 'ar-EG' (got {tag!r})")
    return tag


def text_direction(tag: str) -> str:
    """``rtl`` for a language written right to left, else ``ltr``.

    Example::

        >>> text_direction("he"), text_direction("az-Arab"), text_direction("en-US")
        ('rtl', 'rtl', 'ltr')
    """
    parts = tag.lower().split("-")
    script = next((p for p in parts[1:] if len(p) == 4 and p.isalpha()), None)
    if script is not None:
        return "rtl" if script in _RTL_SCRIPTS else "ltr"
    return "rtl" if parts[0] in _RTL_LANGUAGES else "ltr"
