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

app = pgjobs.App()  # $PGJOBS_URL, set by setup() for the workers it starts


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


class PgjobsPeer:
    """pgjobs: async tasks, one `pgjobs worker` process each."""

    name = "pgjobs"
    version = version("pgjobs")
    config = "psycopg 3, async tasks, `pgjobs worker --concurrency C`"

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
        self.config = self.config.replace("C", str(args.concurrency))

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
            # At INFO every job writes two transition lines (pending -> running,
            # running -> succeeded), which would cost more than the queue itself;
            # that cost is measured apart. The other adapters run their workers
            # at WARNING too, except Dramatiq, whose INFO has no per-message lines.
            "--log-level",
            "WARNING",
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
