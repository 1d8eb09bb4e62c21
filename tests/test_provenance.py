"""Every drawn picture and every book states, machine-readably, that a trained model made it (IPTC
DigitalSourceType trainedAlgorithmicMedia in XMP / HTML meta), with model version, run and story; read back with
readers other than the writer (Pillow's PNG chunks, pikepdf for the PDF) and by ``seed-story verify``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pikepdf
import pytest
from PIL import Image
from typer.testing import CliRunner

from seed_story.cli.main import app
from seed_story.provenance import (
    TRAINED_ALGORITHMIC_MEDIA,
    XMP_KEY,
    Provenance,
    png_with_provenance,
    read_provenance,
    read_provenance_bytes,
)
from seed_story.render import write_book_html, write_book_pdf
from seed_story.render.demo import demo_record, write_story
from seed_story.runstore.names import check_language, text_direction

STATED = Provenance(model_version="mini-3f2a9c0d1e4b", run_id="2026-12-06", story_id="s", step=2)


def test_a_png_carries_its_provenance_as_xmp(tmp_path: Path) -> None:
    data = png_with_provenance(Image.new("RGB", (8, 8), (10, 20, 30)), STATED)
    assert data == png_with_provenance(Image.new("RGB", (8, 8), (10, 20, 30)), STATED)  # no timestamps
    path = tmp_path / "step_02.png"
    path.write_bytes(data)
    with Image.open(path) as im:
        xmp = im.text[XMP_KEY]
    assert "Iptc4xmpExt:DigitalSourceType" in xmp and TRAINED_ALGORITHMIC_MEDIA in xmp
    assert read_provenance(path).provenance == STATED
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert read_provenance(plain).provenance is None


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("book") / "s"
    record = demo_record("s", steps=2).model_copy(update={"model_version": "mini-3f2a9c0d1e4b", "run_id": "r1"})
    return folder, write_story(folder, record, image_px=64)


def test_books_state_their_provenance_to_independent_readers(book: tuple[Path, object]) -> None:
    folder, record = book
    write_book_pdf(record, folder)
    with pikepdf.open(folder / "book.pdf") as pdf:
        xmp = pdf.open_metadata()
        assert xmp["Iptc4xmpExt:DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
        assert str(pdf.Root.get("/MarkInfo", {}).get("/Marked")) == "True"  # tagged (PDF/UA-1)
        assert str(pdf.Root.Lang) == "en"
    found = read_provenance(folder / "book.pdf").provenance
    assert found == Provenance(model_version="mini-3f2a9c0d1e4b", run_id="r1", story_id="s")
    html = write_book_html(record, folder).read_text()
    assert read_provenance_bytes(html.encode(), "html") == found


def test_verify_reports_each_file_and_fails_on_a_file_without_provenance(book: tuple[Path, object]) -> None:
    folder, record = book
    write_book_pdf(record, folder)
    picture = folder / "generated.png"
    picture.write_bytes(png_with_provenance(Image.new("RGB", (8, 8)), STATED))
    ok = CliRunner().invoke(app, ["verify", str(folder / "book.pdf"), str(picture)])
    assert ok.exit_code == 0, ok.output
    assert "book.pdf: pdf, AI-generated (trainedAlgorithmicMedia); model_version mini-3f2a9c0d1e4b" in ok.output
    assert "generated.png: png, AI-generated" in ok.output and "step 2" in ok.output
    bare = CliRunner().invoke(app, ["verify", "--json", str(folder / "step_01.png")])  # demo art: never marked
    assert bare.exit_code == 1 and json.loads(bare.output)["provenance"] is None


def test_alt_text_language_and_direction(tmp_path: Path) -> None:
    record = demo_record("s", steps=2).model_copy(update={"language": "ar-EG"})
    folder = tmp_path / "s"
    write_story(folder, record, image_px=32)
    html = write_book_html(record, folder).read_text()
    assert '<html lang="ar-EG" dir="rtl">' in html
    for step in record.steps:  # each picture's alt text is its step's text (escaped)
        assert f'alt="{step.text}"' in html.replace("&#39;", "'")
    assert not re.search(r'<img [^>]*alt=""', html)
    assert text_direction("he") == "rtl" and text_direction("zh-Hant-TW") == "ltr"
    assert text_direction("az-Arab") == "rtl" and text_direction("ar-Latn") == "ltr"
    with pytest.raises(ValueError, match="BCP 47"):
        check_language("english")
