"""Chancy under the common scenarios; runs in bench/venvs/chancy."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from importlib.metadata import version

import psycopg
from chancy import Chancy, Job, Queue, Worker

from bench.peers._common import PgCounter, clone_rows, main, record_latency, spawn
from bench.peers._common import tick as tick_count

# Jobs name their function by import path; the producer runs this module as __main__,
# so the path is spelled out rather than derived from the function.
MODULE = "bench.peers.chancy_peer"
QUEUE = "default"
# The worker writes job outcomes in batches, by default once a second (the documented
# `send_outgoing_interval`). The harness times a run from the first job seen done to the
# last, so a 1 s batch would hide most of a short run inside the first write; at 0.1 s
# done() is late by at most that, and each write still carries hundreds of jobs. The
# production scenarios count jobs as they run, not by reading outcomes, so there the
# worker keeps the default.
FLUSH_INTERVAL = 0.1
DEFAULT_FLUSH_INTERVAL = 1.0
PRODUCTION = ("backlog", "horizon")
# Everything but chancy_queues (the declaration is upserted in setup) and
# chancy_schema_version (so that migrate() stays a no-op).
TABLES = (
    "chancy_jobs, chancy_workers, chancy_leader, chancy_metrics, chancy_metric_definitions, "
    "chancy_queue_rate_limits, chancy_workflows, chancy_workflow_steps"
)


async def noop(i: int) -> None:
    """Nothing: measures the queue, not the work."""


async def sleep10(i: int) -> None:
    """Ten milliseconds of waiting, as an outside call would."""
    await asyncio.sleep(0.01)


async def stamp(sent_at: float) -> None:
    """Records enqueue-to-start latency."""
    record_latency(sent_at)


async def tick(i: int) -> None:
    """Counts itself, for the production scenarios."""
    tick_count()


def make_app(url: str) -> Chancy:
    """The Chancy application, default plugins, logging at WARNING."""
    # Chancy's default logger is at INFO and logs a line for every job pulled.
    log = logging.getLogger("chancy")
    log.setLevel(logging.WARNING)
    if not log.handlers:
        log.addHandler(logging.StreamHandler())
    return Chancy(url, log=log)


def run_worker() -> None:
    """One worker OS process: the documented `async with Worker(chancy)` loop."""

    async def serve() -> None:
        async with make_app(os.environ["BENCH_PG_URL"]) as app:
            worker = Worker(app)
            worker.send_outgoing_interval = float(os.environ["BENCH_CHANCY_FLUSH"])
            async with worker:
                await worker.wait_for_shutdown()

    asyncio.run(serve())


def job(task: str, arg: float) -> Job:
    """A Job for one of the tasks."""
    kwargs = {"sent_at": arg} if task == "stamp" else {"i": int(arg)}
    return Job(func=f"{MODULE}.{task}", queue=QUEUE, kwargs=kwargs)


class ChancyPeer:
    """Chancy: async jobs on the AsyncExecutor, one `Worker` per process."""

    name = "chancy"
    version = version("chancy")
    config = ""
    job_table = "chancy_jobs"
    claim_index = "chancy_idx_jobs_fetch_prune"

    def __init__(self) -> None:
        self.url = ""
        self.app: Chancy | None = None
        self.conn: psycopg.Connection[tuple[int]] | None = None
        self.count = PgCounter("")
        self.stack = contextlib.ExitStack()
        self.flush = FLUSH_INTERVAL

    def setup(self, args: argparse.Namespace) -> None:
        """Migrate (core and plugin tables), empty the tables, open the sync API."""
        self.url = args.pg_url
        self.count = PgCounter(self.url)
        self.app = make_app(self.url)

        async def migrate() -> None:
            assert self.app is not None
            async with self.app:
                await self.app.migrate()

        asyncio.run(migrate())
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.conn.execute(f"TRUNCATE {TABLES}")
        # The sync API (its own pool) for the producer, as a non-async web app would use.
        self.stack.enter_context(self.app)
        production = args.scenario in PRODUCTION
        self.flush = DEFAULT_FLUSH_INTERVAL if production else FLUSH_INTERVAL
        self.config = (
            f"psycopg 3, AsyncExecutor, queue concurrency={args.concurrency} per worker, "
            f"eager_polling, LISTEN/NOTIFY, outcomes written every {self.flush} s "
            f"{'(the default)' if production else '(default 1 s)'}, default plugins, "
            "sync_push_many for bulk"
        )

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        """sync_push_many, `batch` jobs per transaction."""
        assert self.app is not None
        jobs = [job(task, i) for i in range(count)]
        for _ in self.app.sync_push_many(jobs, batch_size=batch):
            pass

    def enqueue_one(self, task: str, arg: float) -> None:
        """sync_push: one INSERT and a NOTIFY, committed."""
        assert self.app is not None
        self.app.sync_push(job(task, arg))

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        """Declare the queue (settings live in the database), then start Worker processes."""
        assert self.app is not None
        self.app.sync_declare(
            Queue(
                QUEUE,
                # Per worker: each worker runs up to this many jobs of the queue at once.
                concurrency=concurrency,
                # Coroutines run in the worker's own event loop: one OS process per
                # worker, no process pool (the default executor forks one).
                executor=Chancy.Executor.Async,
                # Refill free slots as soon as a job finishes, instead of waiting for
                # the next push notification or the polling interval (5 s).
                eager_polling=True,
            ),
            upsert=True,
        )
        cmd = [sys.executable, "-c", f"from {MODULE} import run_worker; run_worker()"]
        return spawn(
            cmd, processes, "chancy", BENCH_PG_URL=self.url, BENCH_CHANCY_FLUSH=str(self.flush)
        )

    def fill(self, task: str, count: int) -> None:
        """A large backlog: one job by sync_push, then copies of its row by INSERT ... SELECT.

        sync_push_many inserts about 2,500 jobs/s here. Each copy gets an id made as Chancy
        makes its own (`chancy_uuid`: 100 ns ticks since the epoch, a version nibble 7,
        random bits), one tick apart, so the ids keep their order.
        """
        self.enqueue_one(task, 0)
        ticks = time.time_ns() // 100
        clone_rows(
            self.url,
            self.job_table,
            count,
            make={
                "id": f"('0' || lpad(to_hex({ticks} + g), 14, '0') || '78'"
                " || substr(md5(random()::text), 1, 15))::uuid"
            },
        )

    def done(self) -> int:
        """Jobs in state succeeded (the worker writes outcomes every FLUSH_INTERVAL)."""
        return self.count("SELECT count(*) FROM chancy_jobs WHERE state = 'succeeded'")

    def backlog(self) -> int:
        """Jobs pending or waiting to retry."""
        return self.count("SELECT count(*) FROM chancy_jobs WHERE state IN ('pending', 'retrying')")

    def close(self) -> None:
        """Close the sync pool and the counting connection."""
        self.stack.close()
        self.count.close()
        if self.conn is not None:
            self.conn.close()


if __name__ == "__main__":
    main(ChancyPeer())
