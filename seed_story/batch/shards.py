"""Cut a manifest into shards that separate workers can run without sharing a story."""

from __future__ import annotations

import json

from pydantic import Field

from seed_story.batch.manifest import Manifest
from seed_story.config import StrictModel
from seed_story.runstore.keys import RunKeys
from seed_story.runstore.records import ManifestProblem
from seed_story.storage import ObjectStore, key_uri


def shard_manifest(manifest: Manifest, shards: int) -> list[bytes]:
    """``shards`` JSONL manifests of the valid rows (round robin, so long and short stories spread evenly),
    with image paths made absolute so a shard can live anywhere (its runs allow the manifest's folder as an
    image root). Empty shards are left out."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    out: list[list[str]] = [[] for _ in range(shards)]
    for i, entry in enumerate(manifest.entries):
        row = entry.row.model_copy(update={"image": entry.image_uri})
        out[i % shards].append(json.dumps(row.model_dump(mode="json", exclude_none=True), ensure_ascii=False))
    return [("\n".join(lines) + "\n").encode() for lines in out if lines]


class ShardPlan(StrictModel):
    """Where a scaled-out run's shard manifests are and which stories each holds."""

    shards: list[str]
    story_ids: list[list[str]]
    image_root: str = Field(description="the manifest's folder: the shards' images are inside it")
    bad_rows: list[ManifestProblem]
    rows: int


def write_manifest_shards(store: ObjectStore, manifest: Manifest, run_id: str, shards: int) -> ShardPlan:
    """Write the manifest's shards to ``runs/{run_id}/shards/shard-NN.jsonl``; returns their URIs and stories."""
    uris, ids = [], []
    for i, data in enumerate(shard_manifest(manifest, shards)):
        key = RunKeys(run_id).shard(i)
        store.put_bytes(key, data)
        uris.append(key_uri(store, key))
        ids.append([e.row.story_id for j, e in enumerate(manifest.entries) if j % shards == i])
    rows = len(manifest.entries) + len(manifest.problems)
    return ShardPlan(shards=uris, story_ids=ids, image_root=manifest.folder, bad_rows=manifest.problems, rows=rows)
