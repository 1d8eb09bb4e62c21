"""What a training run did (``summary.json`` beside its outputs in the store), and that as Markdown."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TrainSummary(BaseModel):
    """What a training flow did and where its outputs are (also ``summary.json`` beside them in the store)."""

    stage: str
    run_name: str
    store: str
    prefix: str = Field(description="the run's key prefix in the store: training/{stage}/{run_name}")
    steps: int
    max_steps: int
    resumed_from: int | None = Field(description="step of the checkpoint this invocation resumed from")
    new_steps: int = Field(description="optimiser steps run by the invocation that wrote this summary")
    final_loss: float | None
    final_weights: str = Field(description="URI of the final checkpoint folder (readable by load_components)")
    metrics: str = Field(description="URI of metrics.csv")
    seconds: float
    finished_at: datetime
    model_version: str | None = Field(None, description="name@version_id registered from the final weights")
    promoted: bool | None = Field(None, description="whether the alias moved to it (None: not published)")
    gate: list[str] | None = Field(None, description="the gate's reasons, when it ran")


def summary_markdown(summary: TrainSummary) -> str:
    loss = "n/a" if summary.final_loss is None else f"{summary.final_loss:.4f}"
    resumed = "no (step 0)" if summary.resumed_from is None else f"from step {summary.resumed_from}"
    rows = [
        ("steps", f"{summary.steps} / {summary.max_steps} ({summary.new_steps} this run)"),
        ("resumed", resumed),
        ("final loss", loss),
        ("final weights", f"`{summary.final_weights}`"),
        ("metrics", f"`{summary.metrics}`"),
        ("seconds", f"{summary.seconds:.1f}"),
    ]
    if summary.model_version is not None:
        rows.append(("registered", f"`{summary.model_version}`, {'promoted' if summary.promoted else 'not promoted'}"))
    rows += [("gate", reason) for reason in summary.gate or []]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"# {summary.stage}: {summary.run_name}\n\n| | |\n|---|---|\n{table}\n"
