"""RQ under the shared scenarios.

Run as `python -m bench.peers.rq_peer <scenario> ...`; jobs name their functions by module path
(`bench.peers.rq_peer.noop`), which the `rq worker` processes import.

RQ runs one job at a time per worker process and has no in-process concurrency, so
`--concurrency` has no effect: `sleep` runs measure one 10 ms job at a time per process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import time

from redis import Redis
from rq import Queue
from rq.registry import FinishedJobRegistry

from bench.peers._common import ROOT, main, record_latency

QUEUE = "default"
# RQ's documented CLI: `rq worker --worker-class rq.worker.SimpleWorker`.
WORKER_CLASS = "rq.worker.SimpleWorker"


def noop(i: int) -> None:
    """Do nothing."""


def sleep10(i: int) -> None:
    """Block for 10 ms."""
    time.sleep(0.01)


def stamp(sent_at: float) -> None:
    """Record enqueue-to-start latency."""
    record_latency(sent_at)


# By dotted path: the producer runs this file as __main__, so its own function objects would be
# recorded as `__main__.noop`, which workers cannot import.
FUNCS = {name: f"bench.peers.rq_peer.{name}" for name in ("noop", "sleep10", "stamp")}


class RqPeer:
    """RQ with SimpleWorker; one `rq worker` OS process per worker, one job at a time."""

    name = "rq"

    def __init__(self) -> None:
        self.version = importlib.metadata.version("rq")
        self.config = (
            "SimpleWorker (no fork per job), 1 job at a time per process (no concurrency "
            "option), --quiet logging, default result_ttl=500 s; bulk = Queue.enqueue_many "
            "(one pipeline per batch)"
        )
        self.url = ""
        self.queue: Queue | None = None
        self.finished: FinishedJobRegistry | None = None
        self.sampler: Queue | None = None

    def setup(self, args: argparse.Namespace) -> None:
        self.url = args.redis_url
        connection = Redis.from_url(self.url)
        connection.flushdb()
        self.queue = Queue(QUEUE, connection=connection)
        self.finished = FinishedJobRegistry(queue=self.queue)
        # backlog() runs in another thread: give it its own connection.
        self.sampler = Queue(QUEUE, connection=Redis.from_url(self.url))

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        assert self.queue is not None
        func = FUNCS[task]
        for start in range(0, count, batch):
            self.queue.enqueue_many(
                [
                    Queue.prepare_data(func, args=(i,))
                    for i in range(start, min(start + batch, count))
                ]
            )

    def enqueue_one(self, task: str, arg: float) -> None:
        assert self.queue is not None
        self.queue.enqueue(FUNCS[task], arg)

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        # Separate `rq worker` processes rather than `rq worker-pool`, which adds a supervising
        # process that forks the workers; each of these is one OS process that runs jobs.
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = []
        for n in range(processes):
            cmd = [
                sys.executable,
                "-m",
                "rq.cli",
                "worker",
                f"--url={self.url}",
                f"--worker-class={WORKER_CLASS}",
                "--quiet",  # WARNING level: RQ logs every job at INFO otherwise
                "--disable-job-desc-logging",
                QUEUE,
            ]
            # The child keeps its own copy of the log file descriptor.
            with open(f"/tmp/bench-rq-worker-{n}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
        return procs

    def done(self) -> int:
        # ZCARD of the registry: no cleanup pass (entries would only age out after result_ttl).
        assert self.finished is not None
        return self.finished.get_job_count(cleanup=False)

    def backlog(self) -> int:
        assert self.sampler is not None
        return self.sampler.count  # LLEN of the queue list

    def close(self) -> None:
        for q in (self.queue, self.sampler):
            if q is not None:
                q.connection.close()


if __name__ == "__main__":
    main(RqPeer())
