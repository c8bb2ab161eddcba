"""The scenarios, measured the same way for every queue.

Each adapter (bench/peers/<name>.py) runs under its own virtualenv's Python and
imports only this module from the harness, so this file uses the standard
library alone. An adapter implements `Peer`; `main(peer)` parses the command
line, runs one scenario once, and prints one line `RESULT {json}` that
bench/bench.py reads.

What every adapter provides (names of tasks are fixed so that runs compare):
  noop(i)         does nothing
  sleep10(i)      sleeps 10 ms (asyncio.sleep where the queue runs coroutines)
  stamp(sent_at)  calls record_latency(sent_at) first thing
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LATENCY_FILE = "BENCH_LATENCY_FILE"
POLL = 0.02  # the finish time is known to 20 ms; faster polling would load the database under test
# While a run is far from its end, the count is read less often: each read of
# a table of finished jobs is a scan that takes CPU from the queue under test
# (5-15 ms per read of 20,000 rows here, every 20 ms). Half the estimated time
# left, at most this long, then every POLL again near the end.
FAR_POLL = 0.25


def record_latency(sent_at: float) -> None:
    """Append the seconds from enqueue to now to $BENCH_LATENCY_FILE (call it first in `stamp`)."""
    now = time.time()
    path = os.environ.get(LATENCY_FILE)
    if path:
        # O_APPEND writes of one short line are atomic, so worker processes can share the file.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{now - sent_at:.6f}\n".encode())
        finally:
            os.close(fd)


class Peer(Protocol):
    """What a queue under test must do; every call gets the scenario's arguments."""

    name: str
    version: str
    # How it was set up, shown in the report: pool, prefetch, batch size, driver...
    config: str

    def setup(self, args: argparse.Namespace) -> None:
        """Connect, install the queue's schema if missing, and empty it."""

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        """Enqueue `count` jobs of `task` (argument i) by the bulk API, `batch` per call."""

    def enqueue_one(self, task: str, arg: float) -> None:
        """Enqueue one job of `task` with one argument, committed (autocommit / one call)."""

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        """Start `processes` worker OS processes, each running up to `concurrency` jobs at once."""

    def done(self) -> int:
        """How many jobs have finished successfully since setup."""

    def backlog(self) -> int:
        """How many jobs are waiting to be started."""

    def close(self) -> None:
        """Release connections."""


class PgCounter:
    """count(*) queries for done() and backlog(): one connection per calling thread.

    The mixed scenario calls backlog() from a sampling thread while the main
    thread enqueues, and a psycopg connection serves one thread at a time.
    Every Postgres peer's virtualenv has psycopg, so it is imported here, late.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()
        self.lock = threading.Lock()
        self.conns: list[Any] = []

    def __call__(self, query: Any) -> int:
        """The first column of the query's one row, as an int."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            import psycopg

            conn = self.local.conn = psycopg.connect(self.url, autocommit=True)
            with self.lock:
                self.conns.append(conn)
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close every connection it opened."""
        with self.lock:
            for conn in self.conns:
                conn.close()
            self.conns.clear()


def spawn(cmd: list[str], processes: int, name: str, **env: str) -> list[subprocess.Popen[bytes]]:
    """Start `processes` copies of a worker command, logging to /tmp/bench-<name>-<pid>.log."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    # Popen duplicates the file descriptor, so the file can be closed here.
    with Path(f"/tmp/bench-{name}-{os.getpid()}.log").open("ab") as log:
        return [
            subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=log)
            for _ in range(processes)
        ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop worker processes: SIGTERM, then SIGKILL after 10 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    procs: Sequence[subprocess.Popen[bytes]] = (),
    interval: Callable[[], float] = lambda: POLL,
) -> bool:
    """Poll `check` every `interval()` seconds; False on timeout. Raises if a worker died."""
    deadline = time.monotonic() + timeout
    while not check():
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a worker exited early with code {p.returncode}")
        if time.monotonic() > deadline:
            return False
        time.sleep(interval())
    return True


class Progress:
    """Counts finished jobs, and says when to look again: soon only near the end."""

    def __init__(self, done: Callable[[], int], total: int) -> None:
        self.done = done
        self.total = total
        self.before = done()
        self.first: tuple[float, int] | None = None  # when the first job was seen done, and n
        self.last = (time.perf_counter(), 0)

    def finished(self) -> bool:
        """Read the count; True once every job is done."""
        n = self.done() - self.before
        now = time.perf_counter()
        if n and self.first is None:
            self.first = (now, n)
        self.last = (now, n)
        return n >= self.total

    def interval(self) -> float:
        """Seconds until the next read: half the time the rate so far says is left."""
        if self.first is None:
            return POLL
        (t0, n0), (t1, n1) = self.first, self.last
        if n1 <= n0 or t1 <= t0:
            return POLL
        left = (self.total - n1) * (t1 - t0) / (n1 - n0)
        return max(POLL, min(FAR_POLL, left / 2))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def read_latencies(path: Path) -> list[float]:
    """Latencies in ms recorded so far."""
    if not path.exists():
        return []
    return [float(line) * 1000 for line in path.read_text().split()]


def _wait_ready(peer: Peer, path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    # A worker is ready when it has run a job: start-up is not latency.
    peer.enqueue_one("stamp", time.time())
    if not wait_for(lambda: len(read_latencies(path)) >= 1, 60, procs):
        raise RuntimeError("the worker did not run a first job within 60 s")
    time.sleep(0.5)
    path.write_text("")


def throughput(peer: Peer, args: argparse.Namespace, task: str) -> dict[str, Any]:
    """Pre-enqueue, start the workers, and time the run from the first job done to the last.

    The rate is taken from the first finished job on, so each queue's start-up
    (imports, connecting, its first claim) is reported apart, as `startup_s`.
    """
    peer.enqueue_bulk(task, args.count, 1000)
    progress = Progress(peer.done, args.count)
    launched = time.perf_counter()
    procs = peer.start_workers(args.workers, args.concurrency)
    try:
        finished = wait_for(progress.finished, args.timeout, procs, progress.interval)
        ended = time.perf_counter()
        count = peer.done() - progress.before
    finally:
        stop(procs)
    if progress.first is None:
        raise RuntimeError(f"no job finished within {args.timeout} s")
    started, already = progress.first
    if already > count // 2:
        # The queue wrote most outcomes in one go (some record them in timed
        # batches): there is no steady state to time, so time from launch.
        started, already = launched, 0
    return {
        "jobs_per_s": (count - already) / max(ended - started, POLL),
        "count": count,
        "startup_s": started - launched,
        "seconds": ended - launched,
        "complete": finished,
    }


def run_latency(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """Idle worker; jobs enqueued one at a time 20-50 ms apart; enqueue call to task start."""
    path = Path(os.environ[LATENCY_FILE])
    procs = peer.start_workers(1, args.concurrency)
    try:
        _wait_ready(peer, path, procs)
        for i in range(args.count):
            peer.enqueue_one("stamp", time.time())
            time.sleep(0.02 + (i % 4) * 0.01)
        wait_for(lambda: len(read_latencies(path)) >= args.count, 30, procs)
    finally:
        stop(procs)
    ms = read_latencies(path)
    if len(ms) < args.count:
        raise RuntimeError(f"only {len(ms)} of {args.count} latency jobs ran")
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "count": len(ms)}


def run_mixed(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """One producer at a steady offered rate and one worker process, for `duration` seconds."""
    path = Path(os.environ[LATENCY_FILE])
    procs = peer.start_workers(1, args.concurrency)
    backlog: list[int] = []
    producing = threading.Event()
    try:
        _wait_ready(peer, path, procs)
        producing.set()

        def sample() -> None:
            # The adapter's backlog() must be safe to call from this thread.
            while producing.is_set():
                backlog.append(peer.backlog())
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        interval = 1 / args.rate
        started = time.perf_counter()
        sent = 0
        while (now := time.perf_counter()) - started < args.duration:
            due = started + sent * interval
            if now < due:
                time.sleep(due - now)
            peer.enqueue_one("stamp", time.time())
            sent += 1
        produced_for = time.perf_counter() - started
        producing.clear()
        sampler.join()
        drained = wait_for(lambda: len(read_latencies(path)) >= sent, 60, procs)
    finally:
        producing.clear()
        stop(procs)
    ms = read_latencies(path)
    return {
        "offered_per_s": sent / produced_for,
        "sent": sent,
        "ran": len(ms),
        "drained": drained,
        "p50_ms": percentile(ms, 50) if ms else None,
        "p99_ms": percentile(ms, 99) if ms else None,
        "backlog_max": max(backlog, default=0),
    }


def run_single(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """One producer, one job per call, committed each time."""
    peer.enqueue_one("noop", 0)  # connection set-up is not what we measure
    started = time.perf_counter()
    for i in range(args.count):
        peer.enqueue_one("noop", i)
    return {"jobs_per_s": args.count / (time.perf_counter() - started)}


def run_bulk(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """The queue's bulk enqueue, 1,000 jobs per call."""
    started = time.perf_counter()
    peer.enqueue_bulk("noop", args.count, 1000)
    return {"jobs_per_s": args.count / (time.perf_counter() - started)}


SCENARIOS: dict[str, Callable[[Peer, argparse.Namespace], dict[str, Any]]] = {
    "bulk": run_bulk,
    "single": run_single,
    "process": lambda peer, args: throughput(peer, args, "noop"),
    "sleep": lambda peer, args: throughput(peer, args, "sleep10"),
    "latency": run_latency,
    "mixed": run_mixed,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every adapter takes."""
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=[*SCENARIOS, "info"])
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--workers", type=int, default=1, help="worker OS processes")
    p.add_argument("--concurrency", type=int, default=100, help="jobs at once per process")
    p.add_argument("--duration", type=float, default=60.0, help="mixed: seconds of load")
    p.add_argument("--rate", type=float, default=500.0, help="mixed: jobs offered per second")
    p.add_argument("--timeout", type=float, default=300.0, help="give up on a throughput run")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", ""))
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", ""))
    return p.parse_args(argv)


def main(peer: Peer, argv: list[str] | None = None) -> None:
    """Run one scenario once and print `RESULT {json}`."""
    args = parse(argv)
    # A SIGTERM (the harness interrupted) unwinds, so the workers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault(LATENCY_FILE, f"/tmp/bench-latency-{os.getpid()}.txt")
    Path(os.environ[LATENCY_FILE]).write_text("")
    peer.setup(args)
    try:
        out: dict[str, Any] = {}
        if args.scenario != "info":
            out = SCENARIOS[args.scenario](peer, args)
    finally:
        peer.close()
        Path(os.environ[LATENCY_FILE]).unlink(missing_ok=True)
    out.update(peer=peer.name, version=peer.version, config=peer.config)
    print("RESULT " + json.dumps(out), flush=True)
