"""Books are set in the fonts the package ships: with no host fonts at all (an empty fontconfig), a mixed-script
story (English, Chinese, Japanese kana, Arabic, Hebrew, Cyrillic, Greek, emoji) renders without a single
``.notdef`` glyph, and every embedded font is one of ours. A script the fonts do not cover shows up as ``.notdef``:
the check can fail."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pikepdf
import pytest

pytestmark = pytest.mark.skipif(subprocess.run(["which", "pdffonts"], capture_output=True).returncode != 0,
                                reason="poppler-utils missing; .ci/run adds it")  # fmt: skip
MIXED = [
    "George flew his kite over the hill. 小明放风筝，天空很蓝，风很大。",
    "ひらがなとカタカナ。 يطير الطائر فوق البحر الأزرق. הילד רץ אל הים.",
    "Ёлка стоит в лесу. Το δέντρο είναι ψηλό. Voilà, naïve café! 🐱🚀🎈",
]
RENDER = """
import json, sys
from pathlib import Path
from seed_story.render import write_book_pdf
from seed_story.render.demo import demo_record, write_story
from seed_story.render.profiles import PROFILES
folder, texts = Path(sys.argv[1]), json.loads(sys.argv[2])
record = demo_record("s", steps=len(texts))
record = record.model_copy(update={"title": "风筝 · Kite", "steps": [
    s.model_copy(update={"text": t}) for s, t in zip(record.steps, texts)]})
write_story(folder, record, image_px=32)
write_book_pdf(record, folder, PROFILES["screen"])
"""


def _render_without_host_fonts(folder: Path, texts: list[str], tmp: Path) -> Path:
    config = tmp / "fonts.conf"  # fontconfig with no font directory: nothing but what the book brings
    config.write_text(f'<?xml version="1.0"?><fontconfig><cachedir>{tmp / "fc-cache"}</cachedir></fontconfig>')
    env = {**os.environ, "FONTCONFIG_FILE": str(config), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", RENDER, str(folder), json.dumps(texts)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "book.pdf"


def _fonts(pdf: Path) -> list[tuple[str, str]]:
    """(name, encoding) of every embedded font, as poppler reads them."""
    lines = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    return [(line.split()[0], line.split()[-6]) for line in lines]


def _notdef_glyphs(pdf: Path) -> int:
    """Glyphs drawn for characters no font had. Either glyph 0 (``.notdef``: in Identity-H strings each 4 hex
    digits are a glyph id), or the hex box WeasyPrint draws instead, which it adds to a font beyond the font's own
    glyphs, switching that font off Identity-H (poppler reports its encoding as Custom)."""
    count = sum(encoding != "Identity-H" for _, encoding in _fonts(pdf))
    with pikepdf.open(pdf) as doc:
        for page in doc.pages:
            content = page.Contents.read_bytes().decode("latin-1")
            for run in re.findall(r"<([0-9a-fA-F]+)>", content):
                count += sum(run[i : i + 4] == "0000" for i in range(0, len(run), 4))
    return count


def test_mixed_scripts_need_no_host_font(tmp_path: Path) -> None:
    pdf = _render_without_host_fonts(tmp_path / "book", MIXED, tmp_path)
    fonts = [name for name, _ in _fonts(pdf)]
    families = {re.sub(r"^[A-Z]{6}\+", "", name).split("-")[1] for name in fonts}
    assert families == {"Serif", "CJK", "Arabic", "Hebrew", "Emoji"}, fonts  # Book-*: ours, all of them used
    assert _notdef_glyphs(pdf) == 0
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "小明放风筝" in text and "Ёлка" in text and "🚀" in text


def test_a_script_the_fonts_lack_shows_as_notdef(tmp_path: Path) -> None:
    pdf = _render_without_host_fonts(tmp_path / "book", ["नमस्ते दुनिया"], tmp_path)  # Devanagari: not shipped
    assert _notdef_glyphs(pdf) > 0
