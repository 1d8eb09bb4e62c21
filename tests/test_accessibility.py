"""Accessibility: the HTML book and the gallery pass axe-core (WCAG 2.x A/AA rules) with zero violations in
headless Debian Chromium, left-to-right and right-to-left. axe-core comes from npm (``npm ci --prefix tests/a11y``,
run by ``.ci/run``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from seed_story.render import write_book_html
from seed_story.render.demo import demo_record, write_story
from seed_story.render.gallery import render_gallery

AXE = Path(__file__).parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed; .ci/run adds it"),
    pytest.mark.skipif(not AXE.is_file(), reason="axe-core is not installed: npm ci --prefix tests/a11y"),
]
# Runs axe once the page has loaded and writes its result into the DOM for --dump-dom to carry out.
RUN_AXE = """<script src="axe.min.js"></script>
<script>
window.addEventListener("load", function () {
  axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}})
    .then(function (r) {
      var out = {violations: r.violations.map(function (v) {
        return {id: v.id, impact: v.impact, nodes: v.nodes.map(function (n) { return n.html; }).slice(0, 3)}; }),
        passes: r.passes.length};
      var pre = document.createElement("pre"); pre.id = "axe"; pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    });
});
</script>"""


def axe_violations(page: Path, tmp: Path) -> tuple[list[dict], int]:
    shutil.copyfile(AXE, page.parent / "axe.min.js")
    probed = page.with_name(f"axe-{page.name}")
    probed.write_text(page.read_text().replace("</body>", RUN_AXE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    cmd = [CHROMIUM, *flags, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=20000", "--dump-dom",
           probed.as_uri()]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="axe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert match, result.stderr[-2000:]
    found = json.loads(match[1].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    return found["violations"], found["passes"]


@pytest.mark.parametrize("language", ["en", "ar"])
def test_the_html_book_has_no_axe_violations(language: str, tmp_path: Path) -> None:
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=3).model_copy(update={"language": language}))
    violations, passes = axe_violations(write_book_html(record, folder), tmp_path)
    assert violations == [] and passes > 10


def test_the_gallery_has_no_axe_violations(tmp_path: Path) -> None:
    run = tmp_path / "run"
    records = [write_story(run / sid, demo_record(sid, steps=2)) for sid in ("a", "b")]
    for record in records:
        write_book_html(record, run / record.story_id)
    (run / "index.html").write_text(render_gallery("r1", records, {"a/book.html", "b/book.html"}))
    violations, _ = axe_violations(run / "index.html", tmp_path)
    assert violations == []


def test_axe_finds_a_violation_when_there_is_one(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=1))
    page = write_book_html(record, folder)
    page.write_text(re.sub(r'alt="[^"]*"', "", page.read_text()))  # pictures without alt text
    violations, _ = axe_violations(page, tmp_path)
    assert "image-alt" in {v["id"] for v in violations}
