"""Seconds to render a 25-step book as HTML and as PDF, and the PDF's size. Writes bench/results/render.json.

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
        html_s, pdf_s = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            write_book_html(record, folder)
            html_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = write_book_pdf(record, folder)
            pdf_s.append(time.perf_counter() - t)
        result = {
            "steps": args.steps, "image_px": args.image_px, "pages": report.pages,
            "html_seconds": round(min(html_s), 4), "pdf_seconds": round(min(pdf_s), 3),
            "pdf_bytes": report.path.stat().st_size, "machine": platform.processor() or platform.machine(),
            "targets": {"html_seconds": 0.5, "pdf_seconds": 5.0},
        }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
