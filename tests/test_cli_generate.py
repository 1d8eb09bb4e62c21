"""``seed-story demo`` and ``seed-story generate`` through the real CLI app (in-process, Prefect's local API)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from seed_story.cli.main import app
from tests.nightly_support import good_rows, write_jsonl


def test_demo_writes_three_books(prefect_api, toy_checkpoint_dir, tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--model", str(toy_checkpoint_dir)])
    assert result.exit_code == 0, result.output
    books = [Path(line.split(": ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("demo-")]
    assert len(books) == 3
    for book in books:
        assert book.is_file() and (book.parent / "book.pdf").read_bytes().startswith(b"%PDF")
        assert len(list(book.parent.glob("step_*.png"))) == 6
    assert (tmp_path / "demo" / "runs" / "demo" / "index.html").is_file()
    # The README's contact sheet of the demo books is drawn from the same run folder.
    sheet = tmp_path / "sheet.png"
    script = Path(__file__).resolve().parents[1] / "bench" / "demo_sheet.py"
    cmd = [sys.executable, str(script), str(tmp_path / "demo" / "runs" / "demo"), "--steps", "4", "--out", str(sheet)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    width, height = Image.open(sheet).size
    assert width > height > 0  # three rows of five pictures


def test_generate_reports_bad_rows_and_failures_with_exit_status_2(prefect_api, toy_checkpoint_dir, tmp_path):
    rows = [*good_rows(tmp_path / "in", count=1), {"story_id": "lost", "image": "none.png", "text": "Hi."}, "{oops"]
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", rows)
    args = ["generate", "-m", str(manifest), "-s", str(tmp_path / "store"), "--model", str(toy_checkpoint_dir),
            "--run-id", "r1", "--draw-steps", "2", "--format", "html", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "failed lost (tokenizer): opening image not found" in result.stdout
    assert "bad row line 3: invalid JSON" in result.stdout
    assert (tmp_path / "store" / "runs" / "r1" / "story-0" / "book.html").is_file()
    # Duplicate ids are a usage error before any work.
    write_jsonl(manifest, [rows[0], rows[0]])
    result = CliRunner().invoke(app, [*args[:-1], "--run-id", "r2"])
    assert result.exit_code == 2 and "duplicate story ids" in result.output
    assert not (tmp_path / "store" / "runs" / "r2").exists()
