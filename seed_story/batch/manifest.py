"""Prompt manifests: JSONL, CSV or Parquet rows validated one by one.

A bad row is reported with its line number and reason and skipped, so one typo never costs a night's batch;
duplicate story ids are an error before any work starts, because two rows would fight over one story folder, and
so is a manifest without a single valid row. An image path is a bad row unless it leads (symlinks followed) inside
the manifest's folder or an allowed root: a row never makes a worker read a file it was not meant to.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pyarrow.parquet as pq
from pydantic import Field, ValidationError

from seed_story.config import StrictModel
from seed_story.generation.settings import InputLimits
from seed_story.runstore.records import ManifestProblem, ManifestRow
from seed_story.storage.paths import OutsideRoots, inside_local, inside_s3

ManifestFormat = Literal["jsonl", "csv", "parquet"]
_SUFFIXES: dict[str, ManifestFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
# Columns that hold JSON in CSV cells (a list of texts, a sampling object).
_JSON_COLUMNS = ("texts", "sampling")


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (unreadable, unknown format, duplicate story ids, no valid row)."""


class ManifestEntry(StrictModel):
    line: int = Field(description="1-based line (JSONL/CSV) or row (Parquet) number")
    row: ManifestRow
    image_uri: str = Field(description="the row's image resolved against the manifest's folder, checked to lie inside")


class Manifest(StrictModel):
    """The valid rows of a manifest and the reasons the others were skipped."""

    source: str
    format: ManifestFormat
    folder: str = Field(description="where relative image paths are resolved: a local folder or an s3:// prefix")
    entries: list[ManifestEntry]
    problems: list[ManifestProblem] = Field(default_factory=list)

    @property
    def rows(self) -> list[ManifestRow]:
        return [e.row for e in self.entries]


def manifest_format(name: str) -> ManifestFormat:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ManifestError(f"cannot tell the manifest format of {name!r}: use one of {sorted(_SUFFIXES)}")
    return _SUFFIXES[suffix]


def resolve_image_uri(image: str, folder: str, roots: Sequence[str] = ()) -> str:
    """Where a row's image is read from: a local path resolved with its symlinks, or an ``s3://`` URI.

    A relative path is relative to ``folder`` (a local folder or an ``s3://`` prefix); the result must lie inside
    ``folder`` or one of ``roots`` (local folders or ``s3://`` prefixes), else :class:`OutsideRoots` says why.
    So absolute paths, ``file://`` and ``s3://`` URIs elsewhere work only where a root allows them.
    """
    if folder.startswith("s3://") and not image.startswith(("/", "file://", "s3://")):
        image = folder.rstrip("/") + "/" + str(PurePosixPath(image))
    if image.startswith("s3://"):
        return inside_s3(image, [folder, *roots])
    local = [r for r in (folder, *roots) if not r.startswith("s3://")]
    if not local:
        raise OutsideRoots(f"{image} is a local path beside an S3 manifest; it needs an allowed root")
    return str(inside_local(image.removeprefix("file://"), local[0], local[1:]))


def parse_manifest(
    data: bytes,
    source: str,
    folder: str,
    fmt: ManifestFormat | None = None,
    image_roots: Sequence[str] = (),
    limits: InputLimits | None = None,
) -> Manifest:
    """Validate every row of a manifest's bytes; ``image_roots`` are the folders or ``s3://`` prefixes besides
    ``folder`` that images may come from (see :func:`resolve_image_uri`). Raises :class:`ManifestError` for
    duplicate story ids and for a manifest without a valid row. A row over ``limits`` (default
    :class:`InputLimits`: text length, steps) is a bad row.

    Example::

        >>> m = parse_manifest(b'{"story_id": "a", "image": "a.png", "text": "Hi."}\\n', "m.jsonl", ".")
        >>> m.rows[0].steps, m.problems
        (25, [])
    """
    fmt = fmt or manifest_format(source)
    limits = limits or InputLimits()
    raw = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt](data)
    entries, problems = [], []
    for line, fields in raw:
        if isinstance(fields, str):
            problems.append(ManifestProblem(line=line, reason=fields))
            continue
        try:
            row = ManifestRow.model_validate(fields)
        except ValidationError as err:
            sid = fields.get("story_id")
            problems.append(
                ManifestProblem(line=line, story_id=sid if isinstance(sid, str) else None, reason=_why(err))
            )
            continue
        try:
            limits.check_texts(row.text, row.texts, row.num_steps)
        except ValueError as err:
            problems.append(ManifestProblem(line=line, story_id=row.story_id, reason=str(err)))
            continue
        try:
            entries.append(
                ManifestEntry(line=line, row=row, image_uri=resolve_image_uri(row.image, folder, image_roots))
            )
        except OutsideRoots as err:
            problems.append(ManifestProblem(line=line, story_id=row.story_id, reason=f"image: {err}"))
    _check_unique(raw)
    _check_not_empty(source, entries, problems)
    return Manifest(source=source, format=fmt, folder=folder, entries=entries, problems=problems)


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate a local manifest file (see :func:`parse_manifest`)."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"manifest is a directory, not a file: {path}")
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    return parse_manifest(path.read_bytes(), str(path), str(path.resolve().parent), manifest_format(path.name))


def _why(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "row"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def _check_not_empty(source: str, entries: list[ManifestEntry], problems: list[ManifestProblem]) -> None:
    if entries:
        return
    if not problems:
        raise ManifestError(f"manifest {source} has no rows")
    first = problems[0]
    raise ManifestError(
        f"no valid row in manifest {source}: {len(problems)} bad rows (line {first.line}: {first.reason})"
    )


def _check_unique(raw: list[tuple[int, dict[str, Any] | str]]) -> None:
    lines: dict[str, list[int]] = {}
    for line, fields in raw:
        if isinstance(fields, dict) and isinstance(fields.get("story_id"), str):
            lines.setdefault(fields["story_id"], []).append(line)
    dups = {sid: ls for sid, ls in lines.items() if len(ls) > 1}
    if dups:
        listed = ", ".join(f"{sid!r} (lines {', '.join(map(str, ls))})" for sid, ls in sorted(dups.items()))
        raise ManifestError(f"duplicate story ids: {listed}; every row needs its own story_id")


def _jsonl_rows(data: bytes) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            rows.append((n, f"invalid JSON: {err.msg} at column {err.colno}"))
            continue
        rows.append(
            (n, value if isinstance(value, dict) else f"a row must be a JSON object, got {type(value).__name__}")
        )
    return rows


def _csv_rows(data: bytes) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig", errors="replace"), newline=""))
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for fields in reader:
        line = reader.line_num
        if None in fields:
            rows.append((line, f"more cells than the {len(reader.fieldnames or [])} header columns"))
            continue
        # Empty cells mean "use the default", as a spreadsheet user expects.
        cleaned: dict[str, Any] = {k: v for k, v in fields.items() if v not in ("", None)}
        try:
            for key in _JSON_COLUMNS:
                if key in cleaned:
                    cleaned[key] = json.loads(cleaned[key])
        except json.JSONDecodeError as err:
            rows.append((line, f"{key}: the cell must hold JSON ({err.msg})"))
            continue
        rows.append((line, cleaned))
    return rows


def _parquet_rows(data: bytes) -> list[tuple[int, dict[str, Any] | str]]:
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as err:  # pyarrow raises several types for a broken file
        raise ManifestError(f"cannot read the Parquet manifest: {err}") from err
    return [(i, {k: v for k, v in r.items() if v is not None}) for i, r in enumerate(table.to_pylist(), start=1)]
