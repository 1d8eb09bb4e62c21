"""One call from the released StoryStream layout to Parquet shards, with a report of what was skipped.

The report is also written next to the shards as ``ingest-report.json``.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from seed_story.data.shards import SHARD_SUFFIX, ShardStore, as_store, write_shards
from seed_story.data.storystream import IngestReport, StoryChunk, read_storystream
from seed_story.storage import ObjectStore, join_key, publish

REPORT_NAME = "ingest-report.json"


def expand_jsonl(patterns: Iterable[str]) -> list[Path]:
    """Files matching any of ``patterns`` (``**`` allowed), sorted and without duplicates."""
    found = {Path(p) for pattern in patterns for p in glob.glob(pattern, recursive=True)}
    return sorted(p for p in found if p.is_file())


def _count_lines(path: Path) -> int:
    """Lines in a file (a last line without a newline counts), read in 1 MiB blocks: cheap beside parsing."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            count, last = count + block.count(b"\n"), block[-1:]
    return count + (last != b"\n")


def ingest_storystream(
    jsonl_files: Iterable[str | Path],
    image_dir: str | Path,
    store: ShardStore | str | Path,
    *,
    chunk_length: int = 10,
    shard_size: int = 1000,
    row_group_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    allowed_roots: Sequence[str | Path] = (),
) -> IngestReport:
    """Validate, chunk and write every story of ``jsonl_files`` as shards into ``store``.

    ``progress(lines done, lines in all)`` is called as the jsonl lines are read. Image paths must lead inside
    ``image_dir`` or one of ``allowed_roots``; the others are skipped and reported (``image_outside``).

    Example::

        report = ingest_storystream(expand_jsonl(["george/*.jsonl"]), "image/george_full", "shards/george")
        report.chunks_written, report.counts()  # e.g. 3000, {"missing_image": 2}
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    store = as_store(store)
    report = IngestReport()
    files = [Path(f) for f in jsonl_files]
    on_line = None
    if progress is not None:
        total, done = sum(_count_lines(f) for f in files), 0

        def on_line() -> None:
            nonlocal done
            done += 1
            progress(done, total)

    chunks = read_storystream(
        files, image_dir, report, chunk_length=chunk_length, on_line=on_line, allowed_roots=allowed_roots
    )

    def counted() -> Iterator[StoryChunk]:
        for chunk in chunks:
            report.chunks_written += 1
            yield chunk

    report.shards = write_shards(counted(), store, shard_size=shard_size, row_group_size=row_group_size)
    store.put(REPORT_NAME, report.model_dump_json(indent=2).encode())
    return report


def publish_shards(store: ObjectStore, folder: Path, report: IngestReport, prefix: str) -> tuple[list[str], int]:
    """Upload an ingest's shards from ``folder`` under ``prefix`` (the report last, so readers never see a
    half-published dataset) unless they are there already, then delete shards of an earlier, larger ingest that
    this one did not rewrite. Returns the shards' keys and how many stale shards went."""
    keys = publish(store, folder, [*report.shards, REPORT_NAME], prefix)
    stale = [k for k in store.list(prefix + "/") if k.endswith(SHARD_SUFFIX) and k not in keys]
    for key in stale:
        store.delete(key)
    return [join_key(prefix, name) for name in report.shards], len(stale)


def report_markdown(report: IngestReport, where: str) -> str:
    """The report's counts as a Prefect markdown artifact."""
    rows = [
        ("jsonl files", report.files),
        ("lines", report.lines),
        ("stories", report.stories),
        ("chunks written", report.chunks_written),
        ("shards", len(report.shards)),
        ("tail images dropped", report.tail_images_dropped),
        *((f"skipped: {kind}", count) for kind, count in sorted(report.counts().items())),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"# StoryStream ingest\n\nShards in `{where}`\n\n| | count |\n|---|---:|\n{table}\n"
