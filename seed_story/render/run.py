"""Render every story of a run from a store, writing books next to the stories and the gallery in the run."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import BaseModel

from seed_story.render.gallery import GALLERY_HTML, render_gallery
from seed_story.render.html import write_book_html
from seed_story.render.pdf import PdfReport, PrintSettings, write_book_pdf
from seed_story.render.store import StoryStore

logger = logging.getLogger(__name__)
FORMATS = ("html", "pdf")


class RunReport(BaseModel):
    """What ``render_run`` wrote."""

    run_id: str
    rendered: list[str]
    failed: list[str]
    pdfs: list[PdfReport]


def render_run(
    store: StoryStore,
    run_id: str,
    formats: Iterable[str] = FORMATS,
    settings: PrintSettings | None = None,
    *,
    self_contained: bool = False,
) -> RunReport:
    """Render all complete stories of ``run_id`` as HTML and/or PDF, then write the run's ``index.html``.

    Example::

        report = render_run(LocalStore("store"), "2026-11-26", formats=["html", "pdf"])
    """
    formats = set(formats)
    if unknown := formats - set(FORMATS):
        raise ValueError(f"unknown format(s) {sorted(unknown)}; choose from {FORMATS}")
    records = [store.read_story(run_id, sid) for sid in store.story_ids(run_id)]
    rendered, pdfs = [], []
    for record in records:
        if record.status != "complete":
            continue
        folder = store.story_dir(run_id, record.story_id)
        if "html" in formats:
            write_book_html(record, folder, self_contained=self_contained)
        if "pdf" in formats:
            pdfs.append(write_book_pdf(record, folder, settings))
        rendered.append(record.story_id)
        logger.info("rendered %s/%s", run_id, record.story_id)
    run_dir = store.run_dir(run_id)
    (run_dir / GALLERY_HTML).write_text(render_gallery(run_id, run_dir, records), encoding="utf-8")
    failed = [r.story_id for r in records if r.status == "failed"]
    return RunReport(run_id=run_id, rendered=rendered, failed=failed, pdfs=pdfs)
