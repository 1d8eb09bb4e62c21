"""A run summary as Markdown (the Prefect artifact, and what `seed-story generate` prints)."""

from __future__ import annotations

from seed_story.batch.records import RunSummary


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
    if summary.bad_rows:
        lines += ["", "## Bad manifest rows (skipped)", "", "| line | story | reason |", "|---:|---|---|"]
        lines += [f"| {p.line} | {_cell(p.story_id or '')} | {_cell(p.reason)} |" for p in summary.bad_rows]
    return "\n".join(lines) + "\n"
