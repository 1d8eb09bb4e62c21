"""The ebook: a fixed-layout EPUB 3 per story (cover, one spread per step, end page), navigable and accessible.

Each page is one XHTML document of ``PAGE_WIDTH x PAGE_HEIGHT`` CSS pixels (``rendition:layout
pre-paginated``): the picture on one side, its text on the other, the picture's alt text being that text. The
package states the language (and right-to-left page progression where the language needs it), accessibility
metadata (schema.org access modes, features, hazards, summary) and the provenance (made by a trained model:
model version, run). The archive is reproducible: fixed entry order and timestamps, ``mimetype`` first and
stored.

Example::

    write_book_epub(record, Path("store/runs/run1/story1"))   # -> story1/book.epub
"""

from __future__ import annotations

import uuid
import zipfile
from pathlib import Path

from seed_story.render.templating import STATED_DATE, book_context, environment
from seed_story.runstore.keys import BOOK_EPUB
from seed_story.runstore.records import StoryRecord
from seed_story.storage import atomic_file

PAGE_WIDTH, PAGE_HEIGHT = 1600, 900
MODIFIED = STATED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ")  # dcterms:modified wants this exact form
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
_CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/package.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>
"""
_CSS = f"""html, body {{ margin: 0; padding: 0; width: {PAGE_WIDTH}px; height: {PAGE_HEIGHT}px; }}
body {{ font-family: serif; background: #fbf7ef; color: #1d1a16; }}
.spread {{ display: flex; width: {PAGE_WIDTH}px; height: {PAGE_HEIGHT}px; align-items: center; }}
.spread img {{ width: {PAGE_HEIGHT}px; height: {PAGE_HEIGHT}px; object-fit: cover; flex: none; }}
.words {{ padding: 48px 64px; font-size: 36px; line-height: 1.5; }}
.cover h1, .end h1 {{ font-size: 64px; margin: 0 0 24px; }}
.byline {{ font-style: italic; }}
.folio {{ font-size: 24px; opacity: .6; }}
.end {{ justify-content: center; text-align: center; }}
"""


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    # The mimetype must be stored; pictures are compressed already, deflating them again costs time for nothing.
    stored = name == "mimetype" or name.startswith("OEBPS/images/")
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def book_identifier(record: StoryRecord) -> str:
    """A stable ``urn:uuid`` for the book: the same story of the same run and model, the same id."""
    name = f"seed-story:{record.run_id}:{record.story_id}:{record.model_version}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def write_book_epub(record: StoryRecord, story_dir: Path) -> Path:
    """Write ``book.epub`` next to the story's pictures; returns its path."""
    story_dir = Path(story_dir)
    context = book_context(record)
    images, pages = [], []

    def picture(name: str, cover: bool = False) -> str:
        href = f"images/{name}"
        images.append({"id": f"img-{Path(name).stem}", "href": href, "type": _MEDIA[Path(name).suffix.lower()],
                       "cover": cover, "source": story_dir / name})  # fmt: skip
        return href

    cover_image = picture(record.opening_image, cover=True) if record.opening_image else None
    pages.append({"id": "page-cover", "href": "page-cover.xhtml", "kind": "cover", "epub_type": "cover",
                  "label": "Cover", "image": cover_image, "alt": record.opening_text or record.title})  # fmt: skip
    for step in record.steps:
        pages.append({"id": f"page-{step.index:03d}", "href": f"page-{step.index:03d}.xhtml", "kind": "step",
                      "epub_type": "bodymatter", "label": f"Page {step.index}", "number": step.index,
                      "image": picture(step.image), "alt": step.text, "text": step.text})  # fmt: skip
    pages.append({"id": "page-end", "href": "page-end.xhtml", "kind": "end", "epub_type": "backmatter",
                  "label": "The End", "image": None})  # fmt: skip

    env = environment()
    page_template = env.get_template("epub_page.xhtml.j2")
    files: list[tuple[str, bytes]] = [
        ("mimetype", b"application/epub+zip"),
        ("META-INF/container.xml", _CONTAINER.encode()),
        ("OEBPS/package.opf", env.get_template("epub_package.opf.j2").render(
            **context, identifier=book_identifier(record), modified=MODIFIED, pages=pages, images=images).encode()),
        ("OEBPS/nav.xhtml", env.get_template("epub_nav.xhtml.j2").render(**context, pages=pages).encode()),
        ("OEBPS/book.css", _CSS.encode()),
    ]  # fmt: skip
    for page in pages:
        page.setdefault("number", None)
        xhtml = page_template.render(**context, page=page, width=PAGE_WIDTH, height=PAGE_HEIGHT)
        files.append((f"OEBPS/{page['href']}", xhtml.encode()))
    files += [(f"OEBPS/{image['href']}", image["source"].read_bytes()) for image in images]

    out = story_dir / BOOK_EPUB
    with atomic_file(out) as f, zipfile.ZipFile(f, "w") as archive:
        for name, data in files:
            archive.writestr(_entry(name), data)
    return out
