"""Read the released StoryStream layout, validate each line, and cut stories into fixed-length chunks.

The StoryStream release is jsonl files whose lines are ``{"id", "images", "captions", "orders"}`` (30
keyframes per story, image paths relative to an image folder). As the release's ``chunk_data.py``, each story is cut
into consecutive non-overlapping chunks of ``chunk_length`` (10) and a partial tail is dropped. Anything wrong (bad
JSON, a missing key, images and captions of different lengths, a story shorter than one chunk, a missing or undecodable
image, an image path that leads outside the image folder) is recorded in an :class:`IngestReport` and skipped: the
run never stops on bad data, and nothing is dropped without a line in the report. Image paths are resolved, symlinks
included, before anything is read; absolute ones are read only inside roots the caller allows.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import Field, ValidationError

from seed_story.config import StrictModel
from seed_story.storage.paths import OutsideRoots, inside_local

ProblemKind = Literal[
    "invalid_json", "invalid_record", "length_mismatch", "too_short", "missing_image", "corrupt_image", "image_outside"
]
# A StoryStream keyframe is ~100 KB: a file this big is not one, and is refused before it is read.
MAX_IMAGE_BYTES = 64 << 20


class StoryLine(StrictModel):
    """One line of a released jsonl file (``orders`` is absent in already chunked files)."""

    id: int | str
    images: list[str] = Field(min_length=1)
    captions: list[str] = Field(min_length=1)
    orders: list[int] | None = None


class StoryChunk(StrictModel):
    """``chunk_length`` consecutive keyframes of one story, with the encoded image files' bytes."""

    chunk_id: str
    story_id: str
    chunk_index: int = Field(ge=0)
    source: str = Field(description="'<jsonl file>:<line number>' the chunk came from")
    captions: list[str]
    image_names: list[str]
    images: list[bytes] = Field(repr=False)


class IngestProblem(StrictModel):
    """One skipped line, story or chunk, and why."""

    kind: ProblemKind
    source: str
    story_id: str | None = None
    chunk_index: int | None = None
    detail: str = ""


class IngestReport(StrictModel):
    """What an ingestion read, kept and skipped. ``model_dump()`` is JSON-ready."""

    model_config = StrictModel.model_config | {"frozen": False}

    files: int = 0
    lines: int = 0
    stories: int = 0
    chunks_written: int = 0
    tail_images_dropped: int = Field(default=0, description="images in partial tails, dropped as the reference")
    shards: list[str] = Field(default_factory=list)
    problems: list[IngestProblem] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of problems of each kind."""
        return dict(Counter(p.kind for p in self.problems))


def chunk_ranges(num_images: int, chunk_length: int) -> list[range]:
    """Index ranges of the complete chunks of a story; the partial tail is dropped (the release's chunk_data.py)."""
    return [range(s, s + chunk_length) for s in range(0, num_images - chunk_length + 1, chunk_length)]


def read_image_bytes(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The file's bytes, after checking that they decode to a picture; raises ``OSError`` otherwise.

    The size and the header are checked first, so a large file or a non-picture is refused without reading it.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise OSError(f"{path.name} is {size} bytes, over the {max_bytes} byte limit")
    try:
        Image.open(path).close()  # reads the header only
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise OSError(f"cannot decode {path.name}: {err}") from err
    with path.open("rb") as f:
        data = f.read(max_bytes)  # bounded even if the file grew since stat
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a full decode: ``verify()`` alone misses truncated files
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise OSError(f"cannot decode {path.name}: {err}") from err
    return data


def parse_line(raw: bytes, source: str, report: IngestReport) -> StoryLine | None:
    """Validate one jsonl line; record and return ``None`` when it is unusable."""
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        report.problems.append(IngestProblem(kind="invalid_json", source=source, detail=str(err)))
        return None
    story_id = str(payload.get("id")) if isinstance(payload, dict) and "id" in payload else None
    try:
        line = StoryLine.model_validate(payload)
    except ValidationError as err:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:3])
        report.problems.append(IngestProblem(kind="invalid_record", source=source, story_id=story_id, detail=detail))
        return None
    if len(line.images) != len(line.captions):
        detail = f"{len(line.images)} images, {len(line.captions)} captions"
        report.problems.append(IngestProblem(kind="length_mismatch", source=source, story_id=story_id, detail=detail))
        return None
    return line


def load_release_image(name: str, image_dir: Path, roots: Sequence[str | Path] = ()) -> bytes | tuple[ProblemKind, str]:
    """The bytes of the image a line names, or why it is skipped; its path is checked before anything is read."""
    try:
        path = inside_local(name, image_dir, roots)
    except OutsideRoots as err:
        return "image_outside", str(err)
    if not path.is_file():
        return "missing_image", name
    try:
        return read_image_bytes(path)
    except OSError as err:
        return "corrupt_image", str(err)


def story_chunks(
    line: StoryLine,
    source: str,
    image_dir: Path,
    chunk_length: int,
    report: IngestReport,
    roots: Sequence[str | Path] = (),
) -> Iterator[StoryChunk]:
    """The complete chunks of one story whose images all load; the others are recorded in ``report``.
    Image paths must lead inside ``image_dir`` or one of ``roots``."""
    story_id = str(line.id)
    ranges = chunk_ranges(len(line.images), chunk_length)
    if not ranges:
        detail = f"{len(line.images)} images < chunk length {chunk_length}"
        report.problems.append(IngestProblem(kind="too_short", source=source, story_id=story_id, detail=detail))
        return
    report.tail_images_dropped += len(line.images) - len(ranges) * chunk_length
    for index, span in enumerate(ranges):
        images: list[bytes] = []
        for name in (line.images[i] for i in span):
            loaded = load_release_image(name, image_dir, roots)
            if isinstance(loaded, bytes):
                images.append(loaded)
                continue
            kind, detail = loaded
            report.problems.append(
                IngestProblem(kind=kind, source=source, story_id=story_id, chunk_index=index, detail=detail)
            )
            break
        else:
            yield StoryChunk(
                chunk_id=f"{story_id}-{index}",
                story_id=story_id,
                chunk_index=index,
                source=source,
                captions=[line.captions[i] for i in span],
                image_names=[line.images[i] for i in span],
                images=images,
            )


def read_storystream(
    jsonl_files: Iterable[str | Path],
    image_dir: str | Path,
    report: IngestReport,
    *,
    chunk_length: int = 10,
    on_line: Callable[[], None] | None = None,
    allowed_roots: Sequence[str | Path] = (),
) -> Iterator[StoryChunk]:
    """Every good chunk of every story in ``jsonl_files`` (in file then line order); problems go to ``report``.

    ``on_line()`` is called once per line read, blank ones included. An image path must lead inside
    ``image_dir`` or one of ``allowed_roots`` (symlinks followed); others are skipped as ``image_outside``.

    Example::

        report = IngestReport()
        for chunk in read_storystream(["train.jsonl"], "images/", report):
            chunk.captions[0], len(chunk.images)  # (str, 10)
    """
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be at least 1 (1: image-caption pairs), got {chunk_length}")
    image_dir = Path(image_dir)
    for file in map(Path, jsonl_files):
        report.files += 1
        with file.open("rb") as lines:
            for number, raw in enumerate(lines, start=1):
                if on_line is not None:
                    on_line()
                if not raw.strip():
                    continue  # blank lines carry nothing, as in the reference's parser
                report.lines += 1
                source = f"{file.name}:{number}"
                line = parse_line(raw, source, report)
                if line is not None:
                    report.stories += 1
                    yield from story_chunks(line, source, image_dir, chunk_length, report, allowed_roots)
