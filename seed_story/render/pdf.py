"""The print PDF (WeasyPrint): page size a setting, bleed and safe margins, page numbers, full-bleed art."""

from __future__ import annotations

import hashlib
import logging
import math
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from weasyprint import HTML

from seed_story.provenance import Provenance, stamp_pdf
from seed_story.render.fetcher import BookFetcher
from seed_story.render.templating import book_context, environment, image_size
from seed_story.render.upscale import upscale_to
from seed_story.runstore.keys import BOOK_PDF
from seed_story.runstore.records import StoryRecord
from seed_story.storage import atomic_file

logger = logging.getLogger(__name__)
PRINT_ASSETS = "print"  # upscaled copies of the art, inside the story folder
FIXED_DATE = "2000-01-01T00:00:00+00:00"  # the books' stated dates: a rerender writes the same bytes


class PageSize(StrEnum):
    """Trim sizes, in inches (width, height)."""

    square = "8.5x8.5"
    a4 = "a4"
    letter = "letter"

    @property
    def inches(self) -> tuple[float, float]:
        return {"8.5x8.5": (8.5, 8.5), "a4": (210 / 25.4, 297 / 25.4), "letter": (8.5, 11.0)}[self.value]


class PrintSettings(BaseModel):
    """Print geometry. Art is full-bleed; text stays inside ``safe_margin_in`` of the trim edge.

    Example::

        >>> PrintSettings(page_size="a4", upscale_dpi=300).page_size.inches[0] > 8
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    page_size: PageSize = PageSize.square
    bleed_in: float = Field(0.125, ge=0, le=0.5)
    safe_margin_in: float = Field(0.5, ge=0.25, le=1.5)
    art_fraction: float = Field(0.62, gt=0.2, lt=0.9, description="share of a step page's height given to its art")
    upscale_dpi: int | None = Field(None, ge=72, le=1200, description="Lanczos-upscale art below this DPI")
    pdf_variant: Literal["pdf/ua-1", "pdf/x-4", "pdf/x-1a"] = Field(
        "pdf/ua-1", description="PDF standard: tagged and accessible (ua-1) or print exchange (x-4, x-1a)"
    )


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
    """What a PDF render produced: where, how many pages, the lowest art DPI, and any refused URLs."""

    path: Path | None = Field(description="the file written; None once a staged copy was uploaded to a remote store")
    pages: int
    min_dpi: float
    refused_urls: list[str]
    key: str | None = Field(None, description="the PDF's key in the store, when written by render_run")


def _font_pt(text: str) -> int:
    # Long steps get smaller type so each step stays on one page.
    return 16 if len(text) <= 350 else 14 if len(text) <= 600 else 12


def _dpi(px: tuple[int, int], box_in: tuple[float, float]) -> float:
    # object-fit: cover scales by the larger ratio, so the smaller px/inch is what prints.
    return min(px[0] / box_in[0], px[1] / box_in[1])


def _prepare_art(name: str, story_dir: Path, box: tuple[float, float], s: PrintSettings) -> tuple[str, float]:
    """Relative src for one piece of art (upscaled copy if asked and needed) and its printed DPI."""
    size = image_size(story_dir / name)
    if s.upscale_dpi and _dpi(size, box) < s.upscale_dpi:
        scale = s.upscale_dpi / _dpi(size, box)
        target = (math.ceil(size[0] * scale), math.ceil(size[1] * scale))
        out_name = f"{Path(name).stem}.png"
        upscale_to(story_dir / name, story_dir / PRINT_ASSETS / out_name, target)
        return f"{PRINT_ASSETS}/{out_name}", _dpi(target, box)
    return name, _dpi(size, box)


def render_book_pdf_html(record: StoryRecord, story_dir: Path, settings: PrintSettings) -> tuple[str, float]:
    """The print HTML handed to WeasyPrint, and the lowest DPI any art will print at."""
    g = Geometry.of(settings)
    story_dir = Path(story_dir)
    dpis: list[float] = []
    opening_src = None
    if record.opening_image:
        opening_src, dpi = _prepare_art(record.opening_image, story_dir, (g.art_w, g.art_cover_h), settings)
        dpis.append(dpi)
    steps = []
    for step in record.steps:
        src, dpi = _prepare_art(step.image, story_dir, (g.art_w, g.art_step_h), settings)
        dpis.append(dpi)
        steps.append({"text": step.text, "src": src, "font_pt": _font_pt(step.text)})
    html = (
        environment()
        .get_template("print.html.j2")
        .render(**book_context(record), g=g, steps=steps, opening_src=opening_src)
    )
    return html, min(dpis, default=0.0)


def render_pdf_from_html(
    html: str, story_dir: Path, out: Path, *, identifier: str, variant: str = "pdf/ua-1",
    provenance: Provenance | None = None,
) -> tuple[int, list[str]]:  # fmt: skip
    """Write ``out`` from print HTML as PDF ``variant``, fetching only files inside ``story_dir``, with
    ``provenance`` in its XMP; returns (pages, refused URLs)."""
    story_dir = Path(story_dir)
    fetcher = BookFetcher(story_dir)
    doc = HTML(string=html, base_url=story_dir.resolve().as_uri() + "/", url_fetcher=fetcher).render()
    # A fixed identifier and fixed dates make the bytes reproducible (PDF/A, /UA and /X need dates).
    doc.metadata.created = doc.metadata.modified = FIXED_DATE
    data = doc.write_pdf(pdf_identifier=hashlib.sha256(identifier.encode()).hexdigest()[:32].encode(),
                         pdf_variant=variant, pdf_tags=True)  # fmt: skip
    if provenance is not None:
        data = stamp_pdf(data, provenance)
    with atomic_file(out) as f:
        f.write(data)
    if fetcher.refused:
        logger.warning("refused %d URL(s) outside %s: %s", len(fetcher.refused), story_dir, fetcher.refused)
    return len(doc.pages), fetcher.refused


def write_book_pdf(record: StoryRecord, story_dir: Path, settings: PrintSettings | None = None) -> PdfReport:
    """Render ``book.pdf`` next to the story: cover, one page per step, end page.

    Example::

        report = write_book_pdf(record, Path("store/runs/run1/story1"), PrintSettings(page_size="a4"))
        report.pages == len(record.steps) + 2
    """
    settings = settings or PrintSettings()
    html, min_dpi = render_book_pdf_html(record, story_dir, settings)
    out = Path(story_dir) / BOOK_PDF
    stated = Provenance(model_version=record.model_version or None, run_id=record.run_id or None,
                        story_id=record.story_id)  # fmt: skip
    pages, refused = render_pdf_from_html(html, story_dir, out, identifier=record.story_id,
                                          variant=settings.pdf_variant, provenance=stated)  # fmt: skip
    return PdfReport(path=out, pages=pages, min_dpi=round(min_dpi, 1), refused_urls=refused)
