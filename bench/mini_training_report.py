"""Loss curves and wall times of the SEED-Story-Mini training runs (runs/mini/*/metrics.csv).

Writes loss_curves.png and training.json (steps, minutes, first/last loss and device per stage). A run trained
on another machine says so in its final checkpoint's metadata (``trained_on``).

.venv/bin/python bench/mini_training_report.py [--runs runs/mini] [--out models/seed-story-mini]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STAGES = ("vision", "vae", "stage1", "stage2_captions", "stage2", "stage2_late", "stage2_anneal", "stage3")


def _device(run: Path, machine: str) -> str:
    """Where a run trained: its final checkpoint's ``trained_on`` metadata (set for runs made elsewhere)."""
    manifest = run / "final" / "seed_story.json"
    metadata = json.loads(manifest.read_text()).get("metadata", {}) if manifest.is_file() else {}
    return str(metadata.get("trained_on", machine))


def _rows(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs/mini"))
    parser.add_argument("--out", type=Path, default=Path("models/seed-story-mini"))
    args = parser.parse_args()
    stages = [s for s in STAGES if (args.runs / s / "metrics.csv").is_file()]
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3), squeeze=False)
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}"
    summary: dict = {"machine": machine, "stages": {}}
    for ax, stage in zip(axes[0], stages, strict=True):
        rows = _rows(args.runs / stage / "metrics.csv")
        steps = [r["step"] for r in rows]
        ax.plot(steps, [r["loss"] for r in rows], lw=0.8, label="loss")
        for extra in ("lm_loss", "rec_loss"):
            if extra in rows[0]:
                ax.plot(steps, [r[extra] for r in rows], lw=0.8, label=extra)
        ax.set_yscale("log")
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        tail = rows[-50:]
        summary["stages"][stage] = {
            "steps": int(steps[-1]),
            "minutes": round(sum(r["seconds"] for r in rows) / 60, 1),
            "first_loss": round(rows[0]["loss"], 4),
            "last_loss_mean50": round(sum(r["loss"] for r in tail) / len(tail), 4),
            "device": _device(args.runs / stage, machine),
        }
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "loss_curves.png", dpi=110)
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
