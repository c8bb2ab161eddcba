"""Dramatiq (RedisBroker) under the shared scenarios.

Run as `python -m bench.peers.dramatiq_peer <scenario> ...`; worker processes are started with
`dramatiq bench.peers.dramatiq_peer --processes 1 --threads C`, which imports `broker` and the
actors from this module.

Dramatiq keeps no record of finished messages (no result backend by default), but its Redis
broker holds every message in the hash `dramatiq:<queue>.msgs` until a worker acknowledges it,
which it does only after the actor has returned; a failed message is moved to the dead-letter
hash (`.XQ.msgs`) instead and a retried one goes to the delay queue (`.DQ.msgs`). So
`done()` is the number enqueued since setup minus the messages those three hashes still hold:
three HLENs, and no extra work in the worker.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.peers._common import ROOT, main, record_latency

URL_ENV = "BENCH_REDIS_URL"
NAMESPACE = "dramatiq"  # RedisBroker's default key prefix
QUEUE = "default"

# The workers get the URL from the environment; the producer builds its own broker in setup().
broker = RedisBroker(url=os.environ.get(URL_ENV, "redis://127.0.0.1:6379/3"))
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(i: int) -> None:
    """Do nothing."""


@dramatiq.actor
def sleep10(i: int) -> None:
    """Block for 10 ms (Dramatiq runs actors on worker threads)."""
    time.sleep(0.01)


@dramatiq.actor
def stamp(sent_at: float) -> None:
    """Record enqueue-to-start latency."""
    record_latency(sent_at)


ACTORS = {"noop": noop, "sleep10": sleep10, "stamp": stamp}


class DramatiqPeer:
    """Dramatiq with the Redis broker; one `dramatiq --processes 1` invocation per worker."""

    name = "dramatiq"

    def __init__(self) -> None:
        self.version = importlib.metadata.version("dramatiq")
        self.config = (
            "RedisBroker, dramatiq CLI --processes 1 --threads=concurrency, default prefetch "
            "(2 x threads), default worker_timeout (1 s idle back-off cap), default middleware; "
            "bulk = one enqueue per message (no bulk API)"
        )
        self.url = ""
        self.broker: RedisBroker | None = None
        self.sampler: redis.Redis | None = None
        self.sent = 0

    def setup(self, args: argparse.Namespace) -> None:
        self.url = args.redis_url
        # The module-level broker was built before the command line was read; this one uses
        # the URL given. Messages name their actor and queue, so any broker can send them.
        self.broker = RedisBroker(url=self.url)
        self.broker.client.flushdb()
        self.sampler = redis.Redis.from_url(self.url)  # backlog() runs in another thread
        self.sent = 0

    def _send(self, task: str, arg: float) -> None:
        # Actor.send() is `broker.enqueue(actor.message(...))` on the actor's broker.
        assert self.broker is not None
        self.broker.enqueue(ACTORS[task].message(arg))
        self.sent += 1

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        # No bulk enqueue in Dramatiq: group(...).run() also enqueues message by message, each
        # one call of the broker's Lua script.
        for i in range(count):
            self._send(task, i)

    def enqueue_one(self, task: str, arg: float) -> None:
        self._send(task, arg)

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        # `dramatiq --processes 1` is a supervisor with one forked worker process, which runs
        # `--threads` actors at once; one invocation per worker process asked for.
        env = {**os.environ, URL_ENV: self.url, "PYTHONPATH": str(ROOT)}
        procs = []
        for n in range(processes):
            cmd = [
                sys.executable,
                "-m",
                "dramatiq",
                "bench.peers.dramatiq_peer",
                "--processes=1",
                f"--threads={concurrency}",
            ]
            # The child keeps its own copy of the log file descriptor. Dramatiq logs at INFO,
            # which is start-up and shut-down only; per-message lines are DEBUG.
            with open(f"/tmp/bench-dramatiq-worker-{n}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
        return procs

    def done(self) -> int:
        assert self.broker is not None
        base = f"{NAMESPACE}:{QUEUE}"
        pipe = self.broker.client.pipeline(transaction=False)
        for key in (f"{base}.msgs", f"{base}.DQ.msgs", f"{base}.XQ.msgs"):
            pipe.hlen(key)
        return self.sent - sum(pipe.execute())

    def backlog(self) -> int:
        # Waiting in the queue list, plus fetched into a worker's prefetch buffer and not yet
        # acknowledged (this also counts the few messages running at that instant). Each
        # worker's fetched messages are in a set named by its broker id, listed in heartbeats.
        assert self.sampler is not None
        workers = self.sampler.zrange(f"{NAMESPACE}:__heartbeats__", 0, -1)
        pipe = self.sampler.pipeline(transaction=False)
        pipe.llen(f"{NAMESPACE}:{QUEUE}")
        for worker in workers:
            pipe.scard(f"{NAMESPACE}:__acks__.{worker.decode()}.{QUEUE}")
        return sum(pipe.execute())

    def close(self) -> None:
        if self.broker is not None:
            self.broker.close()
            self.broker.client.close()  # RedisBroker.close() leaves its client open
        if self.sampler is not None:
            self.sampler.close()


if __name__ == "__main__":
    main(DramatiqPeer())
