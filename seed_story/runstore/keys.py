"""Store keys of a run and of its stories (the layout in :mod:`seed_story.runstore`)."""

from __future__ import annotations

from dataclasses import dataclass

from seed_story.runstore.names import check_safe_name

RUNS = "runs"
STORY_JSON = "story.json"
SEQUENCE = "sequence.parquet"
OPENING_IMAGE = "opening.png"
BOOK_HTML = "book.html"
BOOK_PDF = "book.pdf"
BOOK_EPUB = "book.epub"
BOOK_PREFLIGHT = "book.preflight.json"
GALLERY_HTML = "index.html"


def step_image_name(index: int) -> str:
    return f"step_{index:02d}.png"


@dataclass(frozen=True)
class RunKeys:
    """Keys of one run's own objects (not its stories')."""

    run_id: str

    def __post_init__(self) -> None:
        check_safe_name(self.run_id, "run_id")

    @property
    def prefix(self) -> str:
        return f"{RUNS}/{self.run_id}"

    def summary(self, part: str | None = None) -> str:
        """The run's summary, or one part's (a shard of a scaled-out run) under ``parts/``."""
        if part is None:
            return f"{self.prefix}/summary.json"
        return f"{self.prefix}/parts/{check_safe_name(part, 'part')}.summary.json"

    def attempt_summary(self, attempt: str) -> str:
        """Each attempt's own summary (``summary.json`` is the latest one's): concurrent attempts overwrite nothing."""
        return f"{self.prefix}/_attempts/{check_safe_name(attempt, 'attempt')}.summary.json"

    @property
    def model_pin(self) -> str:
        """The registry version a run was pinned to on its first start (``models://`` models only)."""
        return f"{self.prefix}/model.json"

    def progress(self, part: str | None = None) -> str:
        """The run's progress counters (one small record a watcher reads per refresh), or one part's."""
        if part is None:
            return f"{self.prefix}/progress.json"
        return f"{self.prefix}/parts/{check_safe_name(part, 'part')}.progress.json"

    def manifest_copy(self, name: str) -> str:
        return f"{self.prefix}/manifests/{check_safe_name(name, 'manifest file name')}"

    def shard(self, index: int) -> str:
        return f"{self.prefix}/shards/shard-{index:02d}.jsonl"

    @property
    def export(self) -> str:
        return f"{self.prefix}/storystream.jsonl"

    @property
    def gallery(self) -> str:
        return f"{self.prefix}/{GALLERY_HTML}"


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
        return f"{RUNS}/{self.run_id}/{self.story_id}"

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
        return self.key(OPENING_IMAGE)

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


def story_id_of(key: str, run_id: str) -> str | None:
    """The story whose ``story.json`` ``key`` is (``runs/{run_id}/{story_id}/story.json``), else ``None``."""
    prefix = f"{RunKeys(run_id).prefix}/"
    if not key.startswith(prefix):
        return None
    story_id, _, rest = key[len(prefix) :].partition("/")
    return story_id if rest == STORY_JSON else None
