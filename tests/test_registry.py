"""The model registry in the store: versions by content, aliases that cannot race, fetch by id, and the CLI."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seed_story.checkpoints.native import MANIFEST, save_checkpoint
from seed_story.cli.main import app, main
from seed_story.components import build_random
from seed_story.presets import from_preset
from seed_story.registry import (
    AliasConflict,
    AliasEvent,
    ModelVersion,
    Registry,
    RegistryError,
    UnknownVersion,
    content_id,
    is_model_ref,
    parse_model_ref,
)
from seed_story.storage import ChecksumMismatch, LocalObjectStore, ObjectStore, S3Settings, open_store
from tests.conftest import S3Bucket

NAME = "seed-story"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ``tiny`` checkpoint (~6 MB, 7 files), saved once for the module."""
    parts = build_random(from_preset("tiny"))
    folder = tmp_path_factory.mktemp("tiny-checkpoint")
    modules = {"visual_tokenizer": parts.visual_tokenizer, "mllm": parts.mllm, "detokenizer": parts.detokenizer}
    save_checkpoint(folder, parts.config, {**modules, "vae": parts.vae}, tokenizer=parts.tokenizer)
    return folder


def variant(checkpoint: Path, folder: Path, label: str) -> Path:
    """A copy of ``checkpoint`` with other content (its manifest's metadata differs): another version."""
    shutil.copytree(checkpoint, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["metadata"] = {"variant": label}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def s3_store(bucket: S3Bucket) -> ObjectStore:
    return open_store(f"s3://{bucket.name}/registry", S3Settings(endpoint_url=bucket.endpoint_url))


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("s3_bucket"))


# --- versions --------------------------------------------------------------------------------------------------


def test_registering_the_same_files_twice_is_one_version(tmp_path, checkpoint):
    registry = Registry(LocalObjectStore(tmp_path / "store"))
    first = registry.register(checkpoint, NAME, metrics={"heldout_loss": 2.5}, data_shards=["shards/a"])
    again = registry.register(checkpoint, NAME, metrics={"heldout_loss": 9.0})
    assert again == first and registry.versions(NAME) == [first] and registry.names() == [NAME]
    assert first.version_id == content_id(first.files) and len(first.version_id) == 16
    assert {f.path for f in first.files} >= {MANIFEST, "mllm.safetensors", "tokenizer/tokenizer_config.json"}
    assert first.metrics == {"heldout_loss": 2.5} and first.source == str(checkpoint.resolve())
    stored = tmp_path / "store" / "models" / NAME / "versions" / first.version_id
    assert (stored / "mllm.safetensors").read_bytes() == (checkpoint / "mllm.safetensors").read_bytes()
    assert ModelVersion.model_validate_json((stored / "version.json").read_text()) == first


def test_a_version_without_its_record_is_invisible_until_registering_completes_it(tmp_path, checkpoint):
    store = LocalObjectStore(tmp_path / "store")
    registry = Registry(store)
    version = registry.register(checkpoint, NAME)
    prefix = f"models/{NAME}/versions/{version.version_id}"
    store.delete(f"{prefix}/version.json")  # as an upload cut short leaves it
    store.delete(f"{prefix}/vae.safetensors")
    assert registry.versions(NAME) == [] and registry.names() == []
    with pytest.raises(UnknownVersion, match=f"no version {version.version_id} of {NAME}"):
        registry.resolve(f"models://{NAME}@{version.version_id}")
    with pytest.raises(UnknownVersion):
        registry.promote(NAME, version.version_id, by="test")
    completed = registry.register(checkpoint, NAME)
    assert completed.version_id == version.version_id and registry.versions(NAME) == [completed]
    assert store.exists(f"{prefix}/vae.safetensors")


def test_register_refuses_what_is_not_a_checkpoint(tmp_path):
    (tmp_path / "weights").mkdir()
    registry = Registry(LocalObjectStore(tmp_path / "store"))
    with pytest.raises(ValueError, match=r"is not a seed-story checkpoint folder \(no seed_story.json\)"):
        registry.register(tmp_path / "weights", NAME)
    with pytest.raises(ValueError, match="model name must be"):
        registry.register(tmp_path / "weights", "Seed Story")
    assert LocalObjectStore(tmp_path / "store").list() == []


# --- aliases ---------------------------------------------------------------------------------------------------


def test_promote_rollback_and_history(store, checkpoint, tmp_path):
    registry = Registry(store)
    v1 = registry.register(checkpoint, NAME).version_id
    v2 = registry.register(variant(checkpoint, tmp_path / "v2", "2"), NAME, parent=v1).version_id
    assert registry.alias(NAME, "production") is None
    first = registry.promote(NAME, v1, by="ana@lab", reason="first model")
    assert (first.seq, first.from_version, first.to_version, first.action) == (1, None, v1, "promote")
    with pytest.raises(RegistryError, match="production of seed-story has no earlier version"):
        registry.rollback(NAME, by="ana@lab")
    registry.promote(NAME, v2, by="ana@lab", reason="gate passed")
    assert registry.promote(NAME, v2, by="retry").seq == 2  # already there: nothing new, so retries are harmless
    registry.move_alias(NAME, "candidate", v2, action="set", by="flow-run-1")
    assert registry.resolve(f"models://{NAME}@production").version_id == v2
    back = registry.rollback(NAME, by="bob@lab", reason="blurry books")
    assert (back.seq, back.from_version, back.to_version, back.action) == (3, v2, v1, "rollback")
    assert registry.resolve(f"models://{NAME}@production").version_id == v1
    assert [(e.alias, e.seq, e.to_version) for e in registry.history(NAME, "production")] == [
        ("production", 1, v1), ("production", 2, v2), ("production", 3, v1),
    ]  # fmt: skip
    assert len(registry.history(NAME)) == 4 and registry.history(NAME)[2].alias == "candidate"
    assert {a: e.to_version for a, e in registry.aliases(NAME).items()} == {"candidate": v2, "production": v1}
    with pytest.raises(AliasConflict, match=f"production of seed-story moved meanwhile \\(now seq 3 -> {v1}\\)"):
        registry.promote(NAME, v2, by="ana@lab", expected_seq=2)
    with pytest.raises(UnknownVersion, match="no version 0123456789abcdef"):
        registry.promote(NAME, "0123456789abcdef", by="ana@lab")
    assert len(registry.history(NAME, "production")) == 3  # the refused moves left no trace


class RacingStore:
    """A store whose ``put_new`` waits until two callers are at it: both promotions have read the alias by then."""

    def __init__(self, store: ObjectStore) -> None:
        self.inner, self.both_read = store, threading.Barrier(2, timeout=30)

    def __getattr__(self, attr: str):
        return getattr(self.inner, attr)

    def put_new(self, key: str, data: bytes, *, content_type: str | None = None):
        self.both_read.wait()
        return self.inner.put_new(key, data, content_type=content_type)


def test_two_concurrent_promotions_exactly_one_wins(store, checkpoint, tmp_path):
    registry = Registry(store)
    versions = [registry.register(variant(checkpoint, tmp_path / str(i), str(i)), NAME).version_id for i in range(3)]
    registry.promote(NAME, versions[0], by="setup")
    racing = Registry(RacingStore(store))
    won: list[AliasEvent] = []
    lost: list[AliasConflict] = []

    def promote(version_id: str) -> None:
        try:
            won.append(racing.promote(NAME, version_id, by=f"worker-{version_id}"))
        except AliasConflict as err:
            lost.append(err)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(lost) == 1
    winner = won[0].to_version
    assert str(lost[0]) == f"production of seed-story moved meanwhile (now seq 2 -> {winner}); nothing changed"
    assert [(e.seq, e.from_version, e.to_version) for e in registry.history(NAME)] == [
        (1, None, versions[0]), (2, versions[0], winner),
    ]  # fmt: skip


# --- references ------------------------------------------------------------------------------------------------


def test_resolve_by_alias_and_by_id(tmp_path, checkpoint):
    registry = Registry(LocalObjectStore(tmp_path / "store"))
    version = registry.register(checkpoint, NAME)
    registry.move_alias(NAME, "candidate", version.version_id, action="set", by="test")
    assert registry.resolve(f"models://{NAME}@candidate") == version
    assert registry.resolve(f"models://{NAME}@{version.version_id}") == version
    assert is_model_ref(f"models://{NAME}@candidate") and not is_model_ref("/data/models/seed-story")
    assert parse_model_ref(f"models://{NAME}@candidate").model_dump() == {"name": NAME, "at": "candidate"}
    with pytest.raises(UnknownVersion, match="production of seed-story is not set"):
        registry.resolve(f"models://{NAME}@production")


@pytest.mark.parametrize(
    "ref, message",
    [
        ("seed-story@production", "must start with 'models://'"),
        ("models://seed-story", "must be models://NAME@ALIAS or models://NAME@VERSION"),
        ("models://Seed_Story@production", "model name must be lowercase"),
        ("models://seed-story@Production", "alias must start with a letter"),
        ("models://seed-story@0123456789ABCDEF", "alias must start with a letter"),
        ("models://seed-story@prod/../x", "alias must start with a letter"),
    ],
)
def test_bad_refs_are_one_line_errors(tmp_path, ref, message):
    with pytest.raises(ValueError, match=message) as err:
        Registry(LocalObjectStore(tmp_path)).resolve(ref)
    assert "\n" not in str(err.value)


# --- fetch -----------------------------------------------------------------------------------------------------


def test_fetch_caches_by_id_and_a_second_fetch_downloads_nothing(s3_bucket, checkpoint, tmp_path, monkeypatch):
    store = s3_store(s3_bucket)
    registry = Registry(store)
    version = registry.register(checkpoint, NAME)
    downloads: list[str] = []
    real_get_file = store.get_file

    def counting_get_file(key: str, path: Path) -> Path:
        downloads.append(key)
        return real_get_file(key, path)

    monkeypatch.setattr(store, "get_file", counting_get_file)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(registry.fetch(version, tmp_path))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    folder = tmp_path / NAME / version.version_id
    assert results == [folder, folder] and len(downloads) == len(version.files)  # two at once: one download
    for entry in version.files:
        assert (folder / entry.path).read_bytes() == (checkpoint / entry.path).read_bytes()
    assert ModelVersion.model_validate_json((folder / "version.json").read_text()) == version
    assert sorted(p.name for p in tmp_path.joinpath(NAME).iterdir()) == [version.version_id]  # no temp or lock
    assert registry.fetch(version, tmp_path) == folder and len(downloads) == len(version.files)
    assert registry.register(folder, NAME) == version  # a fetched copy is the same version


def test_fetch_refuses_a_file_that_does_not_match_its_version(s3_bucket, checkpoint, tmp_path):
    store = s3_store(s3_bucket)
    version = Registry(store).register(checkpoint, NAME)
    store.put_bytes(f"models/{NAME}/versions/{version.version_id}/mllm.safetensors", b"not the weights")
    with pytest.raises(ChecksumMismatch, match=r"mllm\.safetensors"):
        Registry(store).fetch(version, tmp_path / "cache")
    assert not (tmp_path / "cache" / NAME / version.version_id).exists()


def test_fetch_reads_a_local_store_in_place(tmp_path, checkpoint):
    registry = Registry(LocalObjectStore(tmp_path / "store"))
    version = registry.register(checkpoint, NAME)
    folder = registry.fetch(version, tmp_path / "cache")
    assert folder == tmp_path / "store" / "models" / NAME / "versions" / version.version_id
    assert (folder / MANIFEST).is_file() and not (tmp_path / "cache").exists()


# --- CLI -------------------------------------------------------------------------------------------------------


def cli_json(*args: str) -> dict | list:
    result = CliRunner().invoke(app, ["models", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_register_promote_rollback_history(tmp_path, checkpoint):
    store = str(tmp_path / "store")
    v1 = cli_json("register", str(checkpoint), "--store", store, "--metrics", "heldout_loss=2.5")["version_id"]
    v2_dir = variant(checkpoint, tmp_path / "v2", "2")
    v2 = cli_json("register", str(v2_dir), "--store", store, "--parent", v1, "--metrics", "a=1,b=2")
    assert v2["parent"] == v1 and v2["metrics"] == {"a": 1.0, "b": 2.0}
    assert cli_json("promote", v1, "--store", store, "--by", "ana@lab")["to_version"] == v1
    promoted = cli_json("promote", f"models://{NAME}@{v2['version_id']}", "--store", store, "--reason", "better")
    assert (promoted["from_version"], promoted["seq"], promoted["reason"]) == (v1, 2, "better")
    back = cli_json("rollback", "--store", store, "--reason", "blurry")
    assert (back["action"], back["to_version"], back["seq"]) == ("rollback", v1, 3)
    history = cli_json("history", "--store", store, "--alias", "production")
    assert [(e["seq"], e["action"], e["to_version"]) for e in history] == [
        (1, "promote", v1), (2, "promote", v2["version_id"]), (3, "rollback", v1),
    ]  # fmt: skip
    listing = cli_json("list", "--store", store)
    assert listing["aliases"] == {"production": v1} and len(listing["versions"]) == 2
    assert cli_json("show", "production", "--store", store)["version_id"] == v1
    for args in (["list"], ["history"], ["show", v1]):  # the human forms
        result = CliRunner().invoke(app, ["models", *args, "--store", store])
        assert result.exit_code == 0 and v1 in result.stdout, result.output
    again = CliRunner().invoke(app, ["models", "register", str(checkpoint), "--store", store])
    assert again.exit_code == 0 and "registered already" in again.stdout, again.output


def test_cli_registry_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["seed-story", "models", "rollback", "--store", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code not in (0, None)
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"error: production of seed-story is not set in {tmp_path.resolve().as_uri()}"]
