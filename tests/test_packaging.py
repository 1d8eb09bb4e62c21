"""The package as a user installs it: a plain wheel carries the templates and the demo model, and the demo runs
from it in an empty folder, quietly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out, src = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    # Build from a copy: setuptools writes build/ and *.egg-info into the source tree.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("seed_story", "flows", "tasks"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = out.glob("seed_story-*.whl")
    return found


def test_wheel_carries_templates_and_the_demo_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in ("book.html.j2", "print.html.j2", "gallery.html.j2"):
        assert f"seed_story/templates/{template}" in names
    for part in ("seed_story.json", "mllm.safetensors", "detokenizer.safetensors", "tokenizer/tokenizer.json"):
        assert f"seed_story/examples/seed-story-mini/{part}" in names
    assert "seed_story/examples/mini/demo.jsonl" in names and "flows/nightly_generation.py" in names
    assert not any(n.startswith(("tests/", "bench/", "configs/")) for n in names)


def test_demo_runs_from_the_wheel_in_an_empty_folder_quietly(wheel, tmp_path):
    """``seed-story demo`` with its defaults (the bundled SEED-Story-Mini, the embedded Prefect API)."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # The unpacked wheel comes first on the path, before the repo's editable install.
    env |= {"PYTHONPATH": str(site), "PREFECT_HOME": str(tmp_path / "prefect-home"), "OMP_NUM_THREADS": "1"}
    code = "import sys, seed_story; assert seed_story.__file__.startswith(sys.argv[1]); " \
           "from seed_story.cli.main import main; sys.argv[1:] = sys.argv[2:]; main()"  # fmt: skip
    cmd = [sys.executable, "-c", code, str(site), "demo", "--draw-steps", "4"]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert "Traceback" not in done.stderr and "INFO" not in done.stderr, done.stderr[-3000:]
    assert len(lines) <= 20, "\n".join(lines)
    run = cwd / "seed-story-demo" / "runs" / "demo"
    books = sorted(run.glob("*/book.pdf"))
    assert [b.parent.name for b in books] == ["mini-1", "mini-2", "mini-3"]
    assert all(b.read_bytes().startswith(b"%PDF") for b in books)
    # The docs' contact sheet of the demo books is drawn from the same run folder.
    sheet = tmp_path / "sheet.png"
    cmd = [sys.executable, str(REPO / "bench" / "demo_sheet.py"), str(run), "--steps", "4", "--out", str(sheet)]
    drawn = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    width, height = Image.open(sheet).size
    assert width > height > 0  # three rows of five pictures


def test_mini_demo_titles_name_the_opening_cast():
    """A book's title names who its opening names, and nobody else (the model writes the rest)."""
    import json
    import re

    from seed_story.examples import bundled_model

    assert bundled_model() is not None
    rows = [json.loads(line) for line in (REPO / "seed_story/examples/mini/demo.jsonl").read_text().splitlines()]
    for row in rows:
        named = {w for w in row["title"].split() if w[0].isupper() and w not in {"The", "In"}}
        text = re.findall(r"[A-Za-z]+", row["text"])
        assert named and {w.lower() for w in named} <= {w.lower() for w in text}, row["title"]
        cast = {w for w in text if w in {"Bram", "Pip", "Momo", "Nell", "Tiko", "Otto", "Zara", "Luma"}}
        assert cast <= named, (row["title"], cast)
