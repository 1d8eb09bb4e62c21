"""Per-step metrics: a CSV and a JSON-lines file written as training runs, and a PNG loss plot at the end."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append one row per optimiser step to ``metrics.csv`` and ``metrics.jsonl`` in ``directory``.

    On resume (``keep_until`` = the resumed step) rows written after that step by the interrupted run are
    dropped, so the files read as one uninterrupted run.

    Example::

        log = MetricsLog("runs/s2")
        log.append({"step": 1, "loss": 2.3, "lr": 1e-5})
        log.plot()  # runs/s2/loss.png
    """

    def __init__(self, directory: str | Path, keep_until: int = 0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.directory / "metrics.jsonl"
        self.csv = self.directory / "metrics.csv"
        self.png = self.directory / "loss.png"
        self.rows: list[dict[str, Any]] = []
        if self.jsonl.is_file():
            old = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
            self.rows = [r for r in old if r["step"] <= keep_until]
        self._rewrite()

    def _rewrite(self) -> None:
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self.csv.write_text("")
        if self.rows:
            with self.csv.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)

    def append(self, row: dict[str, Any]) -> None:
        if self.rows and list(row) != list(self.rows[0]):
            raise ValueError(f"metric columns changed: {list(self.rows[0])} -> {list(row)}")
        first = not self.rows
        self.rows.append(row)
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        with self.csv.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if first:
                writer.writeheader()
            writer.writerow(row)

    def plot(self, title: str = "") -> Path:
        """Every ``*loss`` column against the step, on a log axis; returns the PNG path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        steps = [r["step"] for r in self.rows]
        for key in [k for k in (self.rows[0] if self.rows else {}) if k.endswith("loss")]:
            ax.plot(steps, [r[key] for r in self.rows], label=key)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.set_title(title)
        if self.rows:
            ax.legend()
        fig.tight_layout()
        fig.savefig(self.png, dpi=100)
        plt.close(fig)
        return self.png
