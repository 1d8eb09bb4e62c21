"""Where a run's objects live in the store (the layout the README documents).

::

    runs/{run_id}/manifests/{file name}          copy of each manifest (or shard) as given
    runs/{run_id}/summary.json                   RunSummary of the latest attempt
    runs/{run_id}/parts/{part}.summary.json      RunSummary of one shard of a scaled-out run
    runs/{run_id}/index.html                     gallery (renderer)
    runs/{run_id}/storystream.jsonl              finished stories in StoryStream format (export)
    runs/{run_id}/{story_id}/
        story.json                               StoryRecord: written last, marks the story finished
        sequence.parquet                         the story sequence, one row per step (SEQUENCE_SCHEMA)
        opening.png, step_01.png, ...            pictures
        book.html, book.pdf                      storybooks (renderer)
        features/opening.safetensors, features/step_01.safetensors    ViT-space features
        work/request.json                        StoryPlan: the validated row and the settings it runs with
        work/step_01.json                        StepRecord: a written step (after its features)
        work/step_01.drawn.json                  DrawRecord: its picture is stored (after the PNG)
        work/written.json                        WritingDone: the MLLM has finished this story
"""

from __future__ import annotations

from dataclasses import dataclass

from seed_story.render.records import check_safe_name

STORY_JSON = "story.json"
SEQUENCE = "sequence.parquet"


@dataclass(frozen=True)
class StoryKeys:
    """Keys of one story's objects."""

    run_id: str
    story_id: str

    def __post_init__(self) -> None:
        check_safe_name(self.run_id, "run_id")
        check_safe_name(self.story_id, "story_id")

    @property
    def prefix(self) -> str:
        return f"runs/{self.run_id}/{self.story_id}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    @property
    def story(self) -> str:
        return self.key(STORY_JSON)

    @property
    def sequence(self) -> str:
        return self.key(SEQUENCE)

    @property
    def request(self) -> str:
        return self.key("work/request.json")

    @property
    def written(self) -> str:
        return self.key("work/written.json")

    @property
    def opening_image(self) -> str:
        return self.key(opening_image_name())

    @property
    def opening_features(self) -> str:
        return self.key("features/opening.safetensors")

    def step(self, index: int) -> str:
        return self.key(f"work/step_{index:02d}.json")

    def drawn(self, index: int) -> str:
        return self.key(f"work/step_{index:02d}.drawn.json")

    def step_features(self, index: int) -> str:
        return self.key(f"features/step_{index:02d}.safetensors")

    def step_image(self, index: int) -> str:
        return self.key(step_image_name(index))


def opening_image_name() -> str:
    return "opening.png"


def step_image_name(index: int) -> str:
    return f"step_{index:02d}.png"


def run_prefix(run_id: str) -> str:
    return f"runs/{check_safe_name(run_id, 'run_id')}"


def summary_key(run_id: str, part: str | None = None) -> str:
    """The run's summary, or one part's (a shard of a scaled-out run) under ``parts/``."""
    if part is None:
        return f"{run_prefix(run_id)}/summary.json"
    return f"{run_prefix(run_id)}/parts/{check_safe_name(part, 'part')}.summary.json"


def manifest_copy_key(run_id: str, name: str) -> str:
    return f"{run_prefix(run_id)}/manifests/{check_safe_name(name, 'manifest file name')}"


def export_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/storystream.jsonl"
