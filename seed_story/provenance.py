"""Machine-readable provenance: every generated picture and every book says it was made by a trained model.

The sign is the IPTC ``DigitalSourceType`` ``trainedAlgorithmicMedia`` (the IPTC NewsCodes term for media created
by a model trained on sampled content), in XMP: an ``iTXt`` chunk ``XML:com.adobe.xmp`` in each drawn PNG, the
PDF's metadata stream (merged in with pikepdf after WeasyPrint wrote it), and ``<meta>`` elements in the HTML
book. Next to it, under this project's namespace: the model version, the run id, the story id and (pictures) the
step. ``read_provenance`` reads any of the three back; ``seed-story verify FILE`` prints what it finds. Opening
pictures are the users' own and are stored as given, unmarked.

Example::

    data = png_with_provenance(picture, Provenance(model_version="mini-3f2a", run_id="r1", story_id="s1", step=2))
    read_provenance_bytes(data, "png").digital_source_type == TRAINED_ALGORITHMIC_MEDIA
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

from PIL import Image, PngImagePlugin
from pydantic import Field

from seed_story.config import StrictModel

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP_KEY = "XML:com.adobe.xmp"  # the PNG iTXt keyword XMP lives under
NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "seedstory": "https://github.com/seed-story/seed-story/ns/provenance/1.0/",
}
HTML_META = {"digital_source_type": "digital-source-type", "model_version": "seed-story:model-version",
             "run_id": "seed-story:run-id", "story_id": "seed-story:story-id"}  # fmt: skip
_FIELDS = ("model_version", "run_id", "story_id", "step")


class Provenance(StrictModel):
    """What a file says about where it came from (``None``: not stated)."""

    digital_source_type: str | None = TRAINED_ALGORITHMIC_MEDIA
    model_version: str | None = None
    run_id: str | None = None
    story_id: str | None = None
    step: int | None = Field(None, description="the story step a picture illustrates")

    @property
    def ai_generated(self) -> bool:
        return self.digital_source_type == TRAINED_ALGORITHMIC_MEDIA


class Found(StrictModel):
    """``read_provenance``'s answer: the kind of file and its provenance, if it has any."""

    path: str
    kind: Literal["png", "pdf", "html", "other"]
    provenance: Provenance | None


def xmp_description(p: Provenance) -> str:
    """The ``rdf:Description`` element carrying ``p`` (to go inside an ``rdf:RDF``)."""
    fields = "".join(
        f"<seedstory:{name}>{html.escape(str(value))}</seedstory:{name}>"
        for name in _FIELDS
        if (value := getattr(p, name)) is not None
    )
    return (
        f'<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{NS["Iptc4xmpExt"]}" xmlns:seedstory="{NS["seedstory"]}">'
        f"<Iptc4xmpExt:DigitalSourceType>{html.escape(p.digital_source_type or '')}</Iptc4xmpExt:DigitalSourceType>"
        f"{fields}</rdf:Description>"
    )


def xmp_packet(p: Provenance) -> str:
    """A complete XMP packet (what a PNG carries)."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        f'<rdf:RDF xmlns:rdf="{NS["rdf"]}">{xmp_description(p)}</rdf:RDF></x:xmpmeta><?xpacket end="r"?>'
    )


def png_with_provenance(image: Image.Image, p: Provenance) -> bytes:
    """PNG bytes of ``image`` with ``p`` as XMP (no timestamps: the same picture gives the same bytes)."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(XMP_KEY, xmp_packet(p), zip=False)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def stamp_pdf(data: bytes, p: Provenance, document_id: str) -> bytes:
    """``data`` (a PDF) with ``p`` merged into its XMP metadata, the rest untouched (same bytes for same input).

    PDF/X-4 asks for an ``xmpMM:DocumentID``, which WeasyPrint fills with a random UUID: it becomes ``document_id``
    (derived from the book) so that the same book renders to the same bytes."""
    import pikepdf
    from pikepdf.models.metadata import PdfMetadata

    for prefix in ("Iptc4xmpExt", "seedstory"):
        PdfMetadata.register_xml_namespace(NS[prefix], prefix)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        with pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=False) as meta:
            meta["Iptc4xmpExt:DigitalSourceType"] = p.digital_source_type
            if "xmpMM:DocumentID" in meta:
                meta["xmpMM:DocumentID"] = f"xmp.did:{document_id}"
            for name in _FIELDS:
                if (value := getattr(p, name)) is not None:
                    meta[f"seedstory:{name}"] = str(value)
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True)
        return out.getvalue()


def parse_xmp(xmp: str) -> Provenance | None:
    """The provenance in an XMP packet (any number of ``rdf:Description``), or ``None`` if it states none."""
    match = re.search(r"<x:xmpmeta.*</x:xmpmeta>", xmp, re.DOTALL)
    try:
        root = ElementTree.fromstring(match.group(0) if match else xmp)
    except ElementTree.ParseError:
        return None
    found: dict[str, str] = {}
    for element in root.iter():
        namespace, _, name = element.tag.rpartition("}")
        if namespace.lstrip("{") == NS["Iptc4xmpExt"] and name == "DigitalSourceType":
            found["digital_source_type"] = (element.text or "").strip()
        elif namespace.lstrip("{") == NS["seedstory"] and name in _FIELDS:
            found[name] = (element.text or "").strip()
    if "digital_source_type" not in found:
        return None
    return Provenance.model_validate(found)


def _png_xmp(data: bytes) -> str | None:
    with Image.open(io.BytesIO(data)) as im:
        text = getattr(im, "text", {}) or {}
        return text.get(XMP_KEY)


def _pdf_xmp(data: bytes) -> str | None:
    import pikepdf  # an independent reader of what WeasyPrint wrote

    with pikepdf.open(io.BytesIO(data)) as pdf:
        stream = pdf.Root.get("/Metadata")
        return None if stream is None else stream.read_bytes().decode("utf-8", errors="replace")


def _html_provenance(text: str) -> Provenance | None:
    metas = dict(re.findall(r'<meta\s+name="([^"]+)"\s+content="([^"]*)"', text))
    found = {field: html.unescape(metas[name]) for field, name in HTML_META.items() if name in metas}
    return Provenance.model_validate(found) if "digital_source_type" in found else None


def read_provenance_bytes(data: bytes, kind: Literal["png", "pdf", "html"]) -> Provenance | None:
    if kind == "png":
        xmp = _png_xmp(data)
        return parse_xmp(xmp) if xmp else None
    if kind == "pdf":
        xmp = _pdf_xmp(data)
        return parse_xmp(xmp) if xmp else None
    return _html_provenance(data.decode("utf-8", errors="replace"))


def file_kind(data: bytes) -> Literal["png", "pdf", "html", "other"]:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"%PDF-"):
        return "pdf"
    head = data[:512].lstrip().lower()
    return "html" if head.startswith((b"<!doctype html", b"<html")) else "other"


def read_provenance(path: str | Path) -> Found:
    """What ``path`` (a PNG, PDF or HTML book) says about its origin.

    Example::

        read_provenance("store/runs/r1/s1/book.pdf").provenance.model_version
    """
    data = Path(path).read_bytes()
    kind = file_kind(data)
    provenance = None if kind == "other" else read_provenance_bytes(data, kind)
    return Found(path=str(path), kind=kind, provenance=provenance)
