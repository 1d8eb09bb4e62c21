"""Which model a run uses: a checkpoint folder as given, or a registry version pinned for the whole run.

``models://name@alias`` is resolved once, on the run's first start, and the version is written to
``runs/{run_id}/model.json`` with a create-only write; every later start of the run (a resume, a retry, a shard
of a scaled-out night) reads the pin instead of the alias, so no story mixes two models even when the alias
moves mid-night. If two shards race to pin, one write wins and the other reads it. The version's files are
fetched once per worker into a local cache by id.

Example::

    spec, version = pinned_model(run_store, "2026-12-05", spec, registry_store, Path("~/.cache/seed-story/models"))
    spec.path  # the cached folder of seed-story@3f2a9c...; version == "seed-story@3f2a9c..."
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from seed_story.batch.pipelines import ModelSpec, model_version
from seed_story.config import StrictModel
from seed_story.registry import Registry, is_model_ref, parse_model_ref
from seed_story.runstore.keys import RunKeys
from seed_story.storage import ObjectExists, ObjectNotFound, ObjectStore, get_model


class ModelPin(StrictModel):
    """The registry version a run is bound to, and the reference it was resolved from."""

    ref: str
    name: str
    version_id: str
    resolved_at: datetime

    @property
    def label(self) -> str:
        """What stories and the run summary record as ``model_version``."""
        return f"{self.name}@{self.version_id}"


def pin_run(run_store: ObjectStore, run_id: str, ref: str, registry: Registry) -> ModelPin:
    """The run's pin: the stored one, else ``ref`` resolved now and stored (the first writer wins)."""
    key = RunKeys(run_id).model_pin
    try:
        return get_model(run_store, key, ModelPin)
    except ObjectNotFound:
        pass
    version = registry.resolve(ref)
    pin = ModelPin(ref=ref, name=version.name, version_id=version.version_id, resolved_at=datetime.now(UTC))
    try:
        run_store.put_new(key, pin.model_dump_json(indent=2).encode(), content_type="application/json")
    except ObjectExists:
        return get_model(run_store, key, ModelPin)  # another start of this run pinned first
    return pin


def pinned_model(
    run_store: ObjectStore, run_id: str, spec: ModelSpec, registry_store: ObjectStore, cache_dir: Path
) -> tuple[ModelSpec, str]:
    """``spec`` with a local folder as its path, and the version label the run's stories record."""
    if not is_model_ref(spec.path):
        return spec, model_version(spec.path)
    registry = Registry(registry_store)
    pin = pin_run(run_store, run_id, spec.path, registry)
    if pin.name != parse_model_ref(spec.path).name:
        raise ValueError(f"run {run_id} is pinned to {pin.label}, not a version of {spec.path}: use a new run id")
    folder = registry.fetch(registry.version(pin.name, pin.version_id), cache_dir.expanduser())
    return spec.model_copy(update={"path": str(folder)}), pin.label
