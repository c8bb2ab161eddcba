"""Benchmark pgjobs against its peers, side by side, in one run on one machine.

    .venv/bin/python bench/bench.py [--quick] [--peers pgjobs,pgqueuer] [--runs 3]
    .venv/bin/python bench/bench.py --scenarios backlog,horizon [--quick]

Each peer runs in its own virtualenv under bench/venvs/ (created here on first
use from the pinned requirements below), against the same Postgres (the local
server, or --url / $PGJOBS_BENCH_URL) and Redis (--redis). Every scenario is
run `--runs` times per peer, interleaved, and the median is reported. Writes
bench/results/{latest,quick}.{md,json,png}.

The production scenarios (`backlog`, `horizon`) run only when named, for the
Postgres queues, each run on a private cluster started for it (bench/cluster.py),
never on the shared server; they write bench/results/production[-quick].*.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql as psql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import SETTINGS, Cluster

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / "venvs"
RESULTS = ROOT / "bench" / "results"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379"


@dataclass(frozen=True)
class PeerSpec:
    """A queue under test: how to install it and where it keeps its jobs."""

    name: str
    module: str
    requirements: tuple[str, ...] = ()  # empty: runs in the project's own .venv
    backend: str = "postgres"  # or "redis"
    redis_db: int = 0
    min_python: tuple[int, int] = (3, 11)
    scenarios: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {"bulk", "single", "process1", "process4", "sleep", "latency", "mixed"} | PRODUCTION
        )
    )
    env: tuple[tuple[str, str], ...] = ()  # for the adapter and the workers it starts

    @property
    def venv(self) -> str:
        """The name of its virtualenv (and of its database on the shared server)."""
        return self.module.rsplit(".", 1)[1].removesuffix("_peer")

    def runs(self, scenario: Scenario) -> bool:
        """Whether it takes part in the scenario (production ones: Postgres queues only)."""
        if family(scenario.key) in PRODUCTION and self.backend != "postgres":
            return False
        return scenario.key in self.scenarios or family(scenario.key) in self.scenarios


# Set by --pgjobs-rev: a folder with that commit's pgjobs/, sql/ and alembic/.
PGJOBS_TREE: Path | None = None


def export_pgjobs(rev: str) -> tuple[Path, str]:
    """pgjobs as committed at `rev`, exported to a temporary folder; the folder and the hash."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix="pgjobs-bench-tree-"))
    archive = subprocess.run(
        ["git", "archive", commit, "pgjobs", "sql", "alembic"], cwd=ROOT, capture_output=True
    )
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree, commit


# Scenarios run on a private cluster, only when named, for the Postgres queues. A name selects
# every scenario whose key starts with it and a dash: "horizon" is the four held horizons.
PRODUCTION = frozenset({"backlog", "horizon"})


def family(key: str) -> str:
    """A scenario key's family: "horizon" for "horizon-1500x4"."""
    return key.split("-")[0]


PEERS = [
    PeerSpec("pgjobs", "bench.peers.pgjobs_peer"),
    # pgjobs' worker at its default log level, which writes two lines per job: the ratio
    # of large to small backlog at both levels.
    PeerSpec(
        "pgjobs (log INFO)",
        "bench.peers.pgjobs_peer",
        scenarios=frozenset({"backlog"}),
        env=(("BENCH_PGJOBS_LOG_LEVEL", "INFO"),),
    ),
    PeerSpec(
        "pgjobs SQL alone",
        "bench.peers.pgjobs_sql_peer",
        scenarios=frozenset({"bulk", "single"}),
    ),
    PeerSpec(
        "postgres (bare SQL)",
        "bench.peers.bare_peer",
        scenarios=frozenset({"bulk", "single", "process1"}),
    ),
    PeerSpec(
        "pgqueuer",
        "bench.peers.pgqueuer_peer",
        ("pgqueuer==1.6.0", "asyncpg==0.32.0", "psycopg[binary]==3.3.9"),
    ),
    PeerSpec(
        "procrastinate",
        "bench.peers.procrastinate_peer",
        ("procrastinate==3.10.0", "psycopg[binary]==3.3.9"),
    ),
    PeerSpec("chancy", "bench.peers.chancy_peer", ("chancy==0.26.0", "psycopg[binary]==3.3.9")),
    PeerSpec("oban", "bench.peers.oban_peer", ("oban==0.7.0",), min_python=(3, 12)),
    PeerSpec("celery", "bench.peers.celery_peer", ("celery[redis]==5.7.0",), "redis", redis_db=1),
    PeerSpec("rq", "bench.peers.rq_peer", ("rq==3.0.0",), "redis", redis_db=2),
    PeerSpec(
        "dramatiq", "bench.peers.dramatiq_peer", ("dramatiq[redis]==2.2.1",), "redis", redis_db=3
    ),
]
CHART_REQUIREMENTS = ("matplotlib==3.11.2",)


@dataclass(frozen=True)
class Scenario:
    """One row of the report: the common driver's scenario and its arguments."""

    key: str
    label: str
    driver: str
    args: tuple[str, ...]
    metrics: tuple[str, ...] = ("jobs_per_s",)
    # Production scenarios: each (name, extra args) is run on a cluster of its own and the
    # results are kept under that name; none: one run.
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ()


def scenarios(quick: bool) -> list[Scenario]:
    """The scenarios, smaller with --quick."""
    n = 5_000 if quick else 20_000
    return [
        Scenario("bulk", "bulk enqueue", "bulk", ("--count", "20000" if quick else "50000")),
        Scenario("single", "single enqueue", "single", ("--count", "500" if quick else "2000")),
        Scenario(
            "process1",
            f"process {n:,} no-ops, 1 process",
            "process",
            ("--count", str(n), "--workers", "1", "--timeout", "60" if quick else "120"),
        ),
        Scenario(
            "process4",
            f"process {n:,} no-ops, 4 processes",
            "process",
            ("--count", str(n), "--workers", "4", "--timeout", "60" if quick else "120"),
        ),
        Scenario(
            "sleep",
            f"process {500 if quick else 2000:,} jobs of 10 ms",
            "sleep",
            ("--count", "500" if quick else "2000", "--timeout", "120"),
        ),
        Scenario(
            "latency",
            "enqueue-to-start latency, idle",
            "latency",
            ("--count", "50" if quick else "200"),
            ("p50_ms", "p99_ms"),
        ),
        Scenario(
            "mixed",
            "mixed load, 500 jobs/s offered",
            "mixed",
            ("--duration", "10" if quick else "60", "--rate", "500"),
            ("p50_ms", "p99_ms", "backlog_max", "offered_per_s"),
        ),
        *production_scenarios(quick),
    ]


def production_scenarios(quick: bool) -> list[Scenario]:
    """A large backlog, and a held xmin horizon; on a private cluster, autovacuum on."""
    small, large = (20_000, 100_000) if quick else (60_000, 1_000_000)
    warmup, measure, bound = (2_000, 10_000, 30) if quick else (5_000, 50_000, 120)
    duration, hold, bucket, drain = (90, (15, 75), 10, 30) if quick else (720, (60, 660), 30, 60)
    return [
        Scenario(
            "backlog",
            f"backlog {large:,} vs {small:,}",
            "backlog",
            ("--warmup", str(warmup), "--measure", str(measure), "--timeout", str(bound)),
            ("small_per_s", "large_per_s", "ratio"),
            variants=(("small", ("--count", str(small))), ("large", ("--count", str(large)))),
        ),
        *(
            Scenario(
                f"horizon-{rate}" + (f"x{workers}" if workers > 1 else ""),
                f"held horizon, {rate:,} jobs/s to {workers} worker process"
                f"{'es' if workers > 1 else ''} for {duration} s, snapshot {hold[0]}-{hold[1]} s",
                "horizon",
                (
                    *("--rate", str(rate), "--workers", str(workers)),
                    *("--duration", str(duration), "--bucket", str(bucket)),
                    *("--hold-from", str(hold[0]), "--hold-until", str(hold[1])),
                    *("--drain", str(drain)),
                ),
                HORIZON_METRICS,
            )
            for workers in (1, 4)
            for rate in (300, 1500)
        ),
    ]


HORIZON_METRICS = (
    "claim_buffers_per_job_held_first",
    "claim_buffers_per_job_held_last",
    "kept_held",
    "kept_run",
    "p50_ms",
    "p99_ms",
    "backlog_max",
    "dead_rows_release",
    "claim_index_bytes_release",
    "claim_index_bytes_end",
    "table_bytes_release",
    "table_bytes_end",
)


# -- virtualenvs -------------------------------------------------------------------------


def find_python(at_least: tuple[int, int]) -> str | None:
    """A Python interpreter of at least that version on this machine."""
    if sys.version_info[:2] >= at_least:
        return sys.executable
    names = [f"python3.{minor}" for minor in range(at_least[1], 16)]
    candidates = [shutil.which(n) for n in names]
    pyenv = Path.home() / ".pyenv" / "versions"
    if pyenv.is_dir():
        candidates += [str(p / "bin" / "python3") for p in sorted(pyenv.iterdir(), reverse=True)]
    for path in filter(None, candidates):
        out = subprocess.run(
            [path, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0 and tuple(map(int, out.stdout.split())) >= at_least:
            return path
    return None


def ensure_venv(name: str, requirements: tuple[str, ...], min_python: tuple[int, int]) -> Path:
    """bench/venvs/<name> with exactly these pins, made once; raises RuntimeError if it cannot."""
    venv = VENVS / name
    digest = hashlib.sha1(" ".join(requirements).encode()).hexdigest()[:12]
    stamp = venv / f".pins-{digest}"
    python = venv / "bin" / "python"
    if stamp.exists() and python.exists():
        return python
    base = find_python(min_python)
    if base is None:
        raise RuntimeError(f"needs Python {'.'.join(map(str, min_python))} or newer, none found")
    print(f"installing {name} into {venv} ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    out = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"pip install failed: {out.stderr.strip()[-500:]}")
    stamp.touch()
    return python


# -- running -------------------------------------------------------------------------------


def database_url(admin: str, spec: PeerSpec, prefix: str = "bench_") -> str:
    """A fresh database of the peer's own on the shared server."""
    name = prefix + spec.module.rsplit(".", 1)[1].removesuffix("_peer")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
        )
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    if admin.startswith(("postgresql://", "postgres://")):
        # A URL stays a URL: asyncpg (pgqueuer) takes no key=value strings.
        return urlsplit(admin)._replace(path=f"/{name}").geturl()
    info = psycopg.conninfo.conninfo_to_dict(admin)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def drop_database(admin: str, url: str) -> None:
    """Drop a peer's database again."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(str(name)))
        )


def run_once(
    python: Path,
    spec: PeerSpec,
    scenario: Scenario,
    pg_url: str,
    redis_url: str,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One scenario, once, in the peer's own interpreter; the RESULT it printed."""
    cmd = [str(python), "-m", spec.module, scenario.driver, *scenario.args, *extra]
    cmd += ["--pg-url", pg_url, "--redis-url", redis_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **dict(spec.env)}
    cwd = ROOT
    if PGJOBS_TREE and spec.module.startswith("bench.peers.pgjobs"):
        # pgjobs from a commit's tree: first on the path, and the folder the processes
        # start in (`python -m` puts that first); the harness still comes from ROOT.
        cwd = PGJOBS_TREE
        env.update(PYTHONPATH=f"{PGJOBS_TREE}{os.pathsep}{ROOT}", BENCH_ROOT=str(PGJOBS_TREE))
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"exit {out.returncode}: {' | '.join(tail)}")


def run_private(python: Path, spec: PeerSpec, scenario: Scenario) -> dict[str, Any]:
    """A production scenario: each variant on a fresh private cluster, in a database of its own."""
    parts: dict[str, dict[str, Any]] = {}
    for name, extra in scenario.variants or (("", ()),):
        with Cluster() as cluster:
            url = cluster.create_database(f"bench_{spec.venv}")
            result = run_once(python, spec, scenario, url, "", extra)
            result["server"] = cluster.version()
        if not name:
            return result
        parts[name] = result
    small, large = parts["small"], parts["large"]
    return {
        **parts,
        "small_per_s": small["jobs_per_s"],
        "large_per_s": large["jobs_per_s"],
        "ratio": large["jobs_per_s"] / small["jobs_per_s"],
        "server": large["server"],
        "version": large.get("version", ""),
        "config": large.get("config", ""),
    }


def median_of(runs: list[dict[str, Any]], metric: str) -> float | None:
    """The median of one metric over the runs that have it."""
    values = [r[metric] for r in runs if r.get(metric) is not None]
    return statistics.median(values) if values else None


# -- report --------------------------------------------------------------------------------


def fmt(metric: str, value: float | None) -> str:
    """A number as the table shows it."""
    if value is None:
        return "-"
    if metric.endswith("_ms"):
        return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if metric in ("backlog_max", "dead_rows_release"):
        return f"{value:,.0f}"
    if metric == "ratio":
        return f"{value:.2f}x"
    if metric.startswith("claim_buffers"):
        return per_job(value)
    if metric.startswith("kept_"):
        return pct(value)
    if metric.endswith("_bytes_release") or metric.endswith("_bytes_end"):
        return mb(value)
    return f"{value:,.0f}/s"


def cell(entry: dict[str, Any], scenario: Scenario) -> str:
    """One table cell: the median, or why there is none."""
    if "error" in entry:
        return f"failed: {entry['error'][:60]}"
    if "skipped" in entry:
        return "n/a"
    m = entry["median"]
    if scenario.key == "latency":
        return f"{fmt('p50_ms', m['p50_ms'])} / {fmt('p99_ms', m['p99_ms'])}"
    if scenario.key == "mixed":
        return (
            f"{fmt('p50_ms', m['p50_ms'])} / {fmt('p99_ms', m['p99_ms'])}, "
            f"backlog ≤ {fmt('backlog_max', m['backlog_max'])}"
        )
    text = fmt("jobs_per_s", m["jobs_per_s"])
    if not all(r.get("complete", True) for r in entry["runs"]):
        text += " (timed out)"
    return text


def report(
    results: dict[str, dict[str, dict[str, Any]]], chosen: list[Scenario], header: str
) -> str:
    """The markdown table: a row per peer, a column per scenario."""
    lines = [header, ""]
    lines.append("| queue | " + " | ".join(s.label for s in chosen) + " |")
    lines.append("|---|" + "---:|" * len(chosen))
    for peer, by_scenario in results.items():
        cells = [cell(by_scenario.get(s.key, {"skipped": True}), s) for s in chosen]
        lines.append(f"| {peer} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Configurations:")
    lines.append("")
    for peer, by_scenario in results.items():
        for entry in by_scenario.values():
            if entry.get("runs"):
                r = entry["runs"][0]
                lines.append(f"- {peer} {r.get('version', '')}: {r.get('config', '')}")
                break
    return "\n".join(lines) + "\n"


def mb(value: float | None) -> str:
    """Bytes as MB."""
    return "-" if value is None else f"{value / 1e6:,.1f} MB"


def pct(value: float | None) -> str:
    """A share as a percentage."""
    return "-" if value is None else f"{value * 100:.1f} %"


def production_report(
    results: dict[str, dict[str, dict[str, Any]]], chosen: list[Scenario], header: str
) -> str:
    """The production scenarios' tables: a row per queue, a column per measure."""
    lines = [header, ""]
    for scenario in chosen:
        rows = {p: e[scenario.key] for p, e in results.items() if scenario.key in e}
        lines += [f"### {scenario.label}", ""]
        if scenario.key == "backlog":
            lines.append(
                "| queue | small backlog | large backlog | large / small | "
                "filling the large backlog | VACUUM ANALYZE |"
            )
            lines.append("|---|---:|---:|---:|---|---:|")
        else:
            lines.append(
                "| queue | kept, held window | kept, whole run | pickup p50 / p99 | "
                "max backlog | claim buffers per job, first → last held sample | "
                "dead rows at release | claim index, release → end | "
                "job table, release → end |"
            )
            lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for peer, entry in rows.items():
            if "error" in entry or not entry.get("runs"):
                lines.append(f"| {peer} | failed: {entry.get('error', '?')[:80]} |")
                continue
            r = entry["runs"][0]
            if scenario.key == "backlog":
                small, large = r["small"], r["large"]
                cells = []
                for part in (small, large):
                    text = f"{part['jobs_per_s']:,.0f}/s"
                    if part.get("bounded_by_time"):
                        text += f" ({part['measured']:,} jobs in {part['measured_s']:.0f} s)"
                    cells.append(f"{part['backlog']:,}: {text}")
                how = "SQL copies of an API-made row" if large["fill"] == "fill()" else "bulk API"
                lines.append(
                    f"| {peer} | {cells[0]} | {cells[1]} | {r['ratio']:.2f} | "
                    f"{large['fill_s']:.0f} s, {how} | {large['vacuum_analyze_s']:.1f} s |"
                )
            else:
                lines.append(
                    f"| {peer} | {pct(r['kept_held'])} | {pct(r['kept_run'])} | "
                    f"{fmt('p50_ms', r['p50_ms'])} / {fmt('p99_ms', r['p99_ms'])} | "
                    f"{r['backlog_max']:,} | "
                    f"{per_job(r.get('claim_buffers_per_job_held_first'))} → "
                    f"{per_job(r.get('claim_buffers_per_job_held_last'))} | "
                    f"{r['dead_rows_release']:,} | "
                    f"{mb(r['claim_index_bytes_release'])} → {mb(r['claim_index_bytes_end'])} | "
                    f"{mb(r['table_bytes_release'])} → {mb(r['table_bytes_end'])} |"
                )
        if family(scenario.key) == "horizon":
            lines += ["", f"Jobs run per {rows_bucket(rows)} s (the chart's series):", ""]
            for peer, entry in rows.items():
                if entry.get("runs"):
                    series = entry["runs"][0]["series"]
                    lines.append(f"- {peer}: {', '.join(f'{n:,}' for n in series)}")
        lines.append("")
    lines.append("Configurations:")
    lines.append("")
    for peer, by_scenario in results.items():
        for entry in by_scenario.values():
            if entry.get("runs"):
                r = entry["runs"][0]
                lines.append(f"- {peer} {r.get('version', '')}: {r.get('config', '')}")
                break
    return "\n".join(lines) + "\n"


def per_job(value: float | None) -> str:
    """Buffers per job, as the table shows them."""
    return "-" if value is None else f"{value:,.1f}"


def rows_bucket(rows: dict[str, dict[str, Any]]) -> str:
    """The horizon's sample width, in seconds."""
    for entry in rows.values():
        if entry.get("runs"):
            return f"{entry['runs'][0]['bucket_s']:g}"
    return "?"


def chart(json_path: Path, png_path: Path) -> str:
    """Draw the PNG in a small virtualenv of its own (matplotlib is not a pgjobs dependency)."""
    try:
        python = ensure_venv("report", CHART_REQUIREMENTS, (3, 11))
    except RuntimeError as exc:
        return f"no chart: {exc}"
    out = subprocess.run(
        [str(python), str(ROOT / "bench" / "chart.py"), str(json_path), str(png_path)],
        capture_output=True,
        text=True,
    )
    return f"chart: {png_path}" if out.returncode == 0 else f"no chart: {out.stderr[-300:]}"


def main() -> None:
    """Run the comparison and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PGJOBS_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--redis", default=os.environ.get("PGJOBS_BENCH_REDIS", DEFAULT_REDIS))
    parser.add_argument("--quick", action="store_true", help="pgjobs and pgqueuer, small counts")
    parser.add_argument("--peers", help="comma-separated names (default: all)")
    parser.add_argument("--scenarios", help="comma-separated keys (default: all)")
    parser.add_argument("--runs", type=int, help="runs per scenario (default 3, 1 with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the report files")
    parser.add_argument("--no-chart", action="store_true", help="write no PNG")
    parser.add_argument(
        "--db-prefix", default="bench_", help="names of the peers' databases (default bench_)"
    )
    parser.add_argument(
        "--pgjobs-rev",
        help="run pgjobs as committed at this revision (e.g. HEAD), not the working tree's",
    )
    opts = parser.parse_args()
    global PGJOBS_TREE
    pgjobs_commit = "working tree"
    if opts.pgjobs_rev:
        PGJOBS_TREE, pgjobs_commit = export_pgjobs(opts.pgjobs_rev)
    # A SIGTERM unwinds, so a private cluster still running is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = scenarios(opts.quick)
    if opts.scenarios:
        named = opts.scenarios.split(",")
        chosen = [s for s in chosen if s.key in named or family(s.key) in named]
    else:
        chosen = [s for s in chosen if family(s.key) not in PRODUCTION]
    production = bool(chosen) and all(family(s.key) in PRODUCTION for s in chosen)
    wanted = opts.peers.split(",") if opts.peers else None
    if wanted is None and opts.quick and not production:
        wanted = ["pgjobs", "pgqueuer"]
    specs = [p for p in PEERS if wanted is None or p.name in wanted or p.name.split()[0] in wanted]
    specs = [p for p in specs if any(p.runs(s) for s in chosen)]
    runs = opts.runs or (1 if opts.quick or production else 3)

    results: dict[str, dict[str, dict[str, Any]]] = {p.name: {} for p in specs}
    ready: dict[str, tuple[Path, str, str]] = {}
    for spec in specs:
        try:
            python = (
                ensure_venv(spec.venv, spec.requirements, spec.min_python)
                if spec.requirements
                else Path(sys.executable)
            )
        except RuntimeError as exc:
            print(f"{spec.name}: not run: {exc}", flush=True)
            for s in chosen:
                results[spec.name][s.key] = {"error": f"not installed: {exc}"}
            continue
        # A database on the shared server only for the scenarios that run there.
        shared = any(spec.runs(s) and family(s.key) not in PRODUCTION for s in chosen)
        pg = database_url(opts.url, spec, opts.db_prefix) if shared else ""
        redis = f"{opts.redis.rstrip('/')}/{spec.redis_db}"
        ready[spec.name] = (python, pg, redis)

    started = time.monotonic()
    for scenario in chosen:
        for run in range(runs):
            for spec in specs:
                if spec.name not in ready or not spec.runs(scenario):
                    continue
                python, pg, redis = ready[spec.name]
                entry = results[spec.name].setdefault(scenario.key, {"runs": []})
                try:
                    if family(scenario.key) in PRODUCTION:
                        r = run_private(python, spec, scenario)
                    else:
                        r = run_once(python, spec, scenario, pg, redis)
                except (
                    RuntimeError,
                    subprocess.TimeoutExpired,
                    subprocess.CalledProcessError,
                ) as exc:
                    entry["error"] = str(exc)
                    print(f"{scenario.key:<9} run {run + 1} {spec.name:<20} FAILED {exc}")
                    continue
                entry["runs"].append(r)
                shown = ", ".join(f"{m}={fmt(m, r.get(m))}" for m in scenario.metrics)
                print(f"{scenario.key:<9} run {run + 1} {spec.name:<20} {shown}", flush=True)
    for by_scenario in results.values():
        for key, entry in by_scenario.items():
            metrics = next(s.metrics for s in chosen if s.key == key)
            if entry.get("runs") and "error" not in entry:
                entry["median"] = {m: median_of(entry["runs"], m) for m in metrics}

    took = time.monotonic() - started
    for _, pg, _ in ready.values():
        if pg:
            drop_database(opts.url, pg)
    machine = f"{datetime.now(UTC):%Y-%m-%d}, {socket.gethostname()} ({os.cpu_count()} CPUs)"
    if production:
        server = next(
            (r["server"] for e in results.values() for x in e.values() for r in x.get("runs", [])),
            "?",
        )
        changed = ", ".join(f"{k} = {v}" for k, v in SETTINGS.items())
        header = (
            f"{machine}, pgjobs {pgjobs_commit}, Python {platform.python_version()}, "
            f"PostgreSQL {server} on loopback, "
            f"a private cluster per queue and run (initdb, default settings but {changed}: "
            f"autovacuum and jit on), one worker process of concurrency 100, {runs} run(s)"
            f"{' (quick)' if opts.quick else ''}; took {took:,.0f} s"
        )
        text = production_report(results, chosen, header)
        stem = "production-quick" if opts.quick else "production"
    else:
        with psycopg.connect(opts.url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            server = row[0] if row else "?"
        redis_version = (
            subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
            .stdout.split(" v=")[-1]
            .split()[0:1]
        )
        header = (
            f"{machine}, pgjobs {pgjobs_commit}, Python {platform.python_version()}, "
            f"PostgreSQL {server} and Redis "
            f"{redis_version[0] if redis_version else '?'} on loopback, median of {runs} run(s)"
            f"{' (quick)' if opts.quick else ''}; took {took:,.0f} s"
        )
        text = report(results, chosen, header)
        stem = "quick" if opts.quick else "latest"
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / f"{stem}.md").write_text(text)
    payload = {
        "header": header,
        "production": production,
        "scenarios": [s.__dict__ for s in chosen],
        "results": results,
    }
    (opts.out / f"{stem}.json").write_text(json.dumps(payload, indent=1, default=list))
    print("\n" + text)
    if not opts.no_chart:
        print(chart(opts.out / f"{stem}.json", opts.out / f"{stem}.png"))
    if PGJOBS_TREE is not None:
        shutil.rmtree(PGJOBS_TREE, ignore_errors=True)


if __name__ == "__main__":
    main()
