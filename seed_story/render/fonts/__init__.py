"""The fonts books are set in, shipped with the package so a PDF comes out the same on any machine.

OFL-licensed Noto fonts (``OFL.txt``), one TrueType file per family and weight, built by ``make_fonts``: Noto Serif
(Latin, Greek, Cyrillic, Vietnamese; regular and bold), Noto Sans SC (CJK ideographs, kana, CJK punctuation),
Noto Naskh Arabic, Noto Serif Hebrew and Noto Emoji (monochrome: print-safe). Each book embeds only the glyphs
it uses (WeasyPrint subsets every font). The families are named ``Book *`` so no host font can stand in.

Example::

    css = font_faces_css()           # @font-face rules pointing at this folder
    f'font-family: {FONT_STACK};'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

FONT_DIR = Path(__file__).resolve().parent
# (family, file, weight): the order of FONT_STACK is the fallback order, script by script.
FACES = (
    ("Book Serif", "book-serif-400.ttf", 400),
    ("Book Serif", "book-serif-700.ttf", 700),
    ("Book CJK", "book-cjk-400.ttf", 400),
    ("Book Arabic", "book-arabic-400.ttf", 400),
    ("Book Hebrew", "book-hebrew-400.ttf", 400),
    ("Book Emoji", "book-emoji-400.ttf", 400),
)
FONT_STACK = '"Book Serif", "Book CJK", "Book Arabic", "Book Hebrew", "Book Emoji"'


@lru_cache(maxsize=1)
def font_faces_css() -> str:
    """``@font-face`` rules for the shipped fonts (``file:`` URLs into this folder)."""
    return "\n".join(
        f'@font-face {{ font-family: "{family}"; src: url("{(FONT_DIR / name).as_uri()}"); font-weight: {weight}; }}'
        for family, name, weight in FACES
    )
