"""Build the book fonts shipped in this folder from the OFL-licensed Noto fonts as fontsource publishes them.

fontsource splits each font into WOFF2 files by Unicode range; this merges each family's files back into one
TrueType file per weight (fontTools), so a book needs six font files, not hundreds. Run it only to update them:

    npm install --prefix /tmp/fonts @fontsource/noto-serif@5 @fontsource/noto-sans-sc@5 \\
        @fontsource/noto-naskh-arabic@5 @fontsource/noto-serif-hebrew@5 @fontsource/noto-emoji@5
    python -m seed_story.render.fonts.make_fonts /tmp/fonts/node_modules/@fontsource
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

# family file -> (fontsource package, Unicode-range subsets to merge ("*" = every numbered chunk), weight)
FONTS: dict[str, tuple[str, tuple[str, ...], int]] = {
    "book-serif-400.ttf": ("noto-serif", ("latin", "latin-ext", "greek", "greek-ext", "cyrillic", "cyrillic-ext",
                                            "vietnamese"), 400),
    "book-serif-700.ttf": ("noto-serif", ("latin", "latin-ext", "greek", "greek-ext", "cyrillic", "cyrillic-ext",
                                            "vietnamese"), 700),
    "book-cjk-400.ttf": ("noto-sans-sc", ("*",), 400),
    "book-arabic-400.ttf": ("noto-naskh-arabic", ("arabic",), 400),
    "book-hebrew-400.ttf": ("noto-serif-hebrew", ("hebrew",), 400),
    "book-emoji-400.ttf": ("noto-emoji", ("*",), 400),
}  # fmt: skip


def _sources(package: Path, subsets: tuple[str, ...], weight: int) -> list[Path]:
    files = package / "files"
    name = package.name
    if subsets == ("*",):
        return sorted(p for p in files.glob(f"{name}-*-{weight}-normal.woff2") if p.name.split("-")[-3].isdigit())
    return [files / f"{name}-{subset}-{weight}-normal.woff2" for subset in subsets]


def build(fontsource: Path, out: Path) -> None:
    from fontTools.merge import Merger, Options
    from fontTools.ttLib import TTFont

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for target, (package, subsets, weight) in FONTS.items():
            plain = []
            for i, source in enumerate(_sources(fontsource / package, subsets, weight)):
                font = TTFont(source)
                font.flavor = None  # the merger reads plain sfnt
                font.save(Path(tmp) / f"{i}.ttf")
                plain.append(str(Path(tmp) / f"{i}.ttf"))
            merged = (
                Merger(options=Options(drop_tables=["vmtx", "vhea"])).merge(plain)
                if len(plain) > 1
                else TTFont(plain[0])
            )
            merged.flavor = None  # plain TrueType: WeasyPrint loads it at once (WOFF2 would cost ~6 s to decode)
            merged.save(out / target)
            logger.info("%s: %d file(s), %d glyphs", target, len(plain), len(merged.getGlyphOrder()))
        shutil.copyfile(fontsource / "noto-serif" / "LICENSE", out / "OFL.txt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fontsource", type=Path, help="node_modules/@fontsource")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.fontsource, args.out)
