"""HTML books, records, escaping, determinism, the gallery and the CLI (no external binaries needed)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from seed_story.cli.main import app
from seed_story.render import render_book_html, render_run
from seed_story.render.demo import demo_record, write_story
from seed_story.render.templating import environment
from seed_story.runstore import StoredStep, StoryRecord
from seed_story.storage import open_store

PAYLOADS = ["<script>alert(1)</script>", '<img src=x onerror="alert(2)">', '<a href="javascript:alert(3)">x</a>']


def hostile_record(story_id: str = "evil") -> StoryRecord:
    return StoryRecord(
        story_id=story_id, title=PAYLOADS[0], author=PAYLOADS[1], opening_text=PAYLOADS[2],
        opening_image="opening.png",
        steps=[StoredStep(index=i + 1, text=p, image=f"step_{i + 1:02d}.png") for i, p in enumerate(PAYLOADS)],
    )  # fmt: skip


def parse_tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every start tag with its attributes, as a browser's tokenizer sees them."""
    tags: list = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: tags.append((tag, attrs))
    parser.feed(html)
    return tags


def test_every_template_parses():
    names = environment().list_templates(extensions=["j2"])
    assert {"book.html.j2", "print.html.j2", "gallery.html.j2"} <= set(names)
    for name in names:
        environment().get_template(name)


@pytest.mark.parametrize("bad", ["../x.png", "/etc/passwd.png", "a/b.png", "x.svg", "http://e.com/x.png"])
def test_records_refuse_paths_and_foreign_images(bad):
    with pytest.raises(ValidationError):
        StoredStep(index=1, text="t", image=bad)


def test_failed_story_needs_a_reason_and_steps_are_numbered():
    with pytest.raises(ValidationError, match="failure_reason"):
        StoryRecord(story_id="s", title="t", status="failed")
    with pytest.raises(ValidationError, match="numbered"):
        StoryRecord(story_id="s", title="t", opening_image="o.png", steps=[StoredStep(index=2, text="", image="a.png")])


def test_user_text_is_escaped_everywhere(tmp_path):
    record = write_story(tmp_path / "evil", hostile_record())
    html = render_book_html(record, tmp_path / "evil")
    for needle in ("<script>alert", 'onerror="', 'href="javascript:', "<img src=x"):
        assert needle not in html
    tags = parse_tags(html)
    assert [t for t, _ in tags].count("script") == 1  # only the navigation script
    assert not [a for _, attrs in tags for a, v in attrs if a.startswith("on") or (v or "").startswith("javascript:")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_html_book_structure_relative_links_and_determinism(tmp_path):
    record = write_story(tmp_path / "s", demo_record("s", steps=4))
    html = render_book_html(record, tmp_path / "s")
    assert html == render_book_html(record, tmp_path / "s")
    assert html.count('class="page spread"') == 4
    assert 'src="opening.png"' in html and 'src="step_04.png"' in html
    assert "file:" not in html and str(tmp_path) not in html
    assert "keydown" in html


def test_self_contained_inlines_every_image(tmp_path):
    record = write_story(tmp_path / "s", demo_record("s", steps=2))
    html = render_book_html(record, tmp_path / "s", self_contained=True)
    assert html.count('src="data:image/png;base64,') == 3
    assert 'src="step_01.png"' not in html


def test_unicode_survives_into_html(tmp_path):
    text = "小猫 and ねこ, שלום עולם, مرحبا 🐱🎈"
    record = write_story(tmp_path / "u", demo_record("u", steps=1).model_copy(update={"title": text}))
    assert text in render_book_html(record, tmp_path / "u")


def test_render_run_writes_books_and_gallery_with_failures(tmp_path):
    run = tmp_path / "runs" / "r1"
    write_story(run / "a", demo_record("a", steps=2))
    write_story(run / "evil", hostile_record())
    failed = StoryRecord(story_id="b", title="Broken", status="failed", failure_reason="<b>GPU out of memory</b>")
    write_story(run / "b", failed)
    report = render_run(open_store(str(tmp_path)), "r1", formats=["html"])
    assert report.rendered == ["a", "evil"] and report.failed == ["b"]
    index = (run / "index.html").read_text()
    assert 'href="a/book.html"' in index and 'src="a/opening.png"' in index
    assert "&lt;b&gt;GPU out of memory&lt;/b&gt;" in index and "<script" not in index
    assert not (run / "b" / "book.html").exists()
    first = {p: p.read_bytes() for p in run.rglob("*.html")}
    render_run(open_store(str(tmp_path)), "r1", formats=["html"])
    assert first == {p: p.read_bytes() for p in run.rglob("*.html")}


def test_cli_render_html(tmp_path):
    write_story(tmp_path / "runs" / "r1" / "a", demo_record("a", steps=1))
    result = CliRunner().invoke(app, ["render", "--store", str(tmp_path), "--run", "r1", "--format", "html"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rendered"] == ["a"]
    assert (tmp_path / "runs" / "r1" / "a" / "book.html").is_file()
    bad = CliRunner().invoke(app, ["render", "--store", str(tmp_path), "--run", "r1", "--format", "docx"])
    assert bad.exit_code != 0
