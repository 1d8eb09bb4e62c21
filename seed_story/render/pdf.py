"""The print PDF (WeasyPrint): page size a setting, bleed and safe margins, page numbers, full-bleed art."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

from PIL import Image, ImageCms
from pydantic import BaseModel, ConfigDict, Field, model_validator
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration

from seed_story.provenance import Provenance, stamp_pdf
from seed_story.render.fetcher import BookFetcher
from seed_story.render.fonts import FONT_DIR, FONT_STACK, font_faces_css
from seed_story.render.preflight import PreflightReport, preflight, preflight_available
from seed_story.render.templating import STATED_DATE, book_context, book_provenance, environment
from seed_story.render.upscale import enlarge, is_flat_colour
from seed_story.runstore.keys import BOOK_PDF, BOOK_PREFLIGHT
from seed_story.runstore.records import StoryRecord
from seed_story.storage import atomic_file

logger = logging.getLogger(__name__)
PRINT_ASSETS = "print"  # upscaled copies of the art, inside the story folder
CMYK_ICC = "FOGRA39L-seed-story.icc"  # bundled CMYK output profile (seed_story/render/icc/README.md)


class PageSize(StrEnum):
    """Trim sizes, in inches (width, height)."""

    square = "8.5x8.5"
    a4 = "a4"
    letter = "letter"

    @property
    def inches(self) -> tuple[float, float]:
        return {"8.5x8.5": (8.5, 8.5), "a4": (210 / 25.4, 297 / 25.4), "letter": (8.5, 11.0)}[self.value]


class PrintSettings(BaseModel):
    """Print geometry, colour and the rules a book must pass. Art is full-bleed; text stays inside
    ``safe_margin_in`` of the trim edge. Named presets: ``seed_story.render.profiles``.

    Example::

        >>> PrintSettings(page_size="a4", upscale_dpi=300).page_size.inches[0] > 8
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field("custom", description="the preset these settings came from (reports name it)")
    page_size: PageSize = PageSize.square
    bleed_in: float = Field(0.125, ge=0, le=0.5)
    safe_margin_in: float = Field(0.5, ge=0.25, le=1.5)
    art_fraction: float = Field(0.62, gt=0.2, lt=0.9, description="share of a step page's height given to its art")
    upscale_dpi: int | None = Field(None, ge=72, le=1200, description="upscale art printed below this DPI to it")
    pdf_variant: Literal["pdf/ua-1", "pdf/x-4", "pdf/x-1a"] = Field(
        "pdf/ua-1", description="PDF standard: tagged and accessible (ua-1) or print exchange (x-4, x-1a)"
    )
    colour: Literal["rgb", "cmyk"] = Field("rgb", description="cmyk: art separated and text set in CMYK")
    cmyk_icc: str | None = Field(None, description="the printer's CMYK ICC profile (default: the bundled FOGRA39L)")
    min_pages: int = Field(0, ge=0, description="pad a shorter book with blank pages up to this")
    page_multiple: int = Field(1, ge=1, description="pad the page count to a multiple (2 duplex, 4 saddle-stitch)")
    min_ppi: int = Field(0, ge=0, description="preflight warns about art printed below this PPI")

    @model_validator(mode="after")
    def _colour_fits_variant(self) -> PrintSettings:
        if self.pdf_variant == "pdf/x-1a" and self.colour != "cmyk":
            raise ValueError("pdf/x-1a is CMYK only: set colour to cmyk")
        return self


class Geometry(BaseModel):
    """Lengths (inches) the print template needs, derived from the settings."""

    page_w: float
    page_h: float
    margin: float
    bleed: float
    outset: float
    content_h: float
    art_w: float
    art_cover_h: float
    art_step_h: float
    text_top: float

    @classmethod
    def of(cls, s: PrintSettings) -> Geometry:
        w, h = s.page_size.inches
        outset = s.safe_margin_in + s.bleed_in
        art_step_h = s.bleed_in + h * s.art_fraction
        return cls(
            page_w=round(w, 4), page_h=round(h, 4), margin=s.safe_margin_in, bleed=s.bleed_in, outset=outset,
            content_h=round(h - 2 * s.safe_margin_in, 4), art_w=round(w + 2 * s.bleed_in, 4),
            art_cover_h=round(h + 2 * s.bleed_in, 4), art_step_h=round(art_step_h, 4),
            text_top=round(art_step_h - outset + 0.25, 4),
        )  # fmt: skip


class PdfReport(BaseModel):
    """What a PDF render produced: where, how many pages (blank ones added to meet the profile), the lowest art
    DPI, any refused URLs, and the preflight of the written file."""

    path: Path | None = Field(description="the file written; None once a staged copy was uploaded to a remote store")
    pages: int
    padded_pages: int = Field(0, description="blank pages added before the end page for the page-count rules")
    min_dpi: float
    refused_urls: list[str]
    key: str | None = Field(None, description="the PDF's key in the store, when written by render_run")
    preflight: PreflightReport | None = None


def _font_pt(text: str) -> int:
    # Long steps get smaller type so each step stays on one page.
    return 16 if len(text) <= 350 else 14 if len(text) <= 600 else 12


def _dpi(px: tuple[int, int], box_in: tuple[float, float]) -> float:
    # object-fit: cover scales by the larger ratio, so the smaller px/inch is what prints.
    return min(px[0] / box_in[0], px[1] / box_in[1])


@lru_cache(maxsize=4)
def _to_cmyk(icc_path: str) -> ImageCms.ImageCmsTransform:
    printer = ImageCms.getOpenProfile(icc_path)
    return ImageCms.buildTransform(ImageCms.createProfile("sRGB"), printer, "RGB", "CMYK",
                                   renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                   flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)  # fmt: skip


def cmyk_icc(s: PrintSettings) -> Path:
    """The CMYK output profile: the printer's if given, else the bundled FOGRA39L."""
    return Path(s.cmyk_icc) if s.cmyk_icc else Path(str(files("seed_story.render") / "icc" / CMYK_ICC))


def _prepare_art(name: str, story_dir: Path, box: tuple[float, float], s: PrintSettings) -> tuple[str, float]:
    """Relative src for one piece of art (upscaled and/or separated to CMYK when the settings ask) and the DPI
    it prints at. Flat-colour art is separated before it is enlarged (nearest-neighbour commutes with a per-pixel
    colour transform, and the small picture is far cheaper); photographic art after (Lanczos mixes colours)."""
    with Image.open(story_dir / name) as im:
        size = im.size  # the header only: art that prints as it is is never decoded
        dpi = _dpi(size, box)
        enlarge_to = None
        if s.upscale_dpi and dpi < s.upscale_dpi:
            scale = s.upscale_dpi / dpi
            enlarge_to = (math.ceil(size[0] * scale), math.ceil(size[1] * scale))
        if enlarge_to is None and s.colour == "rgb":
            return name, dpi
        picture = im.convert("RGB")
    flat = is_flat_colour(picture)
    separate = s.colour == "cmyk"
    if separate and (flat or enlarge_to is None):
        picture, separate = ImageCms.applyTransform(picture, _to_cmyk(str(cmyk_icc(s)))), False
    if enlarge_to is not None:
        picture, _ = enlarge(picture, enlarge_to, flat)
        dpi = _dpi(picture.size, box)
    if separate:
        picture = ImageCms.applyTransform(picture, _to_cmyk(str(cmyk_icc(s))))
    (story_dir / PRINT_ASSETS).mkdir(parents=True, exist_ok=True)
    if picture.mode == "CMYK":  # separated once here, with the output intent's profile, never by the RIP
        out_name = f"{Path(name).stem}.cmyk.jpg"
        picture.save(story_dir / PRINT_ASSETS / out_name, format="JPEG", quality=95, subsampling=0)
    else:
        out_name = f"{Path(name).stem}.png"
        picture.save(story_dir / PRINT_ASSETS / out_name, format="PNG", compress_level=1)
    return f"{PRINT_ASSETS}/{out_name}", dpi


def _colours(s: PrintSettings) -> dict[str, str]:
    # Opaque colours in the book's colour space (PDF/X-1a allows neither transparency nor RGB).
    if s.colour == "cmyk":
        return {"ink": "device-cmyk(0 0 0 1)", "muted": "device-cmyk(0 0 0 0.67)",
                "band": "device-cmyk(0 0.01 0.05 0.01)"}  # fmt: skip
    return {"ink": "#1d1a16", "muted": "#555555", "band": "rgba(251, 247, 239, .92)"}


class PrintArt(BaseModel):
    """The book's art as the print HTML links it (after upscaling / CMYK separation), and the lowest DPI."""

    opening_src: str | None
    step_srcs: list[str]
    min_dpi: float
    icc_src: str | None = Field(None, description="the CMYK output intent's profile, for CMYK books")


def prepare_print_art(record: StoryRecord, story_dir: Path, settings: PrintSettings) -> PrintArt:
    """Upscale and/or separate every picture as ``settings`` ask (files under ``print/`` in ``story_dir``)."""
    g = Geometry.of(settings)
    story_dir = Path(story_dir)
    icc_src = None
    if settings.colour == "cmyk":
        (story_dir / PRINT_ASSETS).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cmyk_icc(settings), story_dir / PRINT_ASSETS / "output-intent.icc")
        icc_src = f"{PRINT_ASSETS}/output-intent.icc"
    jobs = [(step.image, (g.art_w, g.art_step_h)) for step in record.steps]
    if record.opening_image:
        jobs.insert(0, (record.opening_image, (g.art_w, g.art_cover_h)))
    # Pillow lets go of the GIL while it resizes, separates and encodes: pictures in parallel.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        done = list(pool.map(lambda job: _prepare_art(job[0], story_dir, job[1], settings), jobs))
    min_dpi = min((dpi for _, dpi in done), default=0.0)
    opening_src = done.pop(0)[0] if record.opening_image else None
    return PrintArt(opening_src=opening_src, step_srcs=[src for src, _ in done], min_dpi=min_dpi, icc_src=icc_src)


def render_book_pdf_html(record: StoryRecord, art: PrintArt, settings: PrintSettings, padding: int = 0) -> str:
    """The print HTML handed to WeasyPrint, ``padding`` blank pages before the end page."""
    steps = [{"text": step.text, "src": src, "font_pt": _font_pt(step.text)}
             for step, src in zip(record.steps, art.step_srcs, strict=True)]  # fmt: skip
    template = environment().get_template("print.html.j2")
    return template.render(**book_context(record), g=Geometry.of(settings), steps=steps, padding=padding,
                           fonts=FONT_STACK, opening_src=art.opening_src, colours=_colours(settings),
                           icc_src=art.icc_src)  # fmt: skip


def render_pdf_from_html(
    html: str, story_dir: Path, out: Path, *, identifier: str, variant: str = "pdf/ua-1",
    provenance: Provenance | None = None,
) -> tuple[int, list[str]]:  # fmt: skip
    """Write ``out`` from print HTML as PDF ``variant``, fetching only files inside ``story_dir``, with
    ``provenance`` in its XMP; returns (pages, refused URLs)."""
    story_dir = Path(story_dir)
    fetcher = BookFetcher(story_dir)
    font_config, fonts = _shipped_fonts()
    doc = HTML(string=html, base_url=story_dir.resolve().as_uri() + "/", url_fetcher=fetcher).render(
        stylesheets=[fonts], font_config=font_config
    )
    # A fixed identifier and fixed dates make the bytes reproducible (PDF/A, /UA and /X need dates).
    doc.metadata.created = doc.metadata.modified = STATED_DATE.isoformat()
    fixed_id = hashlib.sha256(identifier.encode()).hexdigest()[:32]
    data = doc.write_pdf(pdf_identifier=fixed_id.encode(), pdf_variant=variant)
    if provenance is not None:
        data = stamp_pdf(data, provenance, str(uuid.UUID(fixed_id)))
    with atomic_file(out) as f:
        f.write(data)
    if fetcher.refused:
        logger.warning("refused %d URL(s) outside %s: %s", len(fetcher.refused), story_dir, fetcher.refused)
    return len(doc.pages), fetcher.refused


@lru_cache(maxsize=1)
def _shipped_fonts() -> tuple[FontConfiguration, CSS]:
    """The package's fonts, loaded once per process and shared by every book it renders."""
    font_config = FontConfiguration()
    css = CSS(string=font_faces_css(), font_config=font_config, url_fetcher=BookFetcher(FONT_DIR))
    return font_config, css


def pages_to_add(pages: int, s: PrintSettings) -> int:
    """Blank pages a ``pages``-page book needs to meet the settings' minimum and multiple."""
    target = max(pages, s.min_pages)
    return math.ceil(target / s.page_multiple) * s.page_multiple - pages


def write_book_pdf(record: StoryRecord, story_dir: Path, settings: PrintSettings | None = None) -> PdfReport:
    """Render ``book.pdf`` next to the story: cover, one page per step, blank pages if the page-count rules need
    them, end page; then preflight it (``book.preflight.json`` beside it).

    Example::

        report = write_book_pdf(record, Path("store/runs/run1/story1"), print_profile("kdp"))
        report.pages >= 24 and report.preflight.passed
    """
    settings = settings or PrintSettings()
    story_dir = Path(story_dir)
    out = story_dir / BOOK_PDF
    stated = book_provenance(record)
    art = prepare_print_art(record, story_dir, settings)
    padding = pages_to_add(len(record.steps) + 2, settings)  # cover, a page per step, end page
    while True:  # once more only if text ran over a page and the count missed the rules
        html = render_book_pdf_html(record, art, settings, padding)
        pages, refused = render_pdf_from_html(html, story_dir, out, identifier=record.story_id,
                                              variant=settings.pdf_variant, provenance=stated)  # fmt: skip
        more = pages_to_add(pages, settings)
        if more == 0:
            break
        padding += more
    if padding:
        logger.info("%s: added %d blank page(s) for the %s profile's page count", record.story_id, padding,
                    settings.profile)  # fmt: skip
    checked = None
    if preflight_available():
        checked = preflight(out, settings, padded_pages=padding)
        (story_dir / BOOK_PREFLIGHT).write_text(checked.model_dump_json(indent=2) + "\n", encoding="utf-8")
    else:
        logger.warning("%s: preflight skipped: poppler-utils (pdfinfo, pdffonts, pdfimages) is not installed",
                       record.story_id)  # fmt: skip
    return PdfReport(path=out, pages=pages, padded_pages=padding, min_dpi=round(art.min_dpi, 1), refused_urls=refused,
                     preflight=checked)  # fmt: skip
