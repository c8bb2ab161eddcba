"""A soak: ten million jobs through four worker processes, counted one by one.

    .venv/bin/python bench/soak.py [--jobs 10000000] [--workers 4] [--out bench/results]

On a private cluster (bench/cluster.py: default settings, autovacuum and jit on, fsync off), a
producer keeps between `--low` and `--high` jobs waiting (enqueue_many, 10,000 per call) while
`--workers` worker processes (concurrency 100 each, log level WARNING, succeeded jobs kept 10 s)
run them. Job n adds one to byte n of a file shared by every worker process (a memory map of
one byte per job), so at the end a byte at 0 is a job lost and a byte above 1 a job run twice,
without asking the database. Reported: the rate of each million (from the bytes counted every
0.5 s), the last million's against the first's, and the job table's and its indexes' sizes
(largest and at the end) and the dead rows, read every million.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

import pgjobs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARKS = "PGJOBS_SOAK_MARKS"
BATCH = 10_000

app = pgjobs.App()
_marks: mmap.mmap | None = None


@app.task
async def mark(n: int) -> None:
    """Count this run of job n in its byte (workers only: the file is theirs)."""
    global _marks
    if _marks is None:
        with open(os.environ[MARKS], "r+b") as f:
            _marks = mmap.mmap(f.fileno(), 0)
    _marks[n] = min(255, _marks[n] + 1)


def sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """The job table's size, its indexes', the attempts table's, its dead rows (the
    statistics' estimate), and the succeeded and pending jobs in it (counted)."""
    row = conn.execute(
        "SELECT pg_relation_size('pgjobs.jobs'), pg_indexes_size('pgjobs.jobs'),"
        " pg_total_relation_size('pgjobs.attempts'), n_dead_tup,"
        " (SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'),"
        " (SELECT count(*) FROM pgjobs.jobs WHERE status = 'pending')"
        " FROM pg_stat_user_tables WHERE relid = 'pgjobs.jobs'::regclass"
    ).fetchone()
    assert row is not None
    keys = ("table_bytes", "indexes_bytes", "attempts_bytes", "dead_rows", "succeeded", "pending")
    return dict(zip(keys, map(int, row), strict=True))


def soak(url: str, args: argparse.Namespace, marks_path: Path) -> dict[str, Any]:
    """Run the soak on `url` (migrated); the results."""
    marks_path.write_bytes(bytes(args.jobs))
    f = marks_path.open("rb")
    marks = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    env = {**os.environ, "PGJOBS_URL": url, MARKS: str(marks_path), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pgjobs", "worker", "bench.soak:app"]
    cmd += ["--concurrency", "100", "--log-level", args.log_level, "--keep-succeeded", "10"]
    args.out.mkdir(parents=True, exist_ok=True)
    logs = [(args.out / f"soak-worker-{i}.log").open("w") for i in range(args.workers)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log) for log in logs]
    app.url = url  # the producer's: this process enqueues through the workers' App
    produced = 0
    done_at: list[float] = []  # time each million was done
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            done = 0
            while done < args.jobs:
                done = produced - bytes(marks[:produced]).count(0)
                while produced < args.jobs and produced - done < args.low:
                    n = min(BATCH, args.jobs - produced)
                    mark.enqueue_many([(i,) for i in range(produced, produced + n)])
                    produced += n
                    done = produced - bytes(marks[:produced]).count(0)
                while len(done_at) < done // 1_000_000:
                    done_at.append(time.monotonic() - started)
                    samples.append({"done": len(done_at) * 1_000_000, "t": done_at[-1]})
                    samples[-1].update(sizes(conn))
                    print(f"{samples[-1]}", flush=True)
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a worker process exited")
                if time.monotonic() - started > args.timeout:
                    raise RuntimeError(f"{done:,} of {args.jobs:,} done in {args.timeout} s")
                time.sleep(0.5)
            end = sizes(conn)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
        app.close()
    took = time.monotonic() - started
    counts = bytes(marks)
    lost, twice = counts.count(0), sum(1 for b in counts if b > 1)
    per_million = [1_000_000 / (b - a) for a, b in zip([0.0, *done_at[:-1]], done_at, strict=True)]
    return {
        "jobs": args.jobs,
        "workers": args.workers,
        "took_s": took,
        "jobs_per_s": args.jobs / took,
        "per_million_per_s": per_million,
        "last_vs_first": per_million[-1] / per_million[0] if per_million else None,
        "lost": lost,
        "run_twice": twice,
        "max_table_bytes": max(s["table_bytes"] for s in samples),
        "max_indexes_bytes": max(s["indexes_bytes"] for s in samples),
        "max_attempts_bytes": max(s["attempts_bytes"] for s in samples),
        "end": end,
        "samples": samples,
        "backlog": [args.low, args.low + BATCH],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--low", type=int, default=100_000, help="jobs kept waiting at least")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--log-level", default="WARNING", help="the workers' (their logs: --out)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from cluster import SETTINGS, Cluster

    from pgjobs.migrations import upgrade

    with Cluster() as cluster:
        url = cluster.create_database("soak")
        upgrade(url)
        result = soak(url, args, cluster.root / "marks")
        result["server"] = cluster.version()
    result["header"] = (
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.node()} ({os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}, PostgreSQL {result['server']}, a private cluster "
        f"(default settings but {', '.join(f'{k} = {v}' for k, v in SETTINGS.items())})"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "soak" if args.jobs >= 10_000_000 else "soak-quick"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    rates = ", ".join(f"{r:,.0f}" for r in result["per_million_per_s"])
    print(
        f"{result['header']}\n{args.jobs:,} jobs, {args.workers} workers: "
        f"{result['took_s']:,.0f} s, "
        f"{result['jobs_per_s']:,.0f} jobs/s; per million: {rates}; last/first "
        f"{result['last_vs_first']:.2f}; lost {result['lost']}, run twice {result['run_twice']}; "
        f"largest job table {result['max_table_bytes'] / 1e6:,.0f} MB, its indexes "
        f"{result['max_indexes_bytes'] / 1e6:,.0f} MB, attempts "
        f"{result['max_attempts_bytes'] / 1e6:,.0f} MB"
    )


if __name__ == "__main__":
    main()
