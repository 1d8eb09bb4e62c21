"""The gallery of one run: every book with thumbnail, title and status; failed stories with their reason."""

from __future__ import annotations

from pathlib import Path

from seed_story.render.html import BOOK_HTML
from seed_story.render.pdf import BOOK_PDF
from seed_story.render.records import StoryRecord
from seed_story.render.templating import environment

GALLERY_HTML = "index.html"


def render_gallery(run_id: str, run_dir: Path, records: list[StoryRecord]) -> str:
    """The gallery HTML; links are relative to the run folder and only point at books that exist.

    Example::

        html = render_gallery("run1", store.run_dir("run1"), [store.read_story("run1", s) for s in ids])
    """
    books = []
    for r in sorted(records, key=lambda r: r.story_id):
        folder = Path(run_dir) / r.story_id
        ok = r.status == "complete"
        books.append(
            {
                "title": r.title,
                "status": r.status,
                "failed": not ok,
                "reason": r.failure_reason or "",
                "thumb": f"{r.story_id}/{r.opening_image}" if r.opening_image else None,
                "href": f"{r.story_id}/{BOOK_HTML}" if ok and (folder / BOOK_HTML).is_file() else None,
                "pdf": f"{r.story_id}/{BOOK_PDF}" if ok and (folder / BOOK_PDF).is_file() else None,
            }
        )
    return environment().get_template("gallery.html.j2").render(run_id=run_id, books=books)
