"""The gallery of one run: every book with thumbnail, title and status; failed stories with their reason."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from seed_story.render.preflight import PreflightReport
from seed_story.render.templating import environment
from seed_story.runstore.keys import BOOK_EPUB, BOOK_HTML, BOOK_PDF
from seed_story.runstore.records import StoryRecord


def render_gallery(
    run_id: str, records: list[StoryRecord], existing: Collection[str],
    preflight: Mapping[str, PreflightReport] | None = None,
) -> str:  # fmt: skip
    """The gallery HTML. Links are relative to the run folder and only point at books listed in ``existing``
    (paths relative to the run folder, such as ``s1/book.html``), so it works the same for a folder or a bucket.
    ``preflight`` (story id -> its PDF's preflight) adds a line per book: passed for which profile, or why not.

    Example::

        keys = store.list("runs/run1/")
        html = render_gallery("run1", records, {k.removeprefix("runs/run1/") for k in keys})
    """
    books = []
    for r in sorted(records, key=lambda r: r.story_id):
        ok = r.status == "complete"
        html, pdf = f"{r.story_id}/{BOOK_HTML}", f"{r.story_id}/{BOOK_PDF}"
        books.append(
            {
                "title": r.title,
                "status": r.status,
                "failed": not ok,
                "reason": r.failure_reason or "",
                "thumb": f"{r.story_id}/{r.opening_image}" if r.opening_image else None,
                "href": html if ok and html in existing else None,
                "pdf": pdf if ok and pdf in existing else None,
                "epub": epub if ok and (epub := f"{r.story_id}/{BOOK_EPUB}") in existing else None,
                "preflight": _preflight_line((preflight or {}).get(r.story_id)) if ok else None,
                "preflight_failed": ok and not getattr((preflight or {}).get(r.story_id), "passed", True),
            }
        )
    return environment().get_template("gallery.html.j2").render(run_id=run_id, books=books)


def _preflight_line(check: PreflightReport | None) -> str | None:
    if check is None:
        return None
    if not check.passed:
        return f"failed preflight ({check.profile}): {'; '.join(check.problems)}"
    notes = f"; {'; '.join(check.warnings)}" if check.warnings else ""
    return f"preflight passed ({check.profile}, {check.variant}, {check.pages} pages){notes}"
