"""Storybooks: stored stories to an HTML book, a print PDF, and a gallery of each run.

Example::

    from seed_story.render import LocalStore, PrintSettings, render_run
    render_run(LocalStore("store"), "2026-11-26", settings=PrintSettings(page_size="a4"))
"""

from seed_story.render.fetcher import BookFetcher, OutsideBookError
from seed_story.render.gallery import render_gallery
from seed_story.render.html import render_book_html, write_book_html
from seed_story.render.pdf import PageSize, PdfReport, PrintSettings, write_book_pdf
from seed_story.render.records import StoryRecord, StoryStep
from seed_story.render.run import RunReport, render_run
from seed_story.render.store import LocalStore, StoryStore

__all__ = [
    "BookFetcher",
    "LocalStore",
    "OutsideBookError",
    "PageSize",
    "PdfReport",
    "PrintSettings",
    "RunReport",
    "StoryRecord",
    "StoryStep",
    "StoryStore",
    "render_book_html",
    "render_gallery",
    "render_run",
    "write_book_html",
    "write_book_pdf",
]
