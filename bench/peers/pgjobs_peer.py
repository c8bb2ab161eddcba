"""pgjobs under the common scenarios; runs in the project's own .venv."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from importlib.metadata import version

import psycopg

import pgjobs
from bench.peers._common import PgCounter, main, record_latency, spawn
from bench.peers._common import tick as tick_count

app = pgjobs.App()  # $PGJOBS_URL, set by setup() for the workers it starts
# At INFO (pgjobs' default) every job writes two transition lines (pending -> running,
# running -> succeeded), which would cost more than the queue itself; the harness runs the
# worker at WARNING, as the other adapters run theirs, except Dramatiq, whose INFO has no
# per-message lines. The backlog scenario also runs it at INFO (`pgjobs (log INFO)`).
LOG_LEVEL = os.environ.get("BENCH_PGJOBS_LOG_LEVEL", "WARNING")


@app.task
async def noop(i: int) -> None:
    """Nothing: measures the queue, not the work."""


@app.task
async def sleep10(i: int) -> None:
    """Ten milliseconds of waiting, as an outside call would."""
    await asyncio.sleep(0.01)


@app.task
async def stamp(sent_at: float) -> None:
    """Records enqueue-to-start latency."""
    record_latency(sent_at)


@app.task
async def tick(i: int) -> None:
    """Counts itself, for the production scenarios."""
    tick_count()


class PgjobsPeer:
    """pgjobs: async tasks, one `pgjobs worker` process each."""

    name = "pgjobs"
    version = version("pgjobs")
    config = f"psycopg 3, async tasks, `pgjobs worker --concurrency C --log-level {LOG_LEVEL}`"
    job_table = "pgjobs.jobs"
    claim_index = "pgjobs.jobs_claim_idx"

    def __init__(self) -> None:
        self.url = ""
        self.conn: psycopg.Connection[tuple[int]] | None = None
        self.count = PgCounter("")

    def setup(self, args: argparse.Namespace) -> None:
        """Migrate the database and empty the tables."""
        from pgjobs.migrations import upgrade

        self.url = args.pg_url
        self.count = PgCounter(self.url)
        os.environ["PGJOBS_URL"] = self.url
        upgrade(self.url)
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.conn.execute(
            "TRUNCATE pgjobs.jobs, pgjobs.attempts, pgjobs.dedup_keys, pgjobs.dead_letters, "
            "pgjobs.workers"
        )
        # A clean heap and fresh statistics, as a queue in steady state has.
        self.conn.execute("VACUUM ANALYZE pgjobs.jobs")
        self.config = self.config.replace(" C ", f" {args.concurrency} ")

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        """enqueue_many, `batch` jobs per call."""
        t = app.tasks[task]
        for start in range(0, count, batch):
            t.enqueue_many([(i,) for i in range(start, min(count, start + batch))])

    def enqueue_one(self, task: str, arg: float) -> None:
        """enqueue() through the App's pool, autocommit."""
        app.tasks[task].enqueue(arg)

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        """`pgjobs worker` processes."""
        cmd = [
            sys.executable,
            "-m",
            "pgjobs",
            "worker",
            "bench.peers.pgjobs_peer:app",
            "--concurrency",
            str(concurrency),
            "--log-level",
            LOG_LEVEL,
        ]
        return spawn(cmd, processes, "pgjobs", PGJOBS_URL=self.url)

    def done(self) -> int:
        """Succeeded jobs."""
        return self.count("SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'")

    def backlog(self) -> int:
        """Pending jobs."""
        return self.count("SELECT count(*) FROM pgjobs.jobs WHERE status = 'pending'")

    def close(self) -> None:
        """Close connections."""
        app.close()
        self.count.close()
        if self.conn is not None:
            self.conn.close()


if __name__ == "__main__":
    main(PgjobsPeer())
