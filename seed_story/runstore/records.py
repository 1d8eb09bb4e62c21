"""Typed records of a run: what a story was asked for, what each stage stored, how the run went.

``StoryRecord`` (``story.json``) is what readers use (the renderer, the judge, the export); the others are the
batch stages' work records, each written after the object it vouches for, so its presence means that object is
whole. Text fields are untrusted user or model text and are escaped on output.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from seed_story.config import StrictModel
from seed_story.generation.settings import MAX_STEPS, SamplingSettings, StopReason, check_story_texts
from seed_story.runstore.names import check_image_name, check_language, check_safe_name


def now() -> str:
    """A record's timestamp: UTC, ISO 8601, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ManifestRow(StrictModel):
    """One story to generate, as a manifest row gives it.

    ``image`` is a local path, a ``file://`` or ``s3://`` URI, or a path relative to the manifest's folder.
    ``texts`` given: illustrate those texts (one picture each) instead of writing ``steps`` steps.
    """

    story_id: str
    image: str = Field(min_length=1)
    text: str = Field(min_length=1, description="opening text")
    texts: list[str] | None = None
    steps: int = Field(default=25, ge=1, le=MAX_STEPS)
    seed: int = 0
    sampling: SamplingSettings | None = Field(default=None, description="None: the run's sampling settings")
    title: str | None = None
    author: str = ""
    style: str = ""
    language: str = Field(default="en", description="BCP 47 tag of the story's text: the books' lang and direction")

    @field_validator("story_id")
    @classmethod
    def _story_id(cls, v: str) -> str:
        return check_safe_name(v, "story_id")

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        return check_language(v)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if "://" in v and not v.startswith(("s3://", "file://")):
            raise ValueError(f"image must be a local path, file:// or s3:// URI (got {v!r}); URLs are not fetched")
        return v

    @model_validator(mode="after")
    def _texts(self) -> ManifestRow:
        check_story_texts(self.text, self.texts, self.steps)
        return self

    @property
    def num_steps(self) -> int:
        return len(self.texts) if self.texts is not None else self.steps

    @property
    def book_title(self) -> str:
        return self.title or self.text.split(".")[0][:80]


class ManifestProblem(StrictModel):
    """A manifest row that was skipped, and why."""

    line: int
    story_id: str | None = None
    reason: str


class StoryPlan(StrictModel):
    """What a story runs with: its validated manifest row, where the opening comes from, the model."""

    run_id: str
    story_id: str
    line: int
    row: ManifestRow
    image_uri: str = Field(description="the row's image resolved against the manifest's folder")
    model_version: str
    settings: dict = Field(description="writer + draw settings, as JSON")

    def same_work(self, other: StoryPlan) -> bool:
        """Whether ``other`` asks for the same story (the manifest line may move between nights)."""
        keys = {"row", "image_uri", "model_version", "settings"}
        return self.model_dump(include=keys) == other.model_dump(include=keys)


class StepRecord(StrictModel):
    """A written step; stored after its features, so its presence means the step is safely written."""

    story_id: str
    step: int = Field(ge=1)
    text: str
    token_ids: list[int]
    feature_key: str
    generator_state: str | None = Field(default=None, description="base64 torch generator state after the step")
    prompt_tokens: int
    kv_tokens: int
    write_seconds: float
    attempt: str
    written_at: str = Field(default_factory=now)


class DrawRecord(StrictModel):
    """A step's picture is stored (written after the PNG)."""

    story_id: str
    step: int
    image_key: str
    draw_seconds: float
    attempt: str
    drawn_at: str = Field(default_factory=now)


class WritingDone(StrictModel):
    """The MLLM has finished a story: how many steps and why it stopped."""

    story_id: str
    steps: int
    stop_reason: StopReason
    attempt: str


class StoryFailure(StrictModel):
    story_id: str
    stage: str
    reason: str


class RunSummary(StrictModel):
    """What one attempt at a run did: counts, failures, bad rows and stage timings."""

    run_id: str
    attempt: str
    manifest: str
    model_version: str
    started_at: str
    finished_at: str
    rows: int
    bad_rows: list[ManifestProblem]
    skipped_finished: list[str]
    completed: list[str]
    failed: list[StoryFailure]
    leased_elsewhere: dict[str, str] = Field(
        default_factory=dict, description="stories another live attempt held or took over: story -> that attempt"
    )
    steps_written: int
    steps_resumed: int
    pictures_drawn: int
    seconds: dict[str, float]


class StoredStep(StrictModel):
    """One step of a stored story: its text and the file name of the picture drawn for it."""

    index: int = Field(ge=1)
    text: str
    image: str

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return check_image_name(v)


class StoryRecord(StrictModel):
    """A stored story (``story.json``), written last: its presence marks the story finished or failed.

    Example::

        >>> StoryRecord(story_id="s1", title="George", author="Ann", opening_text="Once...",
        ...             opening_image="opening.png").status
        'complete'
    """

    story_id: str
    title: str
    author: str = ""
    style: str = ""
    status: Literal["complete", "failed"] = "complete"
    failure_reason: str | None = None
    opening_text: str = ""
    opening_image: str | None = None
    steps: list[StoredStep] = Field(default_factory=list)
    language: str = Field(default="en", description="BCP 47 tag of the text (the books' lang and direction)")
    model_version: str = Field(default="", description="the model that wrote and drew the story (provenance)")
    run_id: str = Field(default="", description="the run the story belongs to (provenance)")

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        return check_language(v)

    @field_validator("story_id")
    @classmethod
    def _story_id(cls, v: str) -> str:
        return check_safe_name(v, "story_id")

    @field_validator("opening_image")
    @classmethod
    def _opening_image(cls, v: str | None) -> str | None:
        return None if v is None else check_image_name(v)

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
