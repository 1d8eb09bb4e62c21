"""``seed-story generate`` through the real CLI app (in-process, Prefect's local API); the demo is in test_cli."""

from __future__ import annotations

from typer.testing import CliRunner

from seed_story.cli.main import app
from tests.nightly_support import good_rows, write_jsonl


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
