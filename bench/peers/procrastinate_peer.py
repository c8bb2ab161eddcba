"""Procrastinate under the common scenarios; runs in bench/venvs/procrastinate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from importlib.metadata import version

import procrastinate
import psycopg

from bench.peers._common import PgCounter, clone_rows, main, record_latency, spawn
from bench.peers._common import tick as tick_count

# Each sub-worker takes a pool connection to fetch a job and again to finish it, so for
# short jobs the docs advise a pool as large as the concurrency plus one ("Mind the size
# of your PostgreSQL pool"). Each worker process gets that, as far as the server's
# max_connections allows: all the workers' pools together take at most max_connections
# less SPARE_CONNECTIONS (the LISTEN connection of each, the harness's and, on the shared
# server, other databases'). On the shared server (100) that is 40: one process gets 40,
# four get 10 each; on the production scenarios' private cluster (200), one gets C + 1.
SPARE_CONNECTIONS = 60

# Workers import this module, so the connector reads its settings from the environment
# that start_workers() passes. The producer swaps in a sync connector in setup().
app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get("BENCH_PG_URL", ""),
        min_size=1,
        max_size=int(os.environ.get("BENCH_PROCRASTINATE_POOL", "4")),
    )
)


# Explicit names: the producer runs this module as __main__, where the default name
# (module path + function) would differ from the workers'.
@app.task(name="noop")
async def noop(i: int) -> None:
    """Nothing: measures the queue, not the work."""


@app.task(name="sleep10")
async def sleep10(i: int) -> None:
    """Ten milliseconds of waiting, as an outside call would."""
    await asyncio.sleep(0.01)


@app.task(name="stamp")
async def stamp(sent_at: float) -> None:
    """Records enqueue-to-start latency."""
    record_latency(sent_at)


@app.task(name="tick")
async def tick(i: int) -> None:
    """Counts itself, for the production scenarios."""
    tick_count()


TASKS = {"noop": noop, "sleep10": sleep10, "stamp": stamp, "tick": tick}
TABLES = (
    "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, procrastinate_workers"
)


class ProcrastinatePeer:
    """Procrastinate: async tasks, `procrastinate worker --concurrency C` processes."""

    name = "procrastinate"
    version = version("procrastinate")
    config = ""
    job_table = "procrastinate_jobs"
    claim_index = "procrastinate_jobs_priority_idx_v1"

    def __init__(self) -> None:
        self.url = ""
        self.conn: psycopg.Connection[tuple[int]] | None = None
        self.count = PgCounter("")
        self.stack = contextlib.ExitStack()
        self.max_connections = 100

    def setup(self, args: argparse.Namespace) -> None:
        """Apply the schema if missing, empty the tables, open a sync connector to defer."""
        self.url = args.pg_url
        self.count = PgCounter(self.url)
        self.conn = psycopg.connect(self.url, autocommit=True)
        # The producer is synchronous, as a web app would be: the documented
        # SyncPsycopgConnector ("Control the way synchronous calls to defer are handled").
        sync = procrastinate.SyncPsycopgConnector(conninfo=self.url, min_size=1, max_size=2)
        self.stack.enter_context(app.replace_connector(sync))
        app.open()
        self.stack.callback(app.close)
        row = self.conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if not (row and row[0]):
            # `procrastinate schema --apply`, which only works on an empty database.
            app.schema_manager.apply_schema()
        # TRUNCATE alone leaves the table "never analyzed", so the planner assumes a
        # non-trivial size. Do not ANALYZE it empty: a worker session then caches a generic
        # plan for procrastinate_fetch_job_v2 built for zero rows (nested seq scans for the
        # lock check), and once jobs pile up each fetch takes O(rows^2), seconds at 3,000.
        self.conn.execute(f"TRUNCATE {TABLES} CASCADE")
        row = self.conn.execute("SHOW max_connections").fetchone()
        self.max_connections = int(row[0]) if row else 100
        pool = self.pool_size(args.workers, args.concurrency)
        self.config = (
            f"psycopg 3, async tasks, `procrastinate worker --concurrency {args.concurrency}`, "
            f"LISTEN/NOTIFY, pool max_size={pool} per process, batch_defer for bulk"
        )

    def pool_size(self, processes: int, concurrency: int) -> int:
        """Connections per worker process: concurrency + 1, as far as the server allows."""
        budget = self.max_connections - SPARE_CONNECTIONS
        return max(2, min(concurrency + 1, budget // processes))

    def fill(self, task: str, count: int) -> None:
        """A large backlog: one job by defer(), then copies of its row by INSERT ... SELECT.

        batch_defer inserts about 8,000 jobs/s here; the copies go in at several times that,
        through the same triggers (an event row and a NOTIFY per job).
        """
        self.enqueue_bulk(task, 1, 1)
        clone_rows(self.url, self.job_table, count, omit=("id",))

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        """batch_defer, `batch` jobs per call (one INSERT ... per call)."""
        t = TASKS[task]
        for start in range(0, count, batch):
            t.batch_defer(*({"i": i} for i in range(start, min(count, start + batch))))

    def enqueue_one(self, task: str, arg: float) -> None:
        """defer(): one statement, committed by the pool on return."""
        if task == "stamp":
            stamp.defer(sent_at=arg)
        else:
            TASKS[task].defer(i=int(arg))

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        """`procrastinate worker` processes (LISTEN/NOTIFY is on by default)."""
        cmd = [
            sys.executable,
            "-m",
            "procrastinate",
            "--app",
            "bench.peers.procrastinate_peer.app",
            "--log-level",
            "warning",
            "worker",
            "--concurrency",
            str(concurrency),
        ]
        pool = str(self.pool_size(processes, concurrency))
        return spawn(
            cmd, processes, "procrastinate", BENCH_PG_URL=self.url, BENCH_PROCRASTINATE_POOL=pool
        )

    def done(self) -> int:
        """Jobs with status succeeded (finished jobs are kept: delete_jobs=never)."""
        return self.count("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")

    def backlog(self) -> int:
        """Jobs with status todo."""
        return self.count("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")

    def close(self) -> None:
        """Close the connector and the counting connection."""
        self.stack.close()
        self.count.close()
        if self.conn is not None:
            self.conn.close()


if __name__ == "__main__":
    main(ProcrastinatePeer())
