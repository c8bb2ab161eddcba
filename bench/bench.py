"""Measure pgjobs on a real Postgres: enqueue rates, processing rate, and latency.

    .venv/bin/python bench/bench.py [--quick] [--url postgresql://postgres@127.0.0.1:5432/postgres]

Creates (and drops again) a database of its own on that server. Writes the
table to bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as psql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "pgjobs_bench"
TABLES = "pgjobs.jobs, pgjobs.attempts, pgjobs.dedup_keys, pgjobs.dead_letters, pgjobs.workers"


def with_db(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def recreate(admin: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(DB))
        )
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(DB)))
    return with_db(admin, DB)


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES}")
        # A clean heap and fresh statistics for each scenario, as a queue in
        # steady state would have; without it one scenario's dead rows slow the next.
        conn.execute("VACUUM ANALYZE pgjobs.jobs")


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} jobs/s"


def bulk_enqueue(total: int, batch: int) -> tuple[str, str]:
    from bench.tasks import noop_async

    started = time.perf_counter()
    for start in range(0, total, batch):
        noop_async.enqueue_many([(i,) for i in range(start, start + batch)])
    return f"bulk enqueue ({batch:,} per enqueue_many)", rate(total, time.perf_counter() - started)


def single_enqueue(url: str, total: int) -> list[tuple[str, str]]:
    from bench.tasks import noop_async

    noop_async.enqueue(0)  # the pool's first connection is not what we measure
    started = time.perf_counter()
    for i in range(total):
        noop_async.enqueue(i)
    ours = total / (time.perf_counter() - started)
    # The floor: a bare single-row autocommit INSERT on one connection.
    with psycopg.connect(url, autocommit=True) as conn:
        # A logged table, like pgjobs.jobs: each commit waits for its WAL flush.
        conn.execute("CREATE TABLE IF NOT EXISTS bare (id bigint, payload jsonb)")
        started = time.perf_counter()
        for i in range(total):
            conn.execute("INSERT INTO bare VALUES (%s, %s::jsonb)", (i, f"[{i}]"))
        bare = total / (time.perf_counter() - started)
    return [
        ("single enqueue, autocommit (one producer)", f"{ours:,.0f} jobs/s"),
        ("bare single-row INSERT, autocommit (floor)", f"{bare:,.0f} rows/s"),
        ("single enqueue / bare INSERT", f"{100 * ours / bare:.0f} %"),
    ]


def worker_cmd(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pgjobs",
        "worker",
        "bench.tasks:app",
        "--log-level",
        "WARNING",
        *args,
    ]


def processing(url: str, task: str, total: int, concurrency: int) -> tuple[str, str]:
    from bench.tasks import app

    t = app.tasks[task]
    for start in range(0, total, 5000):
        t.enqueue_many([(i,) for i in range(start, min(total, start + 5000))])
    env = {**os.environ, "PGJOBS_URL": url}
    started = time.perf_counter()
    subprocess.run(
        worker_cmd("--burst", "--concurrency", str(concurrency)), cwd=ROOT, env=env, check=True
    )
    elapsed = time.perf_counter() - started
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), "
            "(SELECT count(*) FROM pgjobs.attempts) FROM pgjobs.jobs"
        ).fetchone()
    assert row == (total, total), f"expected {total} succeeded jobs and attempt rows, got {row}"
    kind = "async" if task.endswith("async") else "sync, threads"
    label = f"process {total:,} no-op jobs, 1 worker process ({kind}, concurrency {concurrency})"
    return label, rate(total, elapsed)


def latency(url: str, samples: int) -> list[tuple[str, str]]:
    from bench.tasks import noop_async

    env = {**os.environ, "PGJOBS_URL": url}
    proc = subprocess.Popen(worker_cmd(), cwd=ROOT, env=env)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while conn.execute("SELECT count(*) FROM pgjobs.workers").fetchone() != (1,):
                if time.monotonic() > deadline:
                    raise RuntimeError("the latency worker did not start")
                time.sleep(0.05)
        time.sleep(0.5)  # past its first look at the queue
        jobs = []
        for i in range(samples):
            jobs.append(noop_async.enqueue(i))
            time.sleep(0.02 + (i % 4) * 0.01)
        for job in jobs:
            job.wait(timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT EXTRACT(EPOCH FROM started_at - created_at) * 1000 FROM pgjobs.jobs"
        ).fetchall()
    ms = sorted(float(r[0]) for r in rows)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    label = f"enqueue-to-start latency, idle worker ({samples} jobs)"
    return [
        (f"{label}, p50", f"{statistics.median(ms):.1f} ms"),
        (f"{label}, p99", f"{p99:.1f} ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PGJOBS_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--quick", action="store_true", help="smaller counts, about 30 s")
    opts = parser.parse_args()
    quick = opts.quick
    url = recreate(opts.url)
    os.environ["PGJOBS_URL"] = url
    sys.path.insert(0, str(ROOT))
    import pgjobs
    from bench.tasks import app
    from pgjobs.migrations import upgrade

    upgrade(url)
    results: list[tuple[str, str]] = []

    def run(step: Callable[[], Any]) -> None:
        reset(url)
        out = step()
        for label, value in out if isinstance(out, list) else [out]:
            print(f"{label:<78} {value:>16}", flush=True)
            results.append((label, value))

    n = 10_000 if quick else 50_000
    run(lambda: bulk_enqueue(n, 1000))
    run(lambda: single_enqueue(url, 1000 if quick else 3000))
    run(lambda: processing(url, "noop_async", 5000 if quick else 20_000, 100))
    run(lambda: processing(url, "noop_sync", 5000 if quick else 20_000, 20))
    run(lambda: latency(url, 100 if quick else 300))
    app.close()

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        server = row[0] if row else "?"
    with psycopg.connect(opts.url, autocommit=True) as conn:
        conn.execute(
            psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(DB))
        )

    header = (
        f"pgjobs {pgjobs.__version__} on {socket.gethostname()} ({os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}, PostgreSQL {server} on loopback, "
        f"{datetime.now(UTC):%Y-%m-%d}{' (quick)' if quick else ''}"
    )
    table = [header, "", "| scenario | result |", "|---|---:|"]
    table += [f"| {label} | {value} |" for label, value in results]
    text = "\n".join(table) + "\n"
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / ("quick.md" if quick else "latest.md")).write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
