"""Flow parameters as pydantic models, so Prefect validates them and the UI shows their schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from seed_story.batch.pipelines import ModelSpec
from seed_story.generation.settings import InputLimits
from seed_story.render.pdf import PrintSettings
from seed_story.storage import ObjectStore, open_store
from tasks.common import StoreSettings


class RenderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    formats: list[Literal["html", "pdf", "epub"]] = Field(default_factory=lambda: ["html", "pdf"])
    print_settings: PrintSettings = PrintSettings()
    self_contained: bool = False


class NightlySettings(StoreSettings):
    """One night's generation: which manifest, which store, which model, how big the micro-batches are."""

    manifest: str = Field(description="JSONL/CSV/Parquet manifest: a local path or s3:// URI")
    image_roots: list[str] = Field(
        default_factory=list,
        description="folders or s3:// prefixes besides the manifest's folder that opening images may come from",
    )
    model: ModelSpec
    run_id: str | None = Field(default=None, description="default: today's UTC date, YYYY-MM-DD")
    part: str | None = Field(default=None, description="name of this shard of a scaled-out run")
    encode_batch_size: int = Field(default=16, ge=1, description="opening pictures per tokenizer task")
    write_batch_size: int = Field(default=8, ge=1, description="stories per MLLM task (written as one batch)")
    draw_batch_size: int = Field(default=16, ge=1, description="pictures per de-tokenizer task, across stories")
    limits: InputLimits = Field(
        default_factory=InputLimits, description="what one story may bring (text length, tokens, picture size)"
    )
    registry: str | None = Field(
        default=None, description="store holding models/ for a models:// model (default: this run's store)"
    )
    model_cache: str = Field(default="~/.cache/seed-story/models", description="where workers keep fetched versions")
    max_attempts: int = Field(
        default=3, ge=1, description="attempts of one flow run (a crashed night is rescheduled) before it gives up"
    )
    lease_seconds: float = Field(
        default=60.0, gt=0, description="a run silent this long loses its stories to another (seed_story.batch.leases)"
    )
    render: RenderOptions | None = Field(default_factory=RenderOptions, description="None: no books this run")
    export_storystream: bool = True

    def open_registry_store(self) -> ObjectStore:
        return open_store(self.registry, self.s3) if self.registry else self.open_store()

    def resolved_run_id(self) -> str:
        """``run_id``, else the UTC date the flow run was scheduled for (a retry after midnight keeps the id)."""
        if self.run_id:
            return self.run_id
        scheduled = flow_run.scheduled_start_time if flow_run.get_id() else None
        return (scheduled or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")
