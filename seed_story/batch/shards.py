"""Cut a manifest into shards that separate workers can run without sharing a story."""

from __future__ import annotations

import json

from seed_story.batch.manifest import Manifest
from seed_story.batch.planning import resolve_image_uri


def shard_manifest(manifest: Manifest, shards: int) -> list[bytes]:
    """``shards`` JSONL manifests of the valid rows (round robin, so long and short stories spread evenly),
    with image paths made absolute so a shard can live anywhere. Empty shards are left out."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    out: list[list[str]] = [[] for _ in range(shards)]
    for i, entry in enumerate(manifest.entries):
        row = entry.row.model_copy(update={"image": resolve_image_uri(entry.row.image, manifest.folder)})
        out[i % shards].append(json.dumps(row.model_dump(mode="json", exclude_none=True), ensure_ascii=False))
    return [("\n".join(lines) + "\n").encode() for lines in out if lines]
