"""Run summaries: the shards' summaries merged into one, and a summary as Markdown (the Prefect artifact)."""

from __future__ import annotations

from seed_story.batch.shards import ShardPlan
from seed_story.runstore.keys import RunKeys
from seed_story.runstore.records import RunSummary, StoryFailure, now
from seed_story.storage import ObjectStore, get_model


def _cell(text: str) -> str:
    # Markdown table cells: user text must not break the table or inject markup.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def summary_markdown(summary: RunSummary) -> str:
    """Counts, failures, bad rows and stage timings of one run attempt."""
    total = sum(summary.seconds.values())
    lines = [
        f"# Run `{summary.run_id}`",
        "",
        f"Manifest `{_cell(summary.manifest)}`, model `{summary.model_version}`, attempt `{summary.attempt}`.",
        "",
        "| stories | count |",
        "|---|---:|",
        f"| manifest rows | {summary.rows} |",
        f"| completed now | {len(summary.completed)} |",
        f"| finished before (skipped) | {len(summary.skipped_finished)} |",
        f"| failed | {len(summary.failed)} |",
        f"| left to another live attempt | {len(summary.leased_elsewhere)} |",
        f"| bad manifest rows | {len(summary.bad_rows)} |",
        f"| steps written (resumed from store) | {summary.steps_written} ({summary.steps_resumed}) |",
        f"| pictures drawn | {summary.pictures_drawn} |",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *(f"| {stage} | {s:.1f} |" for stage, s in summary.seconds.items()),
        f"| total | {total:.1f} |",
    ]
    if summary.failed:
        lines += ["", "## Failed stories", "", "| story | stage | reason |", "|---|---|---|"]
        lines += [f"| {_cell(f.story_id)} | {f.stage} | {_cell(f.reason)} |" for f in summary.failed]
    if summary.leased_elsewhere:
        lines += ["", "## Held by another live attempt (left to it)", "", "| story | attempt |", "|---|---|"]
        lines += [f"| {_cell(story)} | {_cell(holder)} |" for story, holder in summary.leased_elsewhere.items()]
    if summary.bad_rows:
        lines += ["", "## Bad manifest rows (skipped)", "", "| line | story | reason |", "|---:|---|---|"]
        lines += [f"| {p.line} | {_cell(p.story_id or '')} | {_cell(p.reason)} |" for p in summary.bad_rows]
    return "\n".join(lines) + "\n"


def merge_summaries(
    store: ObjectStore, plan: ShardPlan, parts: list[str], states: list[str], *, run_id: str, attempt: str,
    manifest: str, started: str,
) -> RunSummary:  # fmt: skip
    """One summary of a scaled-out run from its shards' summaries; a shard that left none fails its stories.

    ``states`` are the shards' final states (``"COMPLETED"`` or another), in ``parts`` order.
    """
    found: list[RunSummary] = []
    failed: list[StoryFailure] = []
    for part, state, ids in zip(parts, states, plan.story_ids, strict=True):
        key = RunKeys(run_id).summary(part)
        if state != "COMPLETED" or not store.exists(key):
            reason = f"shard {part} ended as {state} without a summary"
            failed += [StoryFailure(story_id=s, stage="shard", reason=reason) for s in ids]
        else:
            found.append(get_model(store, key, RunSummary))
    seconds: dict[str, float] = {}
    for s in found:
        for stage, sec in s.seconds.items():
            seconds[f"{stage} (sum over shards)"] = seconds.get(f"{stage} (sum over shards)", 0.0) + sec
    return RunSummary(
        run_id=run_id,
        attempt=attempt,
        manifest=manifest,
        model_version=next((s.model_version for s in found), ""),
        started_at=started,
        finished_at=now(),
        rows=plan.rows,
        bad_rows=plan.bad_rows,
        skipped_finished=[x for s in found for x in s.skipped_finished],
        completed=[x for s in found for x in s.completed],
        failed=[x for s in found for x in s.failed] + failed,
        leased_elsewhere={k: v for s in found for k, v in s.leased_elsewhere.items()},
        steps_written=sum(s.steps_written for s in found),
        steps_resumed=sum(s.steps_resumed for s in found),
        pictures_drawn=sum(s.pictures_drawn for s in found),
        seconds=seconds,
    )
