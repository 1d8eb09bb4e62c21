"""The command line as a user meets it: every ``--help`` works and errors are one line (the demo: test_packaging)."""

from __future__ import annotations

import sys

import pytest
import typer
from typer.testing import CliRunner

from seed_story.cli.main import app, main


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["render", "--store", "{tmp}/none", "--run", "r1"], "no run 'r1'"),
        (["eval", "--store", "{tmp}/none", "--run", "../up"], "run_id must be a plain name"),
        (["train", "stage2", "--config", "{tmp}/bad.yaml"], "learning_rate"),
        (["presets", "describe", "--preset", "nope"], "unknown preset 'nope'"),
        (["checkpoints", "export", "{tmp}/none", "{tmp}/out"], "none"),
        (
            ["generate", "-m", "{tmp}/m.jsonl", "-s", "{tmp}/s", "--model", "{tmp}", "--draw-preset", "turbo"],
            "unknown draw preset 'turbo'",
        ),
        (
            ["generate", "-m", "{tmp}/m.jsonl", "-s", "{tmp}/s", "--model", "{tmp}", "--memory", "tiny"],
            "memory: Input should be 'normal' or 'low'",
        ),
    ],
)
def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    """Through the entry point a user's shell runs (``main``), in process: no traceback, one error line."""
    (tmp_path / "bad.yaml").write_text("learning_rate: fast\ndata: {kind: toy}\n")
    monkeypatch.setattr(sys, "argv", ["seed-story", *(a.replace("{tmp}", str(tmp_path)) for a in args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code not in (0, None)
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "╭" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1 and message in errors[0], stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) <= 3, stderr  # a usage error adds click's "Usage:" and "Try ... --help" lines


def test_long_commands_show_progress(tmp_path, toy_checkpoint_dir):
    from seed_story.render.demo import demo_record, write_story

    for story_id in ("a", "b"):
        write_story(tmp_path / "runs" / "r1" / story_id, demo_record(story_id, steps=1))
    rendered = CliRunner().invoke(app, ["render", "--store", str(tmp_path), "--run", "r1", "--format", "html"])
    assert rendered.exit_code == 0, rendered.output
    assert "rendering" in rendered.stderr and "2/2" in rendered.stderr
    exported = CliRunner().invoke(app, ["checkpoints", "export", str(toy_checkpoint_dir), str(tmp_path / "half")])
    assert exported.exit_code == 0, exported.output
    assert "exporting" in exported.stderr and "4/4" in exported.stderr
