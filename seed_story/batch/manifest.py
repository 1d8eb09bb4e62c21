"""Prompt manifests: JSONL, CSV or Parquet rows validated one by one.

A bad row is reported with its line number and reason and skipped, so one typo never costs a night's batch;
duplicate story ids are an error before any work starts, because two rows would fight over one story folder.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pyarrow.parquet as pq
from pydantic import Field, ValidationError

from seed_story.config import StrictModel
from seed_story.runstore.records import ManifestProblem, ManifestRow

ManifestFormat = Literal["jsonl", "csv", "parquet"]
_SUFFIXES: dict[str, ManifestFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
# Columns that hold JSON in CSV cells (a list of texts, a sampling object).
_JSON_COLUMNS = ("texts", "sampling")


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (unreadable, unknown format, duplicate story ids)."""


class ManifestEntry(StrictModel):
    line: int = Field(description="1-based line (JSONL/CSV) or row (Parquet) number")
    row: ManifestRow


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


def parse_manifest(data: bytes, source: str, folder: str, fmt: ManifestFormat | None = None) -> Manifest:
    """Validate every row of a manifest's bytes. Raises :class:`ManifestError` for duplicate story ids.

    Example::

        >>> m = parse_manifest(b'{"story_id": "a", "image": "a.png", "text": "Hi."}\\n', "m.jsonl", ".")
        >>> m.rows[0].steps, m.problems
        (25, [])
    """
    fmt = fmt or manifest_format(source)
    raw = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt](data)
    entries, problems = [], []
    for line, fields in raw:
        if isinstance(fields, str):
            problems.append(ManifestProblem(line=line, reason=fields))
            continue
        try:
            entries.append(ManifestEntry(line=line, row=ManifestRow.model_validate(fields)))
        except ValidationError as err:
            sid = fields.get("story_id")
            problems.append(
                ManifestProblem(line=line, story_id=sid if isinstance(sid, str) else None, reason=_why(err))
            )
    _check_unique(raw)
    return Manifest(source=source, format=fmt, folder=folder, entries=entries, problems=problems)


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate a local manifest file (see :func:`parse_manifest`)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    return parse_manifest(path.read_bytes(), str(path), str(path.resolve().parent), manifest_format(path.name))


def _why(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "row"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


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
