"""Typed records of a stored story, as the pipeline writes them and the renderer reads them.

On-disk layout of one run (see ``templates/README.md``)::

    runs/{run_id}/
        index.html                  # written by the renderer: the gallery
        {story_id}/
            story.json              # a StoryRecord
            opening.png, step_01.png, ...
            book.html, book.pdf     # written by the renderer
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# File and folder names a record may point at: one plain name, never a path, so a record can only ever
# refer to files inside its own story folder (the first line of defence; the PDF URL fetcher is the second).
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def check_safe_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a single plain file/folder name, else raise ``ValueError``.

    Example::

        >>> check_safe_name("step_01.png")
        'step_01.png'
    """
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"{what} must be a plain name of letters, digits, '_', '-', '.' (got {name!r})")
    return name


def _check_image(name: str) -> str:
    check_safe_name(name, "image file")
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise ValueError(f"image file must end with one of {IMAGE_SUFFIXES} (got {name!r})")
    return name


class StoryStep(BaseModel):
    """One step of a story: its text and the picture drawn for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=1)
    text: str
    image: str

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return _check_image(v)


class StoryRecord(BaseModel):
    """A stored story (``story.json``). Text fields are untrusted user/model text and are escaped on output.

    Example::

        >>> StoryRecord(story_id="s1", title="George", author="Ann", opening_text="Once...",
        ...             opening_image="opening.png").status
        'complete'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    story_id: str
    title: str
    author: str = ""
    style: str = ""
    status: Literal["complete", "failed"] = "complete"
    failure_reason: str | None = None
    opening_text: str = ""
    opening_image: str | None = None
    steps: list[StoryStep] = Field(default_factory=list)

    @field_validator("story_id")
    @classmethod
    def _story_id(cls, v: str) -> str:
        return check_safe_name(v, "story_id")

    @field_validator("opening_image")
    @classmethod
    def _opening_image(cls, v: str | None) -> str | None:
        return None if v is None else _check_image(v)

    @model_validator(mode="after")
    def _consistent(self) -> StoryRecord:
        if self.status == "failed" and not self.failure_reason:
            raise ValueError("a failed story needs a failure_reason")
        if self.status == "complete" and self.opening_image is None:
            raise ValueError("a complete story needs an opening_image")
        indices = [s.index for s in self.steps]
        if indices != list(range(1, len(indices) + 1)):
            raise ValueError(f"steps must be numbered 1..n in order (got {indices})")
        return self

    def image_files(self) -> list[str]:
        """Every image the story refers to, opening image first."""
        return ([self.opening_image] if self.opening_image else []) + [s.image for s in self.steps]
