"""Render every story of a run from a store, writing books next to the stories and the gallery in the run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from pydantic import BaseModel

from seed_story.render.epub import write_book_epub
from seed_story.render.gallery import render_gallery
from seed_story.render.html import write_book_html
from seed_story.render.pdf import PdfReport, PrintSettings, write_book_pdf
from seed_story.render.preflight import PreflightReport
from seed_story.runstore import RunKeys, StoryKeys, StoryRecord, StoryStore
from seed_story.runstore.keys import BOOK_EPUB, BOOK_HTML, BOOK_PDF, BOOK_PREFLIGHT
from seed_story.storage import ObjectStore, get_model, publish, staged_folder

logger = logging.getLogger(__name__)
FORMATS = ("html", "pdf", "epub")


class RunReport(BaseModel):
    """What ``render_run`` wrote."""

    run_id: str
    store: str
    rendered: list[str]
    failed: list[str]
    failed_preflight: list[str] = []
    pdfs: list[PdfReport]


def render_story(
    stories: StoryStore,
    run_id: str,
    record: StoryRecord,
    formats: set[str],
    settings: PrintSettings | None = None,
    *,
    self_contained: bool = False,
) -> PdfReport | None:
    """Render one complete story's books into its folder in the store; returns the PDF report if one was made.

    A local store renders in place. A remote one downloads only ``story.json``'s images into a staging folder,
    renders there and uploads the books (each upload is atomic).
    """
    objects, prefix = stories.objects, StoryKeys(run_id, record.story_id).prefix
    written, report = [], None
    with staged_folder(objects, prefix, record.image_files()) as folder:
        if "html" in formats:
            write_book_html(record, folder, self_contained=self_contained)
            written.append(BOOK_HTML)
        if "epub" in formats:
            write_book_epub(record, folder)
            written.append(BOOK_EPUB)
        if "pdf" in formats:
            report = write_book_pdf(record, folder, settings)
            written += [BOOK_PDF] + ([BOOK_PREFLIGHT] if report.preflight is not None else [])
            if report.preflight is not None and not report.preflight.passed:
                logger.warning("%s/%s failed preflight (%s): %s", run_id, record.story_id, report.preflight.profile,
                               "; ".join(report.preflight.problems))  # fmt: skip
        # Print art (upscaled, CMYK-separated) and the output-intent profile are inputs of the PDF only: they stay
        # in the staging folder.
        publish(objects, folder, written, prefix)
    if report is None:
        return None
    staged = objects.local_path(prefix) is None
    return report.model_copy(update={"key": f"{prefix}/{BOOK_PDF}", "path": None if staged else report.path})


def render_run(
    store: StoryStore | ObjectStore,
    run_id: str,
    formats: Iterable[str] = FORMATS,
    settings: PrintSettings | None = None,
    *,
    self_contained: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RunReport:
    """Render all complete stories of ``run_id`` as HTML and/or PDF, then write the run's ``index.html``.

    ``store`` is a ``StoryStore`` or any ``ObjectStore`` (local folder or S3) holding ``runs/{run_id}/``;
    ``progress(done, total)`` is called after each story.

    Example::

        report = render_run(open_store("store"), "2026-11-26", formats=["html", "pdf"])
        report = render_run(open_store("s3://books/prod"), "2026-11-26")
    """
    stories = store if isinstance(store, StoryStore) else StoryStore(store)
    formats = set(formats)
    if unknown := formats - set(FORMATS):
        raise ValueError(f"unknown format(s) {sorted(unknown)}; choose from {FORMATS}")
    records = [stories.read_story(run_id, sid) for sid in stories.story_ids(run_id)]
    rendered, pdfs = [], []
    checks: dict[str, PreflightReport] = {}  # story -> its PDF's preflight: this render's, else the stored one
    for done, record in enumerate(records, start=1):
        if record.status == "complete":
            report = render_story(stories, run_id, record, formats, settings, self_contained=self_contained)
            pdfs += [report] if report else []
            if report is not None and report.preflight is not None:
                checks[record.story_id] = report.preflight
            rendered.append(record.story_id)
            logger.info("rendered %s/%s", run_id, record.story_id)
        if progress is not None:
            progress(done, len(records))
    run_key = RunKeys(run_id).prefix
    # The gallery links only books that exist now, whichever run wrote them: ask the store, not this run.
    existing = {key.removeprefix(run_key + "/") for key in stories.objects.list(run_key + "/")}
    for r in records:  # books rendered before (e.g. this run made only HTML): one read each
        if r.story_id not in checks and f"{r.story_id}/{BOOK_PREFLIGHT}" in existing:
            checks[r.story_id] = _read_preflight(stories, run_id, r.story_id)
    gallery = render_gallery(run_id, records, existing, checks).encode("utf-8")
    stories.objects.put_bytes(RunKeys(run_id).gallery, gallery, content_type="text/html; charset=utf-8")
    failed = [r.story_id for r in records if r.status == "failed"]
    bad = sorted(sid for sid, check in checks.items() if not check.passed)
    return RunReport(run_id=run_id, store=stories.objects.uri, rendered=rendered, failed=failed,
                     failed_preflight=bad, pdfs=pdfs)  # fmt: skip


def _read_preflight(stories: StoryStore, run_id: str, story_id: str) -> PreflightReport:
    return get_model(stories.objects, StoryKeys(run_id, story_id).key(BOOK_PREFLIGHT), PreflightReport)
