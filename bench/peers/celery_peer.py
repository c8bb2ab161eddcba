"""Celery (Redis broker) under the shared scenarios.

Run as `python -m bench.peers.celery_peer <scenario> ...`; worker processes import the tasks
from `bench.peers.celery_peer` through `celery -A bench.peers.celery_peer worker`.

Celery keeps nothing about finished tasks without a result backend, and a Redis result backend
would add a SET and a PUBLISH per task plus a key scan to count them. So the worker counts
successes itself: a `task_success` signal handler adds to an in-process counter, and one
background thread adds that counter to a Redis key (INCRBY) every 5 ms at most, so counting costs
one Redis call per 5 ms, not one per task.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.signals import task_success, worker_ready

from bench.peers._common import ROOT, main, record_latency

URL_ENV = "BENCH_REDIS_URL"
QUEUE = "celery"  # Celery's default queue: a Redis list of that name
UNACKED = "unacked"  # kombu's hash of messages a worker has fetched but not yet acknowledged
DONE_KEY = "bench:done"
FLUSH_EVERY = 0.005
# The Optimizing guide: "If you have many short-running tasks, and throughput/round trip latency
# is important to you, this number should be large. [...] Say 64, or 128." The prefetch count is
# the multiplier times the pool's slots, so this applies to the solo pool (1 slot); the threads
# pool keeps Celery's default of 4, which already buffers 4 x concurrency (400 at 100 threads)
# messages, and more would let the first worker started hoard the queue in multi-worker runs.
SOLO_PREFETCH_MULTIPLIER = 128
THREADS_PREFETCH_MULTIPLIER = 4

app = Celery("bench.peers.celery_peer", broker=os.environ.get(URL_ENV, "redis://127.0.0.1:6379/1"))
app.conf.update(
    # No result backend: results are not stored ("ignore_result" per the Tasks guide's
    # performance tips), so a task costs one broker message and nothing else.
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


# Explicit names: the producer runs this file as __main__, the workers import it by module path.
@app.task(name="bench.noop")
def noop(i: int) -> None:
    """Do nothing."""


@app.task(name="bench.sleep10")
def sleep10(i: int) -> None:
    """Block for 10 ms (the threads pool runs these concurrently)."""
    time.sleep(0.01)


@app.task(name="bench.stamp")
def stamp(sent_at: float) -> None:
    """Record enqueue-to-start latency."""
    record_latency(sent_at)


TASKS = {"noop": noop, "sleep10": sleep10, "stamp": stamp}


class _DoneCounter:
    """Counts successful tasks in the worker and adds them to DONE_KEY from one thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0

    def add(self) -> None:
        with self._lock:
            self._pending += 1

    def run(self, url: str) -> None:
        client = redis.Redis.from_url(url)
        while True:
            time.sleep(FLUSH_EVERY)
            with self._lock:
                pending, self._pending = self._pending, 0
            if pending:
                client.incrby(DONE_KEY, pending)


_counter = _DoneCounter()


@task_success.connect
def _count_success(**_: Any) -> None:
    _counter.add()


@worker_ready.connect
def _start_flusher(**_: Any) -> None:
    url = os.environ.get(URL_ENV, app.conf.broker_url)
    threading.Thread(target=_counter.run, args=(url,), name="bench-done", daemon=True).start()


class CeleryPeer:
    """Celery with the Redis broker; one `celery worker` OS process per worker."""

    name = "celery"

    def __init__(self) -> None:
        self.version = importlib.metadata.version("celery")
        self.config = (
            "redis broker; pool=solo for noop runs, threads x concurrency otherwise; "
            f"prefetch multiplier {SOLO_PREFETCH_MULTIPLIER} (solo) / "
            f"{THREADS_PREFETCH_MULTIPLIER} (threads); early ack (default); no result backend; "
            "bulk = apply_async loop on one producer (no bulk API)"
        )
        self.url = ""
        self.redis: redis.Redis | None = None
        self.sampler: redis.Redis | None = None
        self.bulk_task = ""

    def setup(self, args: argparse.Namespace) -> None:
        self.url = args.redis_url
        # The app is configured lazily, so the broker URL can still change before its first use.
        app.conf.broker_url = self.url
        self.redis = redis.Redis.from_url(self.url)
        self.sampler = redis.Redis.from_url(self.url)  # backlog() runs in another thread
        self.redis.flushdb()

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        # Celery has no bulk publish: a group sends one message per task. Reusing one producer
        # (one connection) for a batch is what group.apply_async does, minus the group headers.
        self.bulk_task = task
        sig = TASKS[task]
        for start in range(0, count, batch):
            with app.producer_or_acquire() as producer:
                for i in range(start, min(start + batch, count)):
                    sig.apply_async((i,), producer=producer)

    def enqueue_one(self, task: str, arg: float) -> None:
        TASKS[task].delay(arg)

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        # One OS process per worker: never prefork (it forks children). A job that only uses
        # the CPU (noop) cannot overlap with another under the GIL, so the solo pool runs it
        # inline with no hand-off; jobs that wait (sleep10) and the latency runs use the
        # threads pool with `concurrency` threads.
        pool = "solo" if self.bulk_task == "noop" or concurrency <= 1 else "threads"
        slots, multiplier = (
            (1, SOLO_PREFETCH_MULTIPLIER)
            if pool == "solo"
            else (concurrency, THREADS_PREFETCH_MULTIPLIER)
        )
        self.config = (
            f"redis broker; pool={pool}, concurrency={slots}, prefetch multiplier {multiplier}; "
            "early ack (default); no result backend; without gossip/mingle/heartbeat; "
            "bulk = apply_async loop on one producer (no bulk API)"
        )
        env = {**os.environ, URL_ENV: self.url, "PYTHONPATH": str(ROOT)}
        procs = []
        for n in range(processes):
            cmd = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.peers.celery_peer",
                "worker",
                f"--pool={pool}",
                f"--concurrency={slots}",
                f"--prefetch-multiplier={multiplier}",
                "--loglevel=WARNING",
                f"--hostname=bench{n}@%h",
                # A single-node benchmark needs no cluster coordination: these only add start-up
                # time and pub/sub traffic.
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
            # The child keeps its own copy of the log file descriptor.
            with open(f"/tmp/bench-celery-worker-{n}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
        return procs

    def done(self) -> int:
        assert self.redis is not None
        return int(self.redis.get(DONE_KEY) or 0)

    def backlog(self) -> int:
        # Waiting in the queue list, plus fetched by a worker but not yet started (with early
        # acknowledgement a message leaves `unacked` when its task starts).
        assert self.sampler is not None
        pipe = self.sampler.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.hlen(UNACKED)
        queued, reserved = pipe.execute()
        return int(queued) + int(reserved)

    def close(self) -> None:
        app.close()
        for client in (self.redis, self.sampler):
            if client is not None:
                client.close()


if __name__ == "__main__":
    main(CeleryPeer())
