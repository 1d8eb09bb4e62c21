"""Seconds to render a 25-step book as HTML, as EPUB 3 and as PDF under each print profile (screen: tagged PDF/UA-1;
kdp: CMYK PDF/X-1a; ingramspark: CMYK PDF/X-4; the last two upscale the art to 300 PPI and preflight), with the
PDFs' sizes, side by side in one run. Writes bench/results/render.json.

.venv/bin/python bench/render.py [--steps 25] [--image-px 512] [--out bench/results/render.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from seed_story.render import write_book_html, write_book_pdf
from seed_story.render.demo import demo_record, write_story
from seed_story.render.epub import write_book_epub
from seed_story.render.profiles import PROFILES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--image-px", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "render.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bench"
        record = write_story(folder, demo_record("bench", steps=args.steps), image_px=args.image_px)
        html_s: list[float] = []
        epub_s: list[float] = []
        pdf_s: dict[str, list[float]] = {name: [] for name in PROFILES}
        reports, sizes = {}, {}
        for _ in range(args.repeats):
            t = time.perf_counter()
            write_book_html(record, folder)
            html_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            epub = write_book_epub(record, folder)
            epub_s.append(time.perf_counter() - t)
            for name, settings in PROFILES.items():  # interleaved: the machine's noise hits all alike
                t = time.perf_counter()
                reports[name] = write_book_pdf(record, folder, settings)
                pdf_s[name].append(time.perf_counter() - t)
                sizes[name] = (folder / "book.pdf").stat().st_size  # the profiles share the folder
        result = {
            "steps": args.steps, "image_px": args.image_px, "html_seconds": round(min(html_s), 4),
            "epub_seconds": round(min(epub_s), 4), "epub_bytes": epub.stat().st_size,
            "pdf": {name: {"seconds": round(min(pdf_s[name]), 3), "pages": r.pages, "padded_pages": r.padded_pages,
                           "variant": r.preflight.variant if r.preflight else None,
                           "preflight_passed": r.preflight.passed if r.preflight else None,
                           "bytes": sizes[name]}
                    for name, r in reports.items()},
            "machine": platform.processor() or platform.machine(),
            "targets": {"html_seconds": 0.5, "pdf_seconds": 5.0, "epub_seconds": 5.0},
        }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
