"""Rendering a run stored in S3 (a moto server on 127.0.0.1): books and gallery land in the bucket, only what a
story needs is downloaded, and a second render writes identical bytes. Also the CLI's ``--store s3://``."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from typer.testing import CliRunner

from seed_story.cli.main import app
from seed_story.render import render_run
from seed_story.render.demo import demo_record, write_story
from seed_story.runstore import StoryRecord
from seed_story.storage import LocalObjectStore, S3ObjectStore, S3Settings, upload
from tests.conftest import S3Bucket

PREFIX = "prod"


def stored_run(bucket: S3Bucket, tmp_path: Path) -> S3ObjectStore:
    """A synthetic run ``r1`` (two complete stories, one failed) uploaded to ``s3://bucket/prod/runs/r1/``."""
    run = tmp_path / "src" / "runs" / "r1"
    write_story(run / "a", demo_record("a", steps=2))
    write_story(run / "b", demo_record("b", steps=1, title="Second"))
    write_story(run / "c", StoryRecord(story_id="c", title="Broken", status="failed", failure_reason="GPU OOM"))
    (run / "a" / "notes.bin").write_bytes(b"not needed to render")
    store = S3ObjectStore(bucket.name, PREFIX, S3Settings(endpoint_url=bucket.endpoint_url))
    for story in run.iterdir():
        upload(store, story, [p.name for p in story.iterdir()], f"runs/r1/{story.name}")
    return store


def image_sources(html: str) -> list[str]:
    sources: list[str] = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: sources.extend(v for k, v in attrs if tag == "img" and k == "src")
    parser.feed(html)
    return sources


def test_render_run_reads_and_writes_s3(s3_bucket, tmp_path):
    store = stored_run(s3_bucket, tmp_path)
    fetched: list[str] = []
    events = store.client.meta.events
    events.register("provide-client-params.s3.GetObject", lambda params, **_: fetched.append(params["Key"]))
    report = render_run(store, "r1", formats=["html", "pdf"])
    assert report.rendered == ["a", "b"] and report.failed == ["c"] and report.store == store.uri
    pdfs = [(p.key, p.path, p.pages) for p in report.pdfs]
    assert pdfs == [("runs/r1/a/book.pdf", None, 4), ("runs/r1/b/book.pdf", None, 3)]
    # Only story.json files and the images of complete stories came down; never notes.bin or another book.
    needed = ["a/opening.png", "a/step_01.png", "a/step_02.png", "a/story.json", "b/opening.png", "b/step_01.png",
              "b/story.json", "c/story.json"]  # fmt: skip
    assert sorted(fetched) == sorted(f"{PREFIX}/runs/r1/{name}" for name in needed)

    def raw(key: str) -> bytes:
        return s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/{key}")["Body"].read()

    keys = set(store.list("runs/r1/"))
    assert {"runs/r1/index.html", "runs/r1/a/book.html", "runs/r1/a/book.pdf", "runs/r1/b/book.pdf"} <= keys
    assert not {"runs/r1/c/book.html", "runs/r1/c/book.pdf"} & keys
    assert raw("runs/r1/a/book.pdf").startswith(b"%PDF-")
    html = raw("runs/r1/a/book.html").decode()
    assert image_sources(html) == ["opening.png", "step_01.png", "step_02.png"]  # relative: the bucket serves them
    assert "file:" not in html and str(tmp_path) not in html
    index = raw("runs/r1/index.html").decode()
    assert 'href="a/book.html"' in index and 'href="b/book.pdf"' in index and "GPU OOM" in index
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/runs/r1/a/book.html")
    assert head["ContentType"].startswith("text/html")

    before = {key: raw(key) for key in keys}
    render_run(store, "r1", formats=["html", "pdf"])
    assert {key: raw(key) for key in store.list("runs/r1/")} == before  # HTML, PDF and gallery byte for byte


def test_local_object_store_renders_in_place(tmp_path):
    write_story(tmp_path / "runs" / "r1" / "a", demo_record("a", steps=1))
    report = render_run(LocalObjectStore(tmp_path), "r1", formats=["pdf"])
    assert report.pdfs[0].path == tmp_path / "runs" / "r1" / "a" / "book.pdf" and report.pdfs[0].key
    assert sorted(p.name for p in (tmp_path / "runs" / "r1" / "a").iterdir()) == [
        "book.pdf", "book.preflight.json", "opening.png", "step_01.png", "story.json"
    ]  # fmt: skip
    assert 'href="a/book.pdf"' in (tmp_path / "runs" / "r1" / "index.html").read_text()


def test_cli_renders_an_s3_store(s3_bucket, tmp_path):
    stored_run(s3_bucket, tmp_path)
    uri, endpoint = f"s3://{s3_bucket.name}/{PREFIX}", s3_bucket.endpoint_url
    cli = ["render", "--store", uri, "--s3-endpoint-url", endpoint, "--run", "r1", "--format", "html"]
    result = CliRunner().invoke(app, cli)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rendered"] == ["a", "b"]
    assert s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/runs/r1/b/book.html")
    missing = CliRunner().invoke(app, [*cli[:5], "--run", "nope"])
    assert missing.exit_code != 0 and "no run" in str(missing.exception)  # one line from the entry point
    local = CliRunner().invoke(app, ["render", "--store", str(tmp_path), "--s3-endpoint-url", endpoint, "--run", "r1"])
    assert local.exit_code != 0
