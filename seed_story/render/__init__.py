"""Storybooks: stored stories to an HTML book, a print PDF, and a gallery of each run.

Stories are read from any ``seed_story.storage`` object store (a local folder or S3); books are written back
next to them.

Example::

    from seed_story.render import PrintSettings, render_run
    from seed_story.storage import open_store
    render_run(open_store("store"), "2026-11-26", settings=PrintSettings(page_size="a4"))
    render_run(open_store("s3://books/prod"), "2026-11-26")
"""

from seed_story.render.fetcher import BookFetcher, OutsideBookError
from seed_story.render.gallery import render_gallery
from seed_story.render.html import render_book_html, write_book_html
from seed_story.render.pdf import PageSize, PdfReport, PrintSettings, write_book_pdf
from seed_story.render.run import RunReport, render_run, render_story

__all__ = [
    "BookFetcher",
    "OutsideBookError",
    "PageSize",
    "PdfReport",
    "PrintSettings",
    "RunReport",
    "render_book_html",
    "render_gallery",
    "render_run",
    "render_story",
    "write_book_html",
    "write_book_pdf",
]
