"""Print PDFs: page count, text, trim size, images, the URL fetcher, Unicode and reproducible bytes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from seed_story.render import BookFetcher, PageSize, PrintSettings, write_book_pdf
from seed_story.render.demo import demo_record, write_story
from seed_story.render.pdf import render_pdf_from_html
from seed_story.render.profiles import print_profile

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext, pdfinfo) missing; .ci/run adds it"
)


def poppler(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout


def page_text(pdf: Path, page: int) -> str:
    text = poppler("pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-")
    return " ".join(re.sub("[\u202a-\u202e\u2066-\u2069]", "", text).split())  # drop bidi marks, fold spaces


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("book") / "s"
    record = write_story(folder, demo_record("s", steps=3), image_px=256)
    return folder, record


@needs_poppler
def test_pdf_pages_text_size_and_images(book):
    folder, record = book
    report = write_book_pdf(record, folder)
    pdf = report.path
    assert report.pages == len(record.steps) + 2 and report.refused_urls == []
    info = poppler("pdfinfo", "-box", str(pdf))
    assert re.search(r"Pages:\s+5\b", info)
    assert re.search(r"TrimBox:\s+0\.00\s+0\.00\s+612\.00\s+612\.00", info)  # 8.5 in x 72
    assert re.search(r"MediaBox:\s+-9\.00\s+-9\.00\s+621\.00\s+621\.00", info)  # 0.125 in bleed
    assert page_text(pdf, 1) == f"{record.title} {record.author} {record.opening_text}"
    for i, step in enumerate(record.steps, start=2):
        assert page_text(pdf, i) == f"{step.text} {i}"  # step text, then the folio
    assert page_text(pdf, 5) == "The End 5"
    rows = [r.split() for r in poppler("pdfimages", "-list", str(pdf)).splitlines()[2:]]
    art = [r for r in rows if r[2] == "image" and r[3] == "256"]
    assert len(art) == 4  # opening + three steps, embedded at their own 256 px
    # 256 px across the 8.75 in bleed width prints at 29 ppi; pdfimages rounds.
    assert {int(r[12]) for r in art} == {29}
    assert report.min_dpi == pytest.approx(256 / 8.75, abs=0.1)


@needs_poppler
@pytest.mark.parametrize(("size", "trim"), [(PageSize.a4, (595.276, 841.89)), (PageSize.letter, (612.0, 792.0))])
def test_page_size_setting(tmp_path, size, trim):
    record = write_story(tmp_path / "s", demo_record("s", steps=1))
    report = write_book_pdf(record, tmp_path / "s", PrintSettings(page_size=size, bleed_in=0))
    box = re.search(r"TrimBox:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", poppler("pdfinfo", "-box", str(report.path)))
    assert [float(box[3]), float(box[4])] == pytest.approx(trim, abs=0.01)
    assert report.pages == 3


def test_upscaling_reaches_the_stated_dpi(tmp_path):
    record = write_story(tmp_path / "s", demo_record("s", steps=1), image_px=64)
    report = write_book_pdf(record, tmp_path / "s", PrintSettings(upscale_dpi=150))
    assert report.min_dpi >= 150
    assert (tmp_path / "s" / "print" / "step_01.png").is_file()


@pytest.mark.parametrize("profile", ["screen", "ingramspark"])  # PDF/UA-1; PDF/X-4 (which carries a DocumentID)
def test_pdf_bytes_are_reproducible(book, profile):
    folder, record = book
    first = write_book_pdf(record, folder, print_profile(profile)).path.read_bytes()
    assert write_book_pdf(record, folder, print_profile(profile)).path.read_bytes() == first


def test_fetcher_refuses_outside_urls_and_pdf_still_renders(tmp_path):
    folder = tmp_path / "book"
    write_story(folder, demo_record("b", steps=1))
    (tmp_path / "secret.png").write_bytes((folder / "step_01.png").read_bytes())
    html = (
        '<img src="http://example.com/x.png"><img src="file:///etc/passwd">'
        '<img src="../secret.png"><div style="background: url(https://example.com/bg.png)">x</div>'
        '<img src="step_01.png">'
    )
    out = tmp_path / "out.pdf"
    pages, refused = render_pdf_from_html(html, folder, out, identifier="b")
    assert pages == 1 and out.stat().st_size > 0
    assert set(refused) == {
        "http://example.com/x.png", "file:///etc/passwd", (tmp_path / "secret.png").as_uri(),
        "https://example.com/bg.png",
    }  # fmt: skip
    fetcher = BookFetcher(folder)
    assert fetcher.fetch((folder / "step_01.png").as_uri()).read()[:4] == b"\x89PNG"


@needs_poppler
def test_unicode_text_reaches_the_pdf(tmp_path):
    # The shipped Book fonts cover Latin, CJK, Hebrew, Arabic and emoji (seed_story/render/fonts).
    cjk, hebrew, arabic, emoji = "小猫和风筝", "שלום", "مرحبا", "🐱🎈"
    record = demo_record("u", steps=1).model_copy(update={"title": f"{cjk} {hebrew} {arabic} {emoji}"})
    write_story(tmp_path / "u", record)
    pdf = write_book_pdf(record, tmp_path / "u").path
    text = page_text(pdf, 1)
    for word in (cjk, hebrew, *emoji):  # emoji one by one: bidi may reorder them next to RTL text
        assert word in text
    joined = text.replace(" ", "")  # poppler may split joined Arabic letters, or give them in visual order
    assert "مرحبا" in joined or "ابحرم" in joined
    fonts = poppler("pdffonts", str(pdf))
    assert "Book-CJK" in fonts and "Book-Serif" in fonts and "Book-Arabic" in fonts
