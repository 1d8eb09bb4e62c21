"""The HTML storybook: cover, one spread per step, end page; works offline from a folder or a bucket."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from seed_story.render.templating import book_context, data_uri, environment, image_size
from seed_story.render.upscale import is_flat_colour
from seed_story.runstore.keys import BOOK_HTML
from seed_story.runstore.records import StoryRecord
from seed_story.storage import atomic_file

PIXELATED_BELOW = 512  # px: a screen shows such art enlarged


def render_book_html(record: StoryRecord, story_dir: Path, *, self_contained: bool = False) -> str:
    """The book as one HTML string. Images are relative links, or inlined ``data:`` URIs with ``self_contained``.

    Example::

        record = StoryStore(open_store("store")).read_story("run1", "story1")
        html = render_book_html(record, Path("store/runs/run1/story1"), self_contained=True)
    """
    story_dir = Path(story_dir)

    def src(name: str) -> str:
        return data_uri(story_dir / name) if self_contained else name

    steps = [{"text": s.text, "src": src(s.image), **_picture(story_dir / s.image)} for s in record.steps]
    opening = record.opening_image
    return (
        environment()
        .get_template("book.html.j2")
        .render(
            **book_context(record),
            steps=steps,
            opening_src=src(opening) if opening else None,
            opening_size=image_size(story_dir / opening) if opening else (0, 0),
        )
    )


def _picture(path: Path) -> dict[str, object]:
    """A step picture's size, and whether it is small flat-colour art to show with crisp pixels
    (``image-rendering: pixelated``) rather than blurred."""
    with Image.open(path) as im:
        return {"size": im.size, "pixelated": min(im.size) < PIXELATED_BELOW and is_flat_colour(im)}


def write_book_html(record: StoryRecord, story_dir: Path, *, self_contained: bool = False) -> Path:
    """Render and write ``book.html`` next to the story's images (all at once: temp file + rename); returns its path."""
    out = Path(story_dir) / BOOK_HTML
    html = render_book_html(record, story_dir, self_contained=self_contained)
    with atomic_file(out) as f:
        f.write(html.encode("utf-8"))
    return out
