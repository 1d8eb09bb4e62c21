"""``nightly_scale_out``: shard a big manifest and run the shards as child flow runs of a GPU deployment.

Each shard is one flow run of the ``nightly-generation`` deployment (``deploy/prefect.yaml``) on a GPU work
pool, so N workers on N GPUs (or machines) share a night; no story is in two shards, and every shard resumes
like a single night would. When all shards have ended, the parent renders the run's books and gallery,
exports the finished stories, and writes one summary.
"""

from __future__ import annotations

import time
import uuid
from uuid import UUID

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from seed_story.batch.summary import summary_markdown
from seed_story.runstore.keys import RunKeys
from seed_story.runstore.records import RunSummary, now
from seed_story.storage import put_model
from tasks.common import artifact_key
from tasks.generation import export_task, render_task
from tasks.scale_out import merge_task, shard_task
from tasks.settings import NightlySettings


class ScaleOutSettings(BaseModel):
    """The night as for ``nightly_generation``, plus how many shards and which deployment runs them."""

    model_config = ConfigDict(extra="forbid")

    nightly: NightlySettings
    shards: int = Field(default=2, ge=1, description="child flow runs; one per GPU worker is a good start")
    deployment: str = Field(default="nightly-generation/gpu-shard", description="'flow-name/deployment-name'")
    shard_timeout_s: int = Field(default=12 * 3600, ge=1, description="give up waiting for a shard after this")
    poll_seconds: int = Field(default=5, ge=1)
    crash_grace_s: int = Field(
        default=120, ge=0, description="a crashed shard counts as final only after this long (it may be rescheduled)"
    )


def _wait_all(ids: list[UUID], timeout_s: int, poll_s: int, crash_grace_s: int = 0) -> list[str]:
    """Final state types of the child flow runs ('TIMEOUT' for those still running after ``timeout_s``). A shard
    that crashed is waited for ``crash_grace_s`` more: the deployment's automation reschedules crashed nights."""
    deadline = time.monotonic() + timeout_s
    states: dict[UUID, str] = {}
    crashed_at: dict[UUID, float] = {}
    with get_client(sync_client=True) as client:
        while len(states) < len(ids) and time.monotonic() < deadline:
            for run_id in ids:
                state = client.read_flow_run(run_id).state
                if run_id in states or state is None or not state.is_final():
                    crashed_at.pop(run_id, None)
                    continue
                if (
                    state.is_crashed()
                    and time.monotonic() - crashed_at.setdefault(run_id, time.monotonic()) < crash_grace_s
                ):
                    continue
                states[run_id] = state.type.value
            if len(states) < len(ids):
                time.sleep(poll_s)
    return [states.get(i, "TIMEOUT") for i in ids]


@flow(name="nightly-scale-out")
def nightly_scale_out(settings: ScaleOutSettings) -> RunSummary:
    """Run one night as ``settings.shards`` child flow runs of ``settings.deployment``."""
    log = get_run_logger()
    started = now()
    attempt = flow_run.get_id() or uuid.uuid4().hex
    run_id = settings.nightly.resolved_run_id()
    night = settings.nightly.model_copy(update={"run_id": run_id})
    plan = shard_task(night, settings.shards)
    parts = [f"shard-{i:02d}" for i in range(len(plan.shards))]
    children = []
    for part, manifest in zip(parts, plan.shards, strict=True):
        shard = night.model_copy(update={
            "manifest": manifest, "run_id": run_id, "part": part, "render": None, "export_storystream": False,
            "image_roots": [*night.image_roots, plan.image_root],  # the shard's absolute image paths lead there
        })  # fmt: skip
        children.append(
            run_deployment(
                settings.deployment,
                parameters={"settings": shard.model_dump(mode="json")},
                flow_run_name=f"{run_id}-{part}",
                timeout=0,  # submit all shards first, then wait
                idempotency_key=f"{attempt}-{part}",
            )
        )
        log.info("submitted %s as flow run %s", part, children[-1].id)
    states = _wait_all([c.id for c in children], settings.shard_timeout_s, settings.poll_seconds,
                       settings.crash_grace_s)  # fmt: skip
    summary = merge_task(night, plan, parts, states, attempt, started)
    if night.render is not None:
        render_task(night)
    if night.export_storystream:
        export_task(night)
    put_model(night.open_store(), RunKeys(run_id).summary(), summary)
    create_markdown_artifact(summary_markdown(summary), key=artifact_key("scale-out", run_id), description="Night")
    log.info("run %s over %d shards: %d completed, %d failed", run_id, len(parts), len(summary.completed),
             len(summary.failed))  # fmt: skip
    return summary
