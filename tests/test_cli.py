"""The command line as a user meets it: every ``--help``, one-line errors, and a quiet demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from seed_story.cli.main import app

CLI = [sys.executable, "-m", "seed_story.cli.main"]


def _commands(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_every_help_works():
    paths = _commands(typer.main.get_command(app))
    assert len(paths) > 20  # the walk reached the sub-command groups
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"{' '.join(path)} --help: {result.output}{result.exception!r}"
        assert "Usage:" in result.output


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize(
    "args, message",
    [
        (["render", "--store", "{tmp}/none", "--run", "r1"], "no run 'r1'"),
        (["eval", "--store", "{tmp}/none", "--run", "../up"], "run_id must be a plain name"),
        (["train", "stage2", "--config", "{tmp}/bad.yaml"], "learning_rate"),
        (["presets", "describe", "--preset", "nope"], "unknown preset 'nope'"),
        (["checkpoints", "export", "{tmp}/none", "{tmp}/out"], "none"),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "bad.yaml").write_text("learning_rate: fast\n")
    done = _cli(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "╭" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1 and message in errors[0], done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) <= 3, done.stderr  # a usage error adds click's "Usage:" and "Try ... --help" lines


def test_demo_is_quiet_and_writes_three_books(toy_checkpoint_dir, tmp_path):
    """The demo on its embedded Prefect API (no server given): progress, the summary table and the books only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "demo"
    done = _cli("demo", "--out", str(out), "--model", str(toy_checkpoint_dir), env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert "Traceback" not in done.stderr and "INFO" not in done.stderr, done.stderr[-3000:]
    assert len(lines) <= 20, "\n".join(lines)
    books = [Path(line.split(": ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("demo-")]
    assert len(books) == 3
    for book in books:
        assert book.is_file() and (book.parent / "book.pdf").read_bytes().startswith(b"%PDF")
        assert len(list(book.parent.glob("step_*.png"))) == 6
    assert (out / "runs" / "demo" / "index.html").is_file()
    # The docs' contact sheet of the demo books is drawn from the same run folder.
    sheet = tmp_path / "sheet.png"
    script = Path(__file__).resolve().parents[1] / "bench" / "demo_sheet.py"
    cmd = [sys.executable, str(script), str(out / "runs" / "demo"), "--steps", "4", "--out", str(sheet)]
    drawn = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    width, height = Image.open(sheet).size
    assert width > height > 0  # three rows of five pictures
