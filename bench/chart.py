"""Draw bench/results/*.json as a PNG: one panel per scenario, a bar per queue.

Runs in bench/venvs/report (matplotlib), started by bench.py:
    python bench/chart.py results.json results.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PANELS = {
    "latency": ("p50_ms", "enqueue-to-start p50, ms (lower is better)"),
    "mixed": ("p99_ms", "mixed load p99, ms (lower is better)"),
}


def main(src: str, dst: str) -> None:
    """Read the results, write the chart."""
    data: dict[str, Any] = json.loads(Path(src).read_text())
    scenarios = data["scenarios"]
    results: dict[str, dict[str, Any]] = data["results"]
    cols = 2
    rows = (len(scenarios) + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.2 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        key = scenario["key"]
        metric, title = PANELS.get(key, ("jobs_per_s", f"{scenario['label']}, jobs/s"))
        names, values = [], []
        for peer, by_scenario in results.items():
            value = (by_scenario.get(key, {}).get("median") or {}).get(metric)
            if value is not None:
                names.append(peer)
                values.append(value)
        # pgjobs in blue, the queues in grey, and the two rows of plain SQL (pgjobs' own
        # statements, and the floor) in a lighter grey: they are bounds, not queues.
        colors = [
            "#1f6feb" if n == "pgjobs" else "#d0d7de" if "SQL" in n else "#9aa4ad" for n in names
        ]
        ax.barh(names[::-1], values[::-1], color=colors[::-1])
        for y, v in enumerate(values[::-1]):
            ax.text(v, y, f" {v:,.0f}" if v >= 100 else f" {v:.1f}", va="center", fontsize=8)
        if key in PANELS:
            ax.set_xscale("log")  # latencies span milliseconds to seconds
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.margins(x=0.18)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    fig.suptitle(data["header"], fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
