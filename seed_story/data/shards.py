"""Parquet shards of StoryStream chunks: the schema, an atomic writer behind a tiny store interface, a reader.

Schema (one row per chunk; ``SHARD_SCHEMA``):

=============  ==================  =========================================================
column         type                meaning
=============  ==================  =========================================================
chunk_id       string              ``"<story_id>-<chunk_index>"``, unique in a dataset
story_id       string              the source story's ``id``
chunk_index    int32               position of the chunk in its story (0, 1, 2 for 30 frames)
source         string              ``"<jsonl file>:<line number>"``
captions       list<string>        the chunk's captions, in story order
image_names    list<string>        the images' paths relative to the release's image folder
images         list<binary>        the image files' bytes as released (JPEG), checked to decode
=============  ==================  =========================================================

Shards are named ``shard-00000.parquet`` ..., hold at most ``shard_size`` chunks each, in row groups of
``row_group_size`` chunks (the unit the streaming dataset hands to data-parallel ranks and workers).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from seed_story.data.storystream import StoryChunk

SHARD_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("story_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("source", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("image_names", pa.list_(pa.string())),
        ("images", pa.list_(pa.binary())),
    ]
)
SHARD_SUFFIX = ".parquet"


class ShardStore(Protocol):
    """Where shards live: a local folder now, an object store later."""

    def put(self, name: str, data: bytes) -> None: ...

    def names(self) -> list[str]: ...

    def open(self, name: str) -> BinaryIO: ...


class ShardFolder:
    """A folder; ``put`` writes a temporary name then renames, so a reader never sees half a shard."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"ShardFolder({str(self.directory)!r})"

    def put(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.directory / name)
        finally:
            tmp.unlink(missing_ok=True)

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_file() and p.suffix == SHARD_SUFFIX)

    def open(self, name: str) -> BinaryIO:
        return (self.directory / name).open("rb")


class ShardUnion:
    """Read-only: the shards of several folders and single shard files, read as one store (a data mix).

    Names are ``"<source index>/<shard name>"`` in source order, so adding a source never renames another's.

    Example::

        store = ShardUnion(["data/world/shards", "data/world/caption_shards/shard-00000.parquet"])
    """

    def __init__(self, sources: Iterable[str | Path]) -> None:
        self.sources = [Path(s) for s in sources]
        if not self.sources:
            raise ValueError("a shard union needs at least one folder or shard file")

    def __repr__(self) -> str:
        return f"ShardUnion({[str(s) for s in self.sources]!r})"

    def put(self, name: str, data: bytes) -> None:
        raise TypeError("a shard union is read-only: write shards to one of its folders")

    def _files(self, source: Path) -> list[Path]:
        if source.is_file():
            return [source]
        if source.is_dir():
            return [source / n for n in ShardFolder(source).names()]
        raise FileNotFoundError(f"no shard folder or file at {source}")

    def names(self) -> list[str]:
        return [f"{i}/{f.name}" for i, source in enumerate(self.sources) for f in self._files(source)]

    def open(self, name: str) -> BinaryIO:
        index, _, shard = name.partition("/")
        source = self.sources[int(index)]
        return (source if source.is_file() else source / shard).open("rb")


def as_store(store: ShardStore | str | Path | list[str]) -> ShardStore:
    """A store for a folder, a list of folders and shard files (a :class:`ShardUnion`), or a store itself."""
    if isinstance(store, list):
        return ShardUnion(store)
    return ShardFolder(store) if isinstance(store, str | Path) else store


def chunks_to_table(chunks: list[StoryChunk]) -> pa.Table:
    columns = {name: [getattr(c, name) for c in chunks] for name in SHARD_SCHEMA.names}
    return pa.Table.from_pydict(columns, schema=SHARD_SCHEMA)


def row_to_chunk(row: dict) -> StoryChunk:
    return StoryChunk.model_validate(row)


def write_shards(
    chunks: Iterable[StoryChunk],
    store: ShardStore | str | Path,
    *,
    shard_size: int = 1000,
    row_group_size: int = 32,
) -> list[str]:
    """Write ``chunks`` as Parquet shards of ``shard_size`` rows; returns the shard names in order.

    Example::

        names = write_shards(read_storystream(files, images, report), "shards/", shard_size=500)
    """
    if shard_size < 1 or row_group_size < 1:
        raise ValueError("shard_size and row_group_size must be positive")
    store = as_store(store)
    names: list[str] = []
    pending: list[StoryChunk] = []

    def flush() -> None:
        buffer = io.BytesIO()
        pq.write_table(chunks_to_table(pending), buffer, row_group_size=row_group_size, compression="zstd")
        name = f"shard-{len(names):05d}{SHARD_SUFFIX}"
        store.put(name, buffer.getvalue())
        names.append(name)
        pending.clear()

    for chunk in chunks:
        pending.append(chunk)
        if len(pending) == shard_size:
            flush()
    if pending:
        flush()
    return names


def row_groups(store: ShardStore | str | Path) -> list[tuple[str, int, int]]:
    """``(shard name, row group index, rows)`` of every row group in the store, in name order."""
    store = as_store(store)
    out = []
    for name in store.names():
        with store.open(name) as handle:
            meta = pq.ParquetFile(handle).metadata
            out.extend((name, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups))
    return out


def read_row_group(store: ShardStore | str | Path, name: str, index: int) -> list[StoryChunk]:
    """The chunks of one row group of one shard."""
    store = as_store(store)
    with store.open(name) as handle:
        table = pq.ParquetFile(handle).read_row_group(index)
    return [row_to_chunk(row) for row in table.to_pylist()]


def read_chunks(store: ShardStore | str | Path) -> Iterator[StoryChunk]:
    """Every chunk in the store, shard by shard, in written order.

    Example::

        for chunk in read_chunks("shards/"):
            chunk.chunk_id, chunk.captions
    """
    for name, index, _ in row_groups(store):
        yield from read_row_group(store, name, index)
