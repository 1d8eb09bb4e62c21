"""Preflight: read a written book back with tools other than the renderer and check it against its profile.

poppler (``pdfinfo -box``, ``pdffonts``, ``pdfimages -list``) and pikepdf read the PDF; nothing comes from
WeasyPrint's side. Problems (a wrong PDF standard, no output intent, RGB art in a CMYK book, a font not
embedded, wrong trim or bleed boxes, a page count against the rules) fail the book; art printed below the
profile's PPI is a warning.

Example::

    report = preflight(Path("runs/r1/s1/book.pdf"), print_profile("kdp"))
    report.passed, report.problems, [i.ppi for i in report.images]
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from seed_story.config import StrictModel

if TYPE_CHECKING:
    from seed_story.render.pdf import PrintSettings

POINTS = 72.0
_VARIANT_NAMES = {"pdf/x-1a": "PDF/X-1a:2003", "pdf/x-4": "PDF/X-4", "pdf/ua-1": "PDF/UA-1"}


class PreflightImage(StrictModel):
    page: int
    colour: str = Field(description="as pdfimages reads it: rgb, cmyk, gray, icc, ...")
    ppi: float = Field(description="the lower of the x and y resolution the picture prints at")


class PreflightFont(StrictModel):
    name: str
    embedded: bool


class PreflightReport(StrictModel):
    """``book.preflight.json``: what an independent reader found in the PDF, and the profile's verdict."""

    profile: str
    passed: bool
    problems: list[str] = Field(default_factory=list, description="rules broken: the book fails preflight")
    warnings: list[str] = Field(default_factory=list)
    pages: int
    padded_pages: int = 0
    variant: str | None = Field(description="the PDF standard the file declares")
    output_intent: str | None = Field(description="the output condition of its output intent, if any")
    output_intent_components: int | None = None
    boxes: dict[str, list[float]] = Field(description="page 1's boxes in points: MediaBox, TrimBox, BleedBox...")
    fonts: list[PreflightFont]
    images: list[PreflightImage]

    @property
    def min_ppi(self) -> float | None:
        return min((i.ppi for i in self.images), default=None)


def preflight_available() -> bool:
    """Whether poppler's tools are installed (Debian: poppler-utils; the image has them)."""
    return all(shutil.which(tool) for tool in ("pdfinfo", "pdffonts", "pdfimages"))


def _run(*args: str) -> str:
    if shutil.which(args[0]) is None:
        raise RuntimeError(f"preflight needs poppler's {args[0]} (Debian: poppler-utils)")
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout


def _info(pdf: Path) -> tuple[int, str | None, dict[str, list[float]]]:
    text = _run("pdfinfo", "-box", str(pdf))
    pages = int(re.search(r"^Pages:\s+(\d+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    subtype = re.search(r"^PDF subtype:\s+(.+)$", text, re.MULTILINE)
    boxes = {m.group(1): [float(v) for v in m.group(2).split()]
             for m in re.finditer(r"^(\w+Box):\s+([-\d.\s]+)$", text, re.MULTILINE)}  # fmt: skip
    return pages, subtype.group(1).strip() if subtype else None, boxes


def _fonts(pdf: Path) -> list[PreflightFont]:
    lines = _run("pdffonts", str(pdf)).splitlines()[2:]  # after the header and its dashes
    # Columns end with: emb sub uni object ID (the object ID is two numbers).
    return [PreflightFont(name=line.split()[0], embedded=line.split()[-5] == "yes") for line in lines if line.strip()]


def _images(pdf: Path) -> list[PreflightImage]:
    lines = _run("pdfimages", "-list", str(pdf)).splitlines()[2:]
    found = []
    for line in lines:
        cols = line.split()
        if len(cols) >= 14 and cols[2] == "image":  # smasks and stencils are not pictures of their own
            found.append(PreflightImage(page=int(cols[0]), colour=cols[5], ppi=min(float(cols[12]), float(cols[13]))))
    return found


def _intent_and_xmp_variant(pdf: Path) -> tuple[str | None, int | None, str | None]:
    """The output intent's condition and colour components, and the standard the XMP declares (PDF/X-4 and
    PDF/UA state themselves only there)."""
    import pikepdf

    with pikepdf.open(pdf) as doc:
        intents = doc.Root.get("/OutputIntents")
        name, components = None, None
        if intents:
            intent = intents[0]
            name = str(intent.get("/OutputConditionIdentifier", "")) or None
            profile = intent.get("/DestOutputProfile")
            components = int(profile.get("/N")) if profile is not None else None
        xmp = doc.Root.get("/Metadata")
        text = xmp.read_bytes().decode("utf-8", errors="replace") if xmp is not None else ""
    pdfx = re.search(r"GTS_PDFXVersion[^>]*>([^<]+)<|GTS_PDFXVersion=\"([^\"]+)\"", text)
    if pdfx:
        return name, components, (pdfx.group(1) or pdfx.group(2)).strip()
    ua = re.search(r"pdfuaid:part[^>]*>\s*(\d)|pdfuaid:part=\"(\d)\"", text)
    return name, components, f"PDF/UA-{ua.group(1) or ua.group(2)}" if ua else None


def preflight(pdf: Path, s: PrintSettings, *, padded_pages: int = 0) -> PreflightReport:
    """Read ``pdf`` back and check it against ``s`` (see the module docstring for the rules)."""
    pages, subtype, boxes = _info(pdf)
    fonts, images = _fonts(pdf), _images(pdf)
    intent, components, declared = _intent_and_xmp_variant(pdf)
    variant = subtype or declared
    problems, warnings = [], []
    wanted = _VARIANT_NAMES[s.pdf_variant]
    if variant is None or not variant.startswith(wanted):
        problems.append(f"declares {variant or 'no PDF standard'}, the {s.profile} profile needs {wanted}")
    if s.pdf_variant.startswith("pdf/x") and intent is None:
        problems.append("no PDF/X output intent")
    if s.colour == "cmyk":
        if components != 4:
            problems.append(f"output intent has {components} colour components, a CMYK book needs 4")
        rgb = sorted({i.page for i in images if i.colour not in ("cmyk", "gray")})
        if rgb:
            problems.append(f"art not in CMYK on page(s) {', '.join(map(str, rgb))}")
    if missing := [f.name for f in fonts if not f.embedded]:
        problems.append(f"fonts not embedded: {', '.join(missing)}")
    problems += _box_problems(boxes, s)
    if pages < s.min_pages:
        problems.append(f"{pages} pages, the {s.profile} profile needs at least {s.min_pages}")
    if pages % s.page_multiple:
        problems.append(f"{pages} pages is not a multiple of {s.page_multiple}")
    low = [i for i in images if i.ppi < s.min_ppi]
    if low:
        warnings.append(f"{len(low)} picture(s) print below {s.min_ppi} PPI (lowest {min(i.ppi for i in low):.0f})")
    if padded_pages:
        warnings.append(f"{padded_pages} blank page(s) added before the end page to meet the page-count rules")
    return PreflightReport(profile=s.profile, passed=not problems, problems=problems, warnings=warnings, pages=pages,
                           padded_pages=padded_pages, variant=variant, output_intent=intent,
                           output_intent_components=components, boxes=boxes, fonts=fonts, images=images)  # fmt: skip


def _box_problems(boxes: dict[str, list[float]], s: PrintSettings) -> list[str]:
    """The trim box must be the page size; the bleed box must reach ``bleed_in`` beyond it on every side."""
    width, height = (v * POINTS for v in s.page_size.inches)
    trim = boxes.get("TrimBox") or boxes.get("MediaBox")
    if trim is None:
        return ["no page boxes found"]
    problems = []
    if abs((trim[2] - trim[0]) - width) > 0.5 or abs((trim[3] - trim[1]) - height) > 0.5:
        size = f"{(trim[2] - trim[0]) / POINTS:.3f} x {(trim[3] - trim[1]) / POINTS:.3f} in"
        problems.append(f"trim box {size}, the profile's trim is {s.page_size.value}")
    bleed = boxes.get("BleedBox") or boxes.get("MediaBox") or trim
    need = s.bleed_in * POINTS
    reach = min(trim[0] - bleed[0], trim[1] - bleed[1], bleed[2] - trim[2], bleed[3] - trim[3])
    if reach + 0.5 < need:
        problems.append(f"bleed reaches {reach / POINTS:.3f} in beyond the trim, the profile needs {s.bleed_in} in")
    return problems
