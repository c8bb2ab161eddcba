"""PgQueuer under the benchmark: asyncpg driver, one `pgqueuer.run` worker per process.

Each worker process runs `work()`, which does what `pgq run module:factory` does (uvloop,
PgQueuer's log setup, its supervisor entering `create_pgqueuer`) through the documented
programmatic `pgqueuer.run`: in this venv `pgq run` itself dies before starting, because its
`--log-level` option reaches `setup_fancy_logger` as a str under typer 0.29. The tasks are
PgQueuer entrypoints registered in the factory; the payload carries the task's one argument
as ASCII bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version

import asyncpg
import pgqueuer
import uvloop
from pgqueuer import PgQueuer, Queries
from pgqueuer.core.logconfig import LogLevel, setup_fancy_logger
from pgqueuer.models import Job

from bench.peers._common import PgCounter, main, record_latency, spawn
from bench.peers._common import tick as tick_count

PG_URL = "BENCH_PG_URL"
# PgQueuer's performance guide ("Performance Tuning") advises a larger batch_size for short
# jobs; with 100, one process ran about twice the no-op jobs/s of the default 10.
# max_concurrent_tasks is left unset (None, unlimited), as `pgq run` leaves it: the guide
# calls it a per-process safety ceiling, and a cap of C forces batch_size <= C/2 and adds the
# worker-budget CTEs to every dequeue. Alone, 20,000 no-ops drained at 11,500-12,700 jobs/s
# this way against 5,726/s with batch 50 and a cap of 100.
BATCH_SIZE = 100


async def noop(job: Job) -> None:
    """Do nothing."""


async def sleep10(job: Job) -> None:
    """Sleep 10 ms without blocking the event loop."""
    await asyncio.sleep(0.01)


async def stamp(job: Job) -> None:
    """Record the latency from the enqueue time carried in the payload."""
    record_latency(float(job.payload or b"0"))


async def tick(job: Job) -> None:
    """Count itself, for the production scenarios."""
    tick_count()


TASKS: dict[str, Callable[[Job], Awaitable[None]]] = {
    "noop": noop,
    "sleep10": sleep10,
    "stamp": stamp,
    "tick": tick,
}


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """The factory `pgq run` enters: one asyncpg connection, the entrypoints."""
    # A direct connection rather than a pool for the worker, as PgQueuer's performance guide
    # advises: it keeps LISTEN on one session.
    connection = await asyncpg.connect(os.environ[PG_URL])
    try:
        pgq = PgQueuer.from_asyncpg_connection(connection)
        for name, func in TASKS.items():
            pgq.entrypoint(name)(func)
        yield pgq
    finally:
        await connection.close()


def work(batch: int) -> None:
    """A worker process: what `pgq run --batch-size N` does, with no concurrency cap."""
    setup_fancy_logger(LogLevel.WARNING)
    uvloop.run(
        pgqueuer.run(
            "bench.peers.pgqueuer_peer:create_pgqueuer",
            batch_size=batch,
            max_concurrent_tasks=None,
        )
    )


class PgQueuerPeer:
    """The `Peer` for PgQueuer."""

    name = "pgqueuer"
    # Finished jobs are deleted from it (and logged in pgqueuer_log).
    job_table = "pgqueuer"
    claim_index = "pgqueuer_ep_prio_id_idx"

    def __init__(self) -> None:
        self.version = version("pgqueuer")
        self.config = ""
        self.url = ""
        self.loop = asyncio.new_event_loop()
        self.connection: asyncpg.Connection | None = None
        self.queries: Queries | None = None
        # done() and backlog() run on different threads, so each thread gets its own connection.
        self.count = PgCounter("")

    def setup(self, args: argparse.Namespace) -> None:
        """Install PgQueuer's schema if missing, then empty its tables."""
        self.url = args.pg_url
        self.count = PgCounter(self.url)
        self.config = (
            f"asyncpg, batch_size={BATCH_SIZE}, max_concurrent_tasks=None (unlimited, "
            "the default), durability=durable (default), "
            "log level WARNING, pgqueuer.run (as `pgq run`) per process, uvloop"
        )
        self.loop.run_until_complete(self._setup())

    async def _setup(self) -> None:
        self.connection = await asyncpg.connect(self.url)
        self.queries = Queries.from_asyncpg_connection(self.connection)
        if not await self.queries.schema_is_installed():
            await self.queries.install()
            # `pgq autovac`: the autovacuum settings PgQueuer recommends after installation.
            await self.queries.optimize_autovacuum()
        settings = self.queries.qbe.settings
        tables = f"{settings.queue_table}, {settings.queue_table_log}, {settings.statistics_table}"
        await self.connection.execute(f"TRUNCATE {tables}")
        # A clean heap, not the last run's dead tuples (the pgjobs adapter does the same).
        await self.connection.execute(f"VACUUM ANALYZE {tables}")

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        """`Queries.enqueue` with lists: one statement inserts a whole batch."""
        assert self.queries is not None
        for start in range(0, count, batch):
            n = min(batch, count - start)
            self.loop.run_until_complete(
                self.queries.enqueue(
                    [task] * n,
                    [str(i).encode() for i in range(start, start + n)],
                    [0] * n,
                )
            )

    def enqueue_one(self, task: str, arg: float) -> None:
        """`Queries.enqueue` of one job on an autocommit connection."""
        assert self.queries is not None
        self.loop.run_until_complete(self.queries.enqueue(task, repr(arg).encode()))

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        """Start `processes` worker processes; PgQueuer runs without a cap (see BATCH_SIZE)."""
        call = f"work({BATCH_SIZE})"
        cmd = [sys.executable, "-c", f"from bench.peers.pgqueuer_peer import work; {call}"]
        return spawn(cmd, processes, "pgqueuer", **{PG_URL: self.url})

    def done(self) -> int:
        """Jobs logged `successful` in pgqueuer_log (finished jobs are deleted from the queue)."""
        # The log keeps every status change; rows are only flagged when folded into statistics,
        # never deleted, and setup() truncated it.
        return self.count("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")

    def backlog(self) -> int:
        """Jobs still `queued` in the queue table."""
        return self.count("SELECT count(*) FROM pgqueuer WHERE status = 'queued'")

    def close(self) -> None:
        """Close every connection."""
        if self.connection is not None:
            self.loop.run_until_complete(self.connection.close())
        self.loop.close()
        self.count.close()


if __name__ == "__main__":
    main(PgQueuerPeer())
