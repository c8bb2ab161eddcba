"""Oban (the Python port, package `oban`) under the benchmark: `oban start` worker processes.

The tasks are `@job` function workers on the `default` queue. Oban stores a job's worker as
`module.qualname`, so jobs must be built from this module imported as
`bench.peers.oban_peer`, not as `__main__` (see `tasks()`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import subprocess
import sys
from importlib.metadata import version
from types import ModuleType
from typing import Any

import orjson
import psycopg
from oban import Oban, job
from oban.schema import install
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from bench.peers._common import PgCounter, clone_rows, main, record_latency, spawn
from bench.peers._common import tick as tick_count

QUEUE = "default"
MODULE = "bench.peers.oban_peer"


@job(queue=QUEUE)
async def noop(i: int) -> None:
    """Do nothing."""


@job(queue=QUEUE)
async def sleep10(i: int) -> None:
    """Sleep 10 ms without blocking the event loop."""
    await asyncio.sleep(0.01)


@job(queue=QUEUE)
async def stamp(sent_at: float) -> None:
    """Record the latency from `sent_at`."""
    record_latency(sent_at)


@job(queue=QUEUE)
async def tick(i: int) -> None:
    """Count itself, for the production scenarios."""
    tick_count()


def tasks() -> ModuleType:
    """This module under its import name, whose workers the worker processes can resolve."""
    # Run as `python -m`, this file is `__main__`, and its workers would be named
    # `__main__.noop`; importing it again by name registers `bench.peers.oban_peer.noop`.
    return importlib.import_module(MODULE)


class ObanPeer:
    """The `Peer` for Oban."""

    name = "oban"
    job_table = "oban_jobs"
    claim_index = "oban_jobs_state_queue_priority_scheduled_at_id_index"

    def __init__(self) -> None:
        self.version = version("oban")
        self.config = ""
        self.url = ""
        self.loop = asyncio.new_event_loop()
        self.pool: AsyncConnectionPool | None = None
        self.oban: Oban | None = None
        self.tasks = tasks()
        # done() and backlog() run on different threads, so each thread gets its own connection.
        self.count = PgCounter("")

    def setup(self, args: argparse.Namespace) -> None:
        """Install Oban's schema if missing, then empty its tables."""
        self.url = args.pg_url
        self.count = PgCounter(self.url)
        self.config = (
            f"`oban start --queues {QUEUE}:{args.concurrency}` per process (queue limit = "
            "concurrency), uvloop, pool 1-10 (default), log level WARNING; bulk = "
            "enqueue_many (one INSERT per job in one transaction)"
        )
        # The JSON codec `oban start` installs, so both sides encode args the same way.
        set_json_dumps(orjson.dumps)
        set_json_loads(orjson.loads)
        self.loop.run_until_complete(self._setup())

    async def _setup(self) -> None:
        self.pool = await Oban.create_pool(self.url)
        # Client mode (no queues): this process only enqueues, so it is not started.
        self.oban = Oban(pool=self.pool)
        async with self.pool.connection() as conn:
            found = await conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_name IN ('oban_jobs', 'oban_leaders', 'oban_producers')"
            )
            row = await found.fetchone()
        if not row or row[0] < 3:
            await install(self.pool)  # what `oban install` runs
        async with self.pool.connection() as conn:
            await conn.execute(
                "TRUNCATE oban_jobs, oban_leaders, oban_producers RESTART IDENTITY CASCADE"
            )
        # VACUUM cannot run in a transaction block, which a pool connection opens.
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            # A clean heap, not the last run's dead tuples (the pgjobs adapter does the same).
            await conn.execute("VACUUM ANALYZE oban_jobs")

    def _worker(self, task: str) -> Any:
        return getattr(self.tasks, task)

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        """`Oban.enqueue_many`, `batch` jobs per call."""
        assert self.oban is not None
        worker = self._worker(task)
        for start in range(0, count, batch):
            jobs = [worker.new(i) for i in range(start, min(count, start + batch))]
            self.loop.run_until_complete(self.oban.enqueue_many(jobs))

    def enqueue_one(self, task: str, arg: float) -> None:
        """`Oban.enqueue` of one job, committed on a pool connection."""
        assert self.oban is not None
        self.loop.run_until_complete(self.oban.enqueue(self._worker(task).new(arg)))

    def fill(self, task: str, count: int) -> None:
        """A large backlog: one job by enqueue(), then copies of its row by INSERT ... SELECT.

        enqueue_many inserts about 2,100 jobs/s here (one INSERT per job); the copies take
        new ids from the identity column.
        """
        self.enqueue_one(task, 0)
        clone_rows(self.url, self.job_table, count)

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        """Start `processes` `oban start` workers with the queue limit set to `concurrency`."""
        cmd = [
            sys.executable,
            "-m",
            "oban",
            "start",
            "--dsn",
            self.url,
            "--queues",
            f"{QUEUE}:{concurrency}",
            "--log-level",
            "WARNING",
            # Naming the module skips the CLI's cron auto-discovery, which would grep every
            # .py file under the working directory (the venvs included) at each start.
            "--cron-modules",
            MODULE,
        ]
        return spawn(cmd, processes, "oban")

    def done(self) -> int:
        """Jobs in state `completed` (Oban keeps them; its pruner drops them after a day)."""
        return self.count("SELECT count(*) FROM oban_jobs WHERE state = 'completed'")

    def backlog(self) -> int:
        """Jobs in state `available`."""
        return self.count("SELECT count(*) FROM oban_jobs WHERE state = 'available'")

    def close(self) -> None:
        """Close the pool and every connection."""
        if self.pool is not None:
            self.loop.run_until_complete(self.pool.close())
        self.loop.close()
        self.count.close()


if __name__ == "__main__":
    main(ObanPeer())
