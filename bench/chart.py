"""Draw bench/results/*.json as a PNG: one panel per scenario, a bar per queue.

The production scenarios' report is drawn apart: jobs run per sample (30 s) under the held
horizon, a line per queue, and the backlog rates, small against large.

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


# pgjobs in blue, each other queue in a colour of its own.
COLORS = {
    "pgjobs": "#1f6feb",
    "pgqueuer": "#bf8700",
    "procrastinate": "#cf222e",
    "chancy": "#2da44e",
    "oban": "#8250df",
}


def color(name: str) -> str:
    """The queue's colour in the production chart."""
    return COLORS.get(name, "#57606a")


def buffers(ax: Any, runs: dict[str, dict[str, Any]]) -> None:
    """A held horizon's claim cost: shared buffers the claim statements read per job run."""
    if not runs:
        ax.set_visible(False)
        return
    first = next(iter(runs.values()))
    width = first["bucket_s"]
    hold_from, hold_until = first["hold"]
    ax.axvspan(hold_from, hold_until, color="#f2cc60", alpha=0.25, label="snapshot held")
    for peer, r in sorted(runs.items(), key=lambda item: item[0] == "pgjobs"):
        ys = r.get("claim_buffers_per_job") or []
        points = [((i + 1) * width, y) for i, y in enumerate(ys) if y is not None]
        if points:
            xs, vals = zip(*points, strict=True)
            ax.plot(xs, vals, marker="o", ms=3, label=peer, color=color(peer))
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the run (end of each sample)")
    ax.set_ylabel("claim buffers per job (log)")
    ax.set_title("buffers the claim statements read per job run", fontsize=10)
    ax.legend(fontsize=8)
    ax.tick_params(labelsize=8)


def production(data: dict[str, Any], dst: str) -> None:
    """The held horizon's series and the backlog rates."""
    results: dict[str, dict[str, Any]] = data["results"]
    keys = [s["key"] for s in data["scenarios"]]
    labels = {s["key"]: s["label"] for s in data["scenarios"]}
    # A column per scenario; under each held horizon, its claims' buffers per job.
    fig, grid = plt.subplots(2, len(keys), figsize=(7 * len(keys), 8.4), squeeze=False)
    for ax, below, key in zip(grid[0], grid[1], keys, strict=True):
        runs = {p: e[key]["runs"][0] for p, e in results.items() if e.get(key, {}).get("runs")}
        if not key.startswith("horizon"):
            below.set_visible(False)
        else:
            buffers(below, runs)
        if key.startswith("horizon") and runs:
            first = next(iter(runs.values()))
            width = first["bucket_s"]
            hold_from, hold_until = first["hold"]
            ax.axvspan(hold_from, hold_until, color="#f2cc60", alpha=0.25, label="snapshot held")
            offered = first["offered_per_s"] * width
            ax.axhline(offered, color="#57606a", ls="--", lw=1, label="offered")
            # pgjobs drawn last, on top: queues that keep up all lie on the offered line.
            for peer, r in sorted(runs.items(), key=lambda item: item[0] == "pgjobs"):
                series = r["series"]
                # The run, and after it the drain while a backlog is still being worked off
                # (not the last few jobs: a partial sample would read as a collapse).
                last = int(r["duration"] // width) - 1
                while last + 1 < len(series) and series[last + 1] > offered / 10:
                    last += 1
                xs = [(i + 1) * width for i in range(last + 1)]
                ax.plot(xs, series[: last + 1], marker="o", ms=3, label=peer, color=color(peer))
            ax.set_xlabel("seconds into the run (end of each sample)")
            ax.set_ylabel(f"jobs run per {width:g} s")
            ax.set_title(f"{labels[key]}: jobs run per sample", fontsize=10)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8)
        elif key == "backlog" and runs:
            names = list(runs)
            ys = range(len(names))
            small = [runs[n]["small_per_s"] for n in names]
            large = [runs[n]["large_per_s"] for n in names]
            ax.barh([y + 0.2 for y in ys], small, height=0.4, color="#9aa4ad", label="small")
            ax.barh([y - 0.2 for y in ys], large, height=0.4, color="#1f6feb", label="large")
            for y, n in enumerate(names):
                ax.text(
                    large[y],
                    y - 0.2,
                    f" {large[y]:,.0f} ({runs[n]['ratio']:.2f}x)",
                    va="center",
                    fontsize=8,
                )
                ax.text(small[y], y + 0.2, f" {small[y]:,.0f}", va="center", fontsize=8)
            ax.set_yticks(list(ys), names)
            ax.invert_yaxis()
            first = next(iter(runs.values()))
            ax.set_title(
                f"one worker draining a backlog of {first['large']['backlog']:,} "
                f"(blue) and {first['small']['backlog']:,} (grey), jobs/s",
                fontsize=10,
            )
            ax.margins(x=0.25)
            ax.legend(fontsize=8, loc="lower right")
        ax.tick_params(labelsize=8)
    fig.suptitle(data["header"], fontsize=8, wrap=True)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


def main(src: str, dst: str) -> None:
    """Read the results, write the chart."""
    data: dict[str, Any] = json.loads(Path(src).read_text())
    if data.get("production"):
        production(data, dst)
        return
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
