"""From a finished training run to production: gate, register, promote (``seed_story.registry``).

The candidate (the run's ``final/`` folder) is scored against the version the alias points at now, on the
config's held-out set (``TrainConfig.gate``); it is then registered, the gate's decision and both sets of numbers
in its ``version.json``, with that version as its parent; only when the gate passed is the alias moved to it,
and only if the alias still points where it did when the gate compared (else ``AliasConflict``: a promotion
the gate never compared against is not overwritten). A failed gate leaves the alias unchanged, and so does a
config without a ``gate`` section (the run is registered only).

Example::

    result = publish_run(store, Path("work/training/stage2/w49/final"), cfg, PublishTarget(), by="flow-run/1c2d")
    result.promoted, result.version_id, result.decision.reasons
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from seed_story.config import StrictModel
from seed_story.registry import Registry, content_id, scan_checkpoint
from seed_story.storage import ObjectStore
from seed_story.training.config import StoryStreamData, TrainConfig
from seed_story.training.gate import GateDecision, decide


class PublishTarget(StrictModel):
    """Which model name a training run registers as, and which alias a passing run moves."""

    name: str = "seed-story"
    alias: str = "production"
    promote: bool = Field(True, description="move the alias when the config's gate passes (False: register only)")


class PublishResult(StrictModel):
    """What publishing did: the registered version, whether the alias moved, and the gate's decision."""

    name: str
    version_id: str
    parent: str | None
    alias: str
    promoted: bool
    decision: GateDecision | None


def _shards(cfg: TrainConfig) -> list[str]:
    if not isinstance(cfg.data, StoryStreamData):
        return []
    return cfg.data.shard_paths()


def publish_run(
    store: ObjectStore,
    final_dir: Path,
    cfg: TrainConfig,
    target: PublishTarget,
    *,
    by: str,
    cache_dir: Path,
    metrics: dict[str, float] | None = None,
) -> PublishResult:
    """Gate the checkpoint in ``final_dir`` against ``target``'s alias, register it, promote it if it passed."""
    registry = Registry(store)
    current = registry.alias(target.name, target.alias)
    candidate = content_id(scan_checkpoint(final_dir))
    decision = None
    if cfg.gate is not None:
        production = current.to_version if current is not None else None
        production_dir = None
        if production is not None and production != candidate:
            production_dir = registry.fetch(registry.version(target.name, production), cache_dir)
        elif production == candidate:
            production_dir = final_dir  # the same files: the same numbers, no download
        decision = decide(cfg.gate, final_dir, production_dir, candidate=candidate, production=production)
    version = registry.register(
        final_dir, target.name, parent=current.to_version if current is not None else None,
        train_config=cfg.model_dump(mode="json"), data_shards=_shards(cfg),
        metrics={**(metrics or {}), **(decision.candidate_metrics if decision else {})},
        gate=decision.model_dump(mode="json") if decision else None,
    )  # fmt: skip
    # Without a gate nothing is promoted: a run is only ever compared, never trusted.
    promoted = target.promote and decision is not None and decision.passed
    if promoted:
        reason = "; ".join(decision.reasons)
        registry.promote(target.name, version.version_id, target.alias, by=by, reason=reason,
                         expected_seq=current.seq if current is not None else 0)  # fmt: skip
    return PublishResult(name=target.name, version_id=version.version_id, parent=version.parent,
                         alias=target.alias, promoted=promoted, decision=decision)  # fmt: skip
