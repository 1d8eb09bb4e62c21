"""Open the HTML book in real headless Chromium: every image loads, no errors, expected pages and text."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from seed_story.render import write_book_html
from seed_story.render.demo import demo_record, write_story

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed; .ci/run adds it")

# Appended to a copy of the book: records image sizes, page count and any error event into the DOM.
PROBE = """<script>
var errs = [];
window.addEventListener("error", function (e) { errs.push(String(e.message || (e.target && e.target.src))); }, true);
window.addEventListener("load", function () {
  var r = {images: Array.from(document.images).map(function (i) { return i.naturalWidth; }),
           pages: document.querySelectorAll(".page").length, errors: errs,
           text: Array.from(document.querySelectorAll(".spread .words p")).map(function (p) { return p.textContent; })};
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"""


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    cmd = [CHROMIUM, *flags, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_book_opens_in_chromium_with_every_image_loaded(tmp_path):
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=3))
    book = write_book_html(record, folder)
    probed = folder / "probe.html"
    probed.write_text(book.read_text().replace("</body>", PROBE + "</body>"))
    result = chromium(tmp_path, "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout)
    assert match, result.stderr[-2000:]
    probe = json.loads(match[1].replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["images"] == [64] * 4  # naturalWidth of opening + 3 steps: all loaded
    assert probe["errors"] == [] and "Uncaught" not in result.stderr
    assert probe["pages"] == len(record.steps) + 2
    assert probe["text"] == [s.text for s in record.steps]
    shot = tmp_path / "book.png"  # kept as a test artifact under the test's tmp dir
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,900", book.as_uri())
    assert shot.is_file() and shot.stat().st_size > 1000


def test_missing_image_is_detected(tmp_path):
    # The probe must be able to fail: a deleted picture shows naturalWidth 0.
    folder = tmp_path / "s"
    record = write_story(folder, demo_record("s", steps=1))
    book = write_book_html(record, folder)
    (folder / "step_01.png").unlink()
    probed = folder / "probe.html"
    probed.write_text(book.read_text().replace("</body>", PROBE + "</body>"))
    out = chromium(tmp_path, "--dump-dom", probed.as_uri()).stdout
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', out)[1].replace("&quot;", '"'))
    assert probe["images"] == [64, 0] and probe["errors"]
