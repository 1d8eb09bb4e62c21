"""The Jinja2 environment shared by every renderer: autoescaped, strict, templates shipped in the package."""

from __future__ import annotations

import base64
import mimetypes
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from PIL import Image

from seed_story.provenance import Provenance
from seed_story.runstore.names import text_direction
from seed_story.runstore.records import StoryRecord


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """A Jinja2 environment that escapes every ``{{ }}`` (whatever the file suffix) and fails on typos.

    Example::

        >>> environment().from_string("{{ x }}").render(x="<b>")
        '&lt;b&gt;'
    """
    return jinja2.Environment(
        # Package data, so a plain (non-editable) install renders books too.
        loader=jinja2.PackageLoader("seed_story", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


# The date every book states (PDF metadata, EPUB dcterms:modified): a rerender writes the same bytes.
STATED_DATE = datetime(2000, 1, 1, tzinfo=UTC)


def image_size(path: Path) -> tuple[int, int]:
    """Pixel width and height of an image file."""
    with Image.open(path) as im:
        return im.size


def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI, for self-contained books."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def book_provenance(record: StoryRecord) -> Provenance:
    """What a book of ``record`` states about its origin (``seed_story.provenance``)."""
    return Provenance(model_version=record.model_version or None, run_id=record.run_id or None,
                      story_id=record.story_id)  # fmt: skip


def book_context(record: StoryRecord) -> dict[str, Any]:
    """What every book template needs besides its pages: text direction and the provenance it states."""
    return {"story": record, "direction": text_direction(record.language), "provenance": book_provenance(record)}
