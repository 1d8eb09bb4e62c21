"""``seed-story generate`` through the real CLI app (in-process, Prefect's local API); the demo is in test_cli."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from seed_story.cli.main import app
from seed_story.runstore.records import RunSummary
from tests.nightly_support import good_rows, opening_picture, write_jsonl


def test_generate_reports_bad_rows_and_failures_with_exit_status_2(prefect_api, toy_checkpoint_dir, tmp_path):
    def generate(manifest: Path, run_id: str, *extra: str):
        args = ["generate", "-m", str(manifest), "-s", str(tmp_path / "store"), "--model", str(toy_checkpoint_dir),
                "--run-id", run_id, "--draw-steps", "2", "--format", "html", "--no-progress", *extra]  # fmt: skip
        return CliRunner().invoke(app, args)

    shared = {**good_rows(tmp_path / "shared", count=1)[0], "story_id": "shared"}
    shared["image"] = str(tmp_path / "shared" / shared["image"])  # absolute, in an --image-root
    rows = [*good_rows(tmp_path / "in", count=1), {"story_id": "lost", "image": "none.png", "text": "Hi."}, "{oops"]
    opening_picture(0).save(tmp_path / "secret.png")  # a good picture, outside every allowed folder
    (tmp_path / "in" / "link.png").symlink_to(tmp_path / "secret.png")
    outside = {"up": "../secret.png", "abs": "/etc/passwd", "link": "link.png"}
    rows += [{"story_id": sid, "image": image, "text": "Hi."} for sid, image in outside.items()]
    manifest = write_jsonl(tmp_path / "in" / "night.jsonl", [*rows, shared])
    result = generate(manifest, "r1", "--image-root", str(tmp_path / "shared"))
    assert result.exit_code == 2, result.output
    assert "failed lost (tokenizer): opening image not found" in result.stdout
    assert "bad row line 3: invalid JSON" in result.stdout
    summary = RunSummary.model_validate_json((tmp_path / "store" / "runs" / "r1" / "summary.json").read_text())
    assert sorted(summary.completed) == ["shared", "story-0"]
    reasons = {p.story_id: p.reason for p in summary.bad_rows if p.story_id}
    folder = (tmp_path / "in").resolve()
    assert reasons == {
        sid: f"image: {image} leads outside {folder} and the allowed roots" for sid, image in outside.items()
    }
    assert (tmp_path / "store" / "runs" / "r1" / "story-0" / "book.html").is_file()
    # Duplicate ids, no valid row, no row at all or a folder: a usage error before any work.
    for content, error in (([rows[0], rows[0]], "duplicate story ids"), (rows[2:], "no valid row in manifest"),
                           ([], "has no rows"), (None, "is a directory")):  # fmt: skip
        result = generate(tmp_path / "in" if content is None else write_jsonl(manifest, content), "r2")
        assert result.exit_code == 2 and error in " ".join(result.output.replace("│", " ").split()), result.output
    assert not (tmp_path / "store" / "runs" / "r2").exists()
