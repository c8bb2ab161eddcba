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
  tick(i)         calls tick(): counts itself in shared memory (Postgres queues, for
                  the production scenarios: the count is read without asking the database)

The production scenarios (`backlog`, `horizon`) run against a private cluster that bench.py
starts for the run; a Postgres adapter also names its job table and the index its workers
claim from (`job_table`, `claim_index`), and may provide `fill(task, count)`, its fastest way
to put a large backlog in place (default: enqueue_bulk, 10,000 per call).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import mmap
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LATENCY_FILE = "BENCH_LATENCY_FILE"
TICK_FILE = "BENCH_TICK_FILE"
POLL = 0.02  # the finish time is known to 20 ms; faster polling would load the database under test
# While a run is far from its end, the count is read less often: each read of
# a table of finished jobs is a scan that takes CPU from the queue under test
# (5-15 ms per read of 20,000 rows here, every 20 ms). Half the estimated time
# left, at most this long, then every POLL again near the end.
FAR_POLL = 0.25


def record_latency(sent_at: float) -> None:
    """Append `latency start` (seconds; start on the wall clock) to $BENCH_LATENCY_FILE.

    Call it first in `stamp`.
    """
    now = time.time()
    path = os.environ.get(LATENCY_FILE)
    if path:
        # O_APPEND writes of one short line are atomic, so worker processes can share the file.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{now - sent_at:.6f} {now:.6f}\n".encode())
        finally:
            os.close(fd)


class _Ticks:
    """The worker side of $BENCH_TICK_FILE: an 8-byte count of jobs run, in shared memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.map: mmap.mmap | None = None
        self.n = 0

    def __call__(self) -> None:
        with self.lock:
            if self.map is None:
                path = os.environ.get(TICK_FILE)
                if not path:
                    return
                with Path(path).open("r+b") as f:
                    self.map = mmap.mmap(f.fileno(), 8)
            self.n += 1
            struct.pack_into("<Q", self.map, 0, self.n)


# One writer: the production scenarios start one worker process.
tick = _Ticks()


class TickCount:
    """The driver side of $BENCH_TICK_FILE: how many `tick` jobs have run, read for free."""

    def __init__(self, path: Path) -> None:
        path.write_bytes(bytes(8))
        with path.open("rb") as f:
            self.map = mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ)

    def __call__(self) -> int:
        return int(struct.unpack_from("<Q", self.map, 0)[0])


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


class PgPeer(Peer, Protocol):
    """A Postgres queue, for the production scenarios."""

    # The table its jobs wait in, and the index its workers claim from (regclass names).
    job_table: str
    claim_index: str


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
    # bench.py may run pgjobs from a commit's tree ($BENCH_ROOT, first on the path): the
    # workers start there too, where `python -m pgjobs` finds that pgjobs.
    cwd = os.environ.get("BENCH_ROOT", str(ROOT))
    full_env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)), **env}
    # Popen duplicates the file descriptor, so the file can be closed here.
    with Path(f"/tmp/bench-{name}-{os.getpid()}.log").open("ab") as log:
        return [
            subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=log)
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
    return [float(line.split()[0]) * 1000 for line in path.read_text().splitlines() if line]


class LatencyTail:
    """Reads $BENCH_LATENCY_FILE as it grows: (latency s, start on the wall clock) pairs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.rows: list[tuple[float, float]] = []

    def read(self) -> int:
        """Take in the lines written since the last call; how many there are in all."""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        for line in lines:
            latency, started = line.split()
            self.rows.append((float(latency), float(started)))
        return len(self.rows)


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


# -- production conditions: a private cluster, autovacuum on ------------------------------------


def _sql(url: str) -> Any:
    """An autocommit psycopg connection (every Postgres adapter's virtualenv has psycopg)."""
    import psycopg

    return psycopg.connect(url, autocommit=True)


def clone_rows(
    url: str, table: str, count: int, omit: Sequence[str] = (), make: dict[str, str] | None = None
) -> None:
    """Fill `table` up to `count` rows with copies of its first row, 100,000 per statement.

    The row copied is one the queue's own API inserted; `omit` are columns left to their
    defaults (serial ids), `make` gives an SQL expression for others, where `g` is the copy's
    number (1, 2, ...). Identity columns are always left to their defaults. Triggers fire as
    for any INSERT.
    """
    make = make or {}
    with _sql(url) as conn:
        cols = [
            str(name)
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped AND attidentity = '' AND attgenerated = ''"
                " ORDER BY attnum",
                (table,),
            ).fetchall()
            if name not in omit
        ]
        names = ", ".join(f'"{c}"' for c in cols)
        values = ", ".join(make.get(c, f't."{c}"') for c in cols)
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        made = int(row[0]) if row else 0
        if made < 1:
            raise RuntimeError(f"{table} has no row to copy")
        while made < count:
            n = min(100_000, count - made)
            conn.execute(
                f"INSERT INTO {table} ({names}) SELECT {values} "
                f"FROM (SELECT * FROM {table} LIMIT 1) t, generate_series({made}, {made + n - 1}) g"
            )
            made += n


def table_stats(conn: Any, table: str, index: str) -> dict[str, Any]:
    """The job table's dead and live rows (the statistics' estimates) and sizes, in bytes."""
    row = conn.execute(
        "SELECT n_dead_tup, n_live_tup, pg_relation_size(relid), pg_indexes_size(relid),"
        " pg_relation_size(%s::regclass), autovacuum_count, autoanalyze_count"
        " FROM pg_stat_user_tables WHERE relid = %s::regclass",
        (index, table),
    ).fetchone()
    keys = ("dead_rows", "live_rows", "table_bytes", "indexes_bytes", "claim_index_bytes")
    out = dict(zip(keys, row[:5], strict=True))
    out.update(autovacuums=row[5], autoanalyzes=row[6])
    return out


#: The statements that claim, in every queue here: those that lock rows with SKIP LOCKED,
#: at any depth (pg_stat_statements.track = all: a claim inside a function counts, the
#: call to it does not, since its text has no SKIP LOCKED of its own).
CLAIMS = "%SKIP LOCKED%"


def claim_buffers(conn: Any) -> tuple[int, int] | None:
    """Shared buffers read or hit, and calls, by the claim statements so far (None where
    pg_stat_statements is not loaded: a run on the shared server)."""
    try:
        row = conn.execute(
            "SELECT coalesce(sum(shared_blks_hit + shared_blks_read), 0)::bigint,"
            " coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query LIKE %s",
            (CLAIMS,),
        ).fetchone()
    except Exception:
        return None
    return (int(row[0]), int(row[1])) if row else None


def index_scans(conn: Any, table: str) -> dict[str, int]:
    """Index scans per index of the job table since the server started (which one claims)."""
    rows = conn.execute(
        "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes WHERE relid = %s::regclass",
        (table,),
    ).fetchall()
    return {str(name): int(n) for name, n in rows}


def run_backlog(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """A backlog of `count` tick jobs, VACUUM ANALYZE, then one worker drains it.

    The rate is timed over `measure` jobs after `warmup` jobs (or over what ran in `timeout`
    seconds, if fewer), counted by the jobs themselves (`tick`), not by reading the database.
    """
    ticks = TickCount(Path(os.environ[TICK_FILE]))
    table, index = cast(PgPeer, peer).job_table, cast(PgPeer, peer).claim_index
    started = time.perf_counter()
    fill = getattr(peer, "fill", None)
    if fill is not None:
        fill("tick", args.count)
    else:
        peer.enqueue_bulk("tick", args.count, 10_000)
    filled = time.perf_counter()
    with _sql(args.pg_url) as conn:
        conn.execute("VACUUM ANALYZE")
        vacuumed = time.perf_counter()
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        rows = int(row[0]) if row else 0
        before = table_stats(conn, table, index)
        procs = peer.start_workers(1, args.concurrency)
        try:
            launched = time.perf_counter()
            warm = wait_for(lambda: ticks() >= args.warmup, args.timeout, procs, lambda: 0.01)
            t0, n0 = time.perf_counter(), ticks()
            wait_for(lambda: ticks() >= n0 + args.measure, args.timeout, procs, lambda: 0.01)
            t1, n1 = time.perf_counter(), ticks()
        finally:
            stop(procs)
        after = table_stats(conn, table, index)
        scans = index_scans(conn, table)
    if n1 <= n0:
        raise RuntimeError(f"no job ran in {args.timeout} s after the warm-up")
    return {
        "jobs_per_s": (n1 - n0) / (t1 - t0),
        "backlog": rows,
        "measured": n1 - n0,
        "measured_s": t1 - t0,
        "warmup": n0,
        "warmup_s": t0 - launched,
        "warmup_reached": warm,
        "bounded_by_time": n1 - n0 < args.measure,
        "fill_s": filled - started,
        "fill": "fill()" if fill is not None else "enqueue_bulk, 10,000 per call",
        "vacuum_analyze_s": vacuumed - filled,
        "before": before,
        "after": after,
        "index_scans": scans,
    }


def run_horizon(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """A steady producer to one worker, with a REPEATABLE READ snapshot held for a while.

    From `hold_from` to `hold_until` seconds into the run a separate connection to the same
    database sits in `BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;`: nothing deleted or
    updated after it began can be vacuumed away until it ends. Jobs run are counted from the
    lines `stamp` writes (latency and start time), so the database is not read to count them.
    """
    path = Path(os.environ[LATENCY_FILE])
    table, index = cast(PgPeer, peer).job_table, cast(PgPeer, peer).claim_index
    # Loaded by the private cluster's settings; not on the shared server.
    with _sql(args.pg_url) as conn, contextlib.suppress(Exception):
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    procs = peer.start_workers(args.workers, args.concurrency)
    tail = LatencyTail(path)
    sends: list[float] = []  # wall-clock time of each enqueue
    backlog: list[tuple[float, int]] = []
    stats: list[dict[str, Any]] = []
    # (t, jobs run so far, claim buffers, claim calls) at each bucket's end
    claims: list[tuple[float, int, int, int]] = []
    producing = threading.Event()
    failures: list[BaseException] = []
    try:
        _wait_ready(peer, path, procs)
        start_wall = time.time()
        start = time.perf_counter()
        producing.set()

        def watch() -> None:
            # Backlog (sent, not yet started) every 0.5 s; the job table's statistics every
            # `bucket` seconds; the snapshot opened and closed on time.
            try:
                with _sql(args.pg_url) as conn, _sql(args.pg_url) as holder:
                    held, released, next_stats = False, False, 0.0
                    while producing.is_set():
                        t = time.perf_counter() - start
                        if not held and t >= args.hold_from:
                            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                            holder.execute("SELECT 1")
                            held = True
                            stats.append({"t": t, "at": "hold", **table_stats(conn, table, index)})
                        if held and not released and t >= args.hold_until:
                            stats.append(
                                {"t": t, "at": "release", **table_stats(conn, table, index)}
                            )
                            holder.execute("COMMIT")
                            released = True
                        if t >= next_stats:
                            stats.append({"t": t, **table_stats(conn, table, index)})
                            got = claim_buffers(conn)
                            if got is not None:
                                claims.append((t, tail.read(), *got))
                            next_stats += args.bucket
                        backlog.append((t, len(sends) - tail.read()))
                        time.sleep(0.5)
                    if held and not released:
                        holder.execute("COMMIT")
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        interval = 1 / args.rate
        while (now := time.perf_counter()) - start < args.duration:
            due = start + len(sends) * interval
            if now < due:
                time.sleep(due - now)
            sends.append(time.time())
            peer.enqueue_one("stamp", sends[-1])
        produced_for = time.perf_counter() - start
        producing.clear()
        watcher.join()
        if failures:
            raise RuntimeError(f"the watcher failed: {failures[0]!r}")
        drained = wait_for(lambda: tail.read() >= len(sends), args.drain, procs, lambda: 0.1)
        with _sql(args.pg_url) as conn:
            end = {"t": time.perf_counter() - start, "at": "end", **table_stats(conn, table, index)}
            scans = index_scans(conn, table)
    finally:
        producing.clear()
        stop(procs)
    tail.read()
    ran = [(lat, at - start_wall) for lat, at in tail.rows]
    sent_at = [at - start_wall for at in sends]

    def kept(lo: float, hi: float) -> float | None:
        offered = sum(lo <= t < hi for t in sent_at)
        done = sum(lo <= t < hi for _, t in ran)
        return done / offered if offered else None

    ms = [lat * 1000 for lat, _ in ran]

    def latency(lo: float, hi: float) -> list[float | None]:
        # p50 and p99 of the jobs enqueued between lo and hi seconds into the run.
        window = [lat * 1000 for lat, t in ran if lo <= t - lat < hi]
        return [percentile(window, 50), percentile(window, 99)] if window else [None, None]

    buckets = int((args.duration + args.drain) // args.bucket) + 1
    series = [0] * buckets
    for _, t in ran:
        if 0 <= t < buckets * args.bucket:
            series[int(t // args.bucket)] += 1
    release = next((s for s in stats if s.get("at") == "release"), None)
    # Claim buffers per job run, bucket by bucket: flat if a claim's cost does not grow with
    # the jobs claimed since the snapshot began.
    per_job: list[float | None] = []
    for (_, n0, b0, _), (_, n1, b1, _) in itertools.pairwise(claims):
        per_job.append((b1 - b0) / (n1 - n0) if n1 > n0 else None)

    def held_per_job(which: int) -> float | None:
        held = [
            v
            for (t, *_), v in zip(claims, per_job, strict=False)
            if args.hold_from <= t and t + args.bucket <= args.hold_until and v is not None
        ]
        return held[which] if held else None

    return {
        "workers": args.workers,
        "claim_buffers_per_job": per_job,
        "claim_buffers_per_job_held_first": held_per_job(0),
        "claim_buffers_per_job_held_last": held_per_job(-1),
        "offered_per_s": len(sends) / produced_for,
        "sent": len(sends),
        "ran": len(ran),
        "drained": drained,
        "kept_held": kept(args.hold_from, args.hold_until),
        "kept_run": kept(0, args.duration),
        "p50_ms": percentile(ms, 50) if ms else None,
        "p99_ms": percentile(ms, 99) if ms else None,
        "p50_p99_ms_before": latency(0, args.hold_from),
        "p50_p99_ms_held": latency(args.hold_from, args.hold_until),
        "p50_p99_ms_after": latency(args.hold_until, args.duration),
        "backlog_max": max((n for _, n in backlog), default=0),
        "dead_rows_release": release["dead_rows"] if release else None,
        "table_bytes_release": release["table_bytes"] if release else None,
        "claim_index_bytes_release": release["claim_index_bytes"] if release else None,
        "table_bytes_end": end["table_bytes"],
        "claim_index_bytes_end": end["claim_index_bytes"],
        "bucket_s": args.bucket,
        "hold": [args.hold_from, args.hold_until],
        "duration": args.duration,
        "series": series,
        "stats": [*stats, end],
        "backlog": backlog[:: max(1, len(backlog) // 200)],
        "index_scans": scans,
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
    "backlog": run_backlog,
    "horizon": run_horizon,
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
    p.add_argument("--warmup", type=int, default=5000, help="backlog: jobs before timing")
    p.add_argument("--measure", type=int, default=50000, help="backlog: jobs timed")
    p.add_argument("--hold-from", type=float, default=60.0, help="horizon: snapshot taken, s")
    p.add_argument("--hold-until", type=float, default=240.0, help="horizon: snapshot ended, s")
    p.add_argument("--bucket", type=float, default=30.0, help="horizon: seconds per sample")
    p.add_argument("--drain", type=float, default=60.0, help="horizon: wait for the rest, s")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", ""))
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", ""))
    return p.parse_args(argv)


def main(peer: Peer, argv: list[str] | None = None) -> None:
    """Run one scenario once and print `RESULT {json}`."""
    args = parse(argv)
    # A SIGTERM (the harness interrupted) unwinds, so the workers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault(LATENCY_FILE, f"/tmp/bench-latency-{os.getpid()}.txt")
    os.environ.setdefault(TICK_FILE, f"/tmp/bench-ticks-{os.getpid()}.bin")
    Path(os.environ[LATENCY_FILE]).write_text("")
    peer.setup(args)
    try:
        out: dict[str, Any] = {}
        if args.scenario != "info":
            out = SCENARIOS[args.scenario](peer, args)
    finally:
        peer.close()
        Path(os.environ[LATENCY_FILE]).unlink(missing_ok=True)
        Path(os.environ[TICK_FILE]).unlink(missing_ok=True)
    out.update(peer=peer.name, version=peer.version, config=peer.config)
    print("RESULT " + json.dumps(out), flush=True)
