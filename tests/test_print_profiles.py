"""Print profiles: a 12-step story as a KDP and an IngramSpark book passes its preflight, and readers other than
the renderer (poppler's pdfinfo/pdffonts/pdfimages, pikepdf) confirm the PDF standard, the CMYK output intent,
CMYK art, embedded fonts, trim and bleed boxes and the page count. Art is enlarged the way its kind needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pikepdf
import pytest
from PIL import Image

from seed_story.render import write_book_html, write_book_pdf
from seed_story.render.demo import demo_record, write_story
from seed_story.render.gallery import render_gallery
from seed_story.render.preflight import preflight
from seed_story.render.profiles import PROFILES, print_profile
from seed_story.render.upscale import enlarge, is_flat_colour

pytestmark = pytest.mark.skipif(shutil.which("pdfimages") is None, reason="poppler-utils missing; .ci/run adds it")
STEPS = 12


def _poppler(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


def _box(info: str, name: str) -> list[float]:
    return [float(v) for v in re.search(rf"^{name}:\s+(.+)$", info, re.MULTILINE).group(1).split()]  # type: ignore[union-attr]


@pytest.mark.parametrize(("profile", "standard", "min_pages"), [("kdp", "PDF/X-1a:2003", 24),
                                                               ("ingramspark", "PDF/X-4", 18)])  # fmt: skip
def test_a_12_step_book_passes_its_print_profile(profile: str, standard: str, min_pages: int, tmp_path: Path) -> None:
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=STEPS), image_px=64)
    report = write_book_pdf(record, folder, print_profile(profile))
    assert report.preflight is not None and report.preflight.passed, report.preflight
    assert (folder / "book.preflight.json").is_file()
    pdf = folder / "book.pdf"

    info = _poppler("pdfinfo", "-box", str(pdf))
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert pages >= min_pages and pages % 2 == 0 and pages == report.pages
    assert report.padded_pages == pages - (STEPS + 2)  # cover, 12 steps, end page, then blank pages to the rules
    trim, bleed = _box(info, "TrimBox"), _box(info, "BleedBox")
    assert trim[2] - trim[0] == pytest.approx(8.5 * 72) and trim[3] - trim[1] == pytest.approx(8.5 * 72)
    assert trim[0] - bleed[0] == pytest.approx(0.125 * 72) and bleed[3] - trim[3] == pytest.approx(0.125 * 72)

    fonts = _poppler("pdffonts", str(pdf)).splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts)  # every font embedded
    images = [line.split() for line in _poppler("pdfimages", "-list", str(pdf)).splitlines()[2:]]
    assert len(images) == STEPS + 1 and {cols[5] for cols in images} == {"cmyk"}
    assert min(min(float(cols[12]), float(cols[13])) for cols in images) >= 300  # enlarged to print resolution

    with pikepdf.open(pdf) as doc:
        intent = doc.Root.OutputIntents[0]
        assert intent.S == "/GTS_PDFX" and int(intent.DestOutputProfile.N) == 4  # a CMYK output intent
        xmp = doc.Root.Metadata.read_bytes().decode()
        declared = str(doc.docinfo.get("/GTS_PDFXVersion", "")) or re.search(r"GTS_PDFXVersion>([^<]+)<", xmp).group(1)  # type: ignore[union-attr]
        assert declared == standard
        assert "trainedAlgorithmicMedia" in xmp  # provenance survives the PDF/X metadata
        content = b"".join(page.Contents.read_bytes() for page in doc.pages[:2])
        assert b"/DeviceCMYK cs" in content and b" rg\n" not in content  # text set in CMYK, no RGB fill


def test_the_screen_profile_is_rgb_tagged_and_unpadded(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=3), image_px=64)
    report = write_book_pdf(record, folder, PROFILES["screen"])
    assert report.preflight is not None and report.preflight.passed and report.padded_pages == 0
    assert report.preflight.variant == "PDF/UA-1" and report.pages == 5
    info = _poppler("pdfinfo", str(folder / "book.pdf"))
    assert re.search(r"^Tagged:\s+yes", info, re.MULTILINE)


def test_a_book_that_breaks_its_profile_fails_preflight_with_the_reasons(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=3), image_px=64)
    write_book_pdf(record, folder, PROFILES["screen"])
    check = preflight(folder / "book.pdf", print_profile("kdp"))  # an RGB screen book sent to KDP
    assert not check.passed
    text = " | ".join(check.problems)
    for reason in ("needs PDF/X-1a", "no PDF/X output intent", "art not in CMYK", "bleed reaches 0.000 in",
                   "5 pages, the kdp profile needs at least 24", "not a multiple of 2"):  # fmt: skip
        assert reason in text, text
    assert "print below 300 PPI" in check.warnings[0]
    gallery = render_gallery("r1", [record], {"s/book.html", "s/book.pdf"}, {"s": check})
    assert 'class="preflight failed-preflight"' in gallery and "failed preflight (kdp)" in gallery


def test_flat_art_is_enlarged_crisply_and_photographs_smoothly(tmp_path: Path) -> None:
    flat = Image.new("RGB", (16, 16), (250, 250, 240))
    flat.paste((200, 30, 40), (4, 4, 12, 12))
    assert is_flat_colour(flat)
    big, how = enlarge(flat, (100, 100))
    assert how == "nearest" and big.size == (112, 112) and len(big.getcolors()) == 2  # no blended edge colours
    noise = Image.effect_noise((64, 64), 80).convert("RGB")
    assert not is_flat_colour(noise)
    assert enlarge(noise, (200, 200))[1] == "lanczos"
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=2), image_px=64)
    flat.resize((64, 64), Image.Resampling.NEAREST).save(folder / record.steps[0].image)
    html = write_book_html(record, folder).read_text()
    shown = [
        (src, 'class="pixelated"' in rest) for src, rest in re.findall(r'<img src="(step_\d+\.png)"([^>]*)>', html)
    ]
    assert shown == [("step_01.png", True), ("step_02.png", False)]  # the flat one only
