"""Tasks the tests run, in this process and in real worker processes.

Worker processes import this module as `tests.sample_app:app`; the App takes
its URL from $PGJOBS_URL, which the test session sets to its own database.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

import pgjobs

app = pgjobs.App()


_local = threading.local()


#: The record tasks' connections, a few per process however many threads run them: the tests
#: share one server (100 connections), and a worker at concurrency 20 must not take 20 of them.
RECORD_CONNECTIONS = 4
_pool: tuple[int, ConnectionPool[Any]] | None = None
_pool_lock = threading.Lock()


def _record(sql: str, params: dict[str, Any]) -> None:
    # Kept connections: a connect per job would measure connection set-up, not the queue.
    # Checked when taken, so that one a fault test killed is replaced, not used.
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():  # made again in a child process
            pool: ConnectionPool[Any] = ConnectionPool(
                app.url,
                min_size=0,
                max_size=RECORD_CONNECTIONS,
                kwargs={"autocommit": True},
                check=ConnectionPool.check_connection,
                open=True,
            )
            _pool = (os.getpid(), pool)
        pool = _pool[1]
    with pool.connection() as conn:
        conn.execute(sql, params)


@app.task
def record(n: int) -> int:
    """Writes this job's id to a table: the tests count runs from there."""
    job = pgjobs.current_job()
    _record(
        "INSERT INTO test_runs (job_id, n, pid, attempt) VALUES (%(id)s, %(n)s, %(pid)s, %(a)s)",
        {"id": job.id, "n": n, "pid": os.getpid(), "a": job.attempt},
    )
    return n


@app.task(queue="fast")
async def arecord(n: int) -> int:
    """The async twin of record(), on the event loop."""
    job = pgjobs.current_job()
    async with await psycopg.AsyncConnection.connect(app.url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO test_runs (job_id, n, pid, attempt) "
            "VALUES (%(id)s, %(n)s, %(pid)s, %(a)s)",
            {"id": job.id, "n": n, "pid": os.getpid(), "a": job.attempt},
        )
    return n


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
async def aadd(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


class Address(BaseModel):
    street: str
    city: str


@app.task
def typed(
    when: datetime, where: Address, tags: list[str], note: str | None = None
) -> dict[str, Any]:
    """Arguments come back as the types the function declares."""
    return {
        "when_type": type(when).__name__,
        "year": when.year,
        "where_type": type(where).__name__,
        "city": where.city,
        "tags": tags,
        "note": note,
    }


@app.task
def variadic(*items: int, **extra: str) -> dict[str, Any]:
    return {"items": list(items), "extra": extra}


@app.task
def whoami() -> dict[str, Any]:
    job = pgjobs.current_job()
    return {
        "id": str(job.id),
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "idempotency_key": job.idempotency_key,
    }


@app.task
def progress(steps: int, pause: float) -> str:
    job = pgjobs.current_job()
    for i in range(1, steps + 1):
        time.sleep(pause)
        job.set_progress(i, steps, f"step {i}")
    return "done"


@app.task
async def aprogress(steps: int, pause: float) -> str:
    job = pgjobs.current_job()
    for i in range(1, steps + 1):
        await asyncio.sleep(pause)
        job.set_progress(i, steps, f"step {i}")
    return "done"


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
async def afail(message: str) -> None:
    raise RuntimeError(message)


@app.task(retries=2, backoff=pgjobs.Backoff(base=0.05, cap=0.1))
def flaky(times: int) -> int:
    """Fails its first `times` attempts, then succeeds."""
    job = pgjobs.current_job()
    if job.attempt <= times:
        raise ConnectionError(f"attempt {job.attempt} failed")
    return job.attempt


@app.task
def unserialisable() -> object:
    return object()


@app.task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
async def asleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task(queue="other")
def elsewhere() -> str:
    return "other queue"


@app.task
def store(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


# -- failure handling ---------------------------------------------------------------


def _guard_conn() -> psycopg.Connection[Any]:
    conn = getattr(_local, "guard", None)
    if conn is None or conn.closed:
        conn = _local.guard = psycopg.connect(app.url, autocommit=True)
    return conn


@app.task(retries=5, backoff=pgjobs.Backoff(base=0.05, cap=0.2))
def guarded(n: int, seconds: float) -> int:
    """Runs for `seconds` holding a session lock on its job id; a second copy of it
    running at the same time, anywhere, cannot take the lock and records an overlap.

    The lock lives as long as this thread's connection: a worker killed with -9
    loses it with its connections, as it loses the run itself.
    """
    job = pgjobs.current_job()
    conn = _guard_conn()
    row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (str(job.id),))
    got = row.fetchone()
    alone = bool(got and got[0])
    conn.execute(
        "INSERT INTO test_runs (job_id, n, pid, attempt, overlap) VALUES (%s, %s, %s, %s, %s)",
        (job.id, n, os.getpid(), job.attempt, not alone),
    )
    try:
        time.sleep(seconds)
    finally:
        conn.execute(
            "UPDATE test_runs SET ended_at = clock_timestamp() WHERE job_id = %s AND attempt = %s",
            (job.id, job.attempt),
        )
        if alone:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (str(job.id),))
    return n


@app.task
def guarded_once(n: int, seconds: float) -> int:
    """guarded, with the default retries=0: a crash must not spend what the job does not have."""
    return int(guarded.fn(n, seconds))


# Ten retries, not three: after the fault tests kill every connection, a job can
# fail more than once in a row while the database comes back.
@app.task(retries=10, backoff=pgjobs.Backoff(base=0.05, cap=0.2))
def steady(n: int) -> int:
    """record(), with retries: a dropped connection of the task's own is a retryable failure."""
    record(n)
    return n


@app.task(retries=3, backoff=pgjobs.Backoff(base=0.4, factor=3.0, cap=100.0))
def always_down(n: int) -> None:
    """Fails every attempt with a transient error, to follow the backoff."""
    raise ConnectionError(f"attempt {pgjobs.current_job().attempt} of job {n}: still down")


class PaymentDeclined(Exception):
    pass


@app.task(retries=3, fail_on=(PaymentDeclined,))
def charge(amount: int) -> None:
    """A fail_on error is never retried."""
    raise PaymentDeclined(f"card declined for {amount}")


@app.task(retries=3, retry_on=(ConnectionError,))
def picky(kind: str) -> str:
    """Only ConnectionError is transient here."""
    if pgjobs.current_job().attempt == 1:
        raise ConnectionError("flaky") if kind == "transient" else ValueError("bad input")
    return "ok"


@app.task(retries=3)
def give_up() -> None:
    raise pgjobs.Permanent("this will never work")


@app.task(retries=1)
def later(delay: float) -> int:
    """Asks for its second attempt `delay` seconds later."""
    job = pgjobs.current_job()
    if job.attempt == 1:
        raise pgjobs.Retry(delay=delay, reason="not yet")
    return job.attempt


@app.task(retries=1, backoff=pgjobs.Backoff(base=0.05, cap=0.1))
def fixable(n: int) -> int:
    """Fails until a row for `n` exists in test_runs: replay after fixing the cause."""
    conn = _guard_conn()
    found = conn.execute("SELECT count(*) FROM test_runs WHERE n = %s", (n,)).fetchone()
    if not found or found[0] == 0:
        raise LookupError(f"nothing for {n} yet")
    return n


@app.task(timeout=1.0)
def spin(seconds: float) -> str:
    """Busy-loops: only a process that is killed stops it before it ends."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


@app.task(soft_timeout=0.3, timeout=5.0)
async def soft_wrap(seconds: float) -> str:
    """Sees SoftTimeout at its soft limit and wraps up in time."""
    try:
        await asyncio.sleep(seconds)
    except pgjobs.SoftTimeout:
        return "wrapped up"
    return "finished"


@app.task(timeout=0.3)
async def async_overrun(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@app.task(timeout=0.3)
def thread_overrun(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


@app.task(soft_timeout=2.0, timeout=4.0)
def deadline_aware() -> dict[str, Any]:
    job = pgjobs.current_job()
    left = job.time_left()
    return {"left": left, "deadline": job.deadline.isoformat() if job.deadline else None}


@app.task
async def cancellable_async(seconds: float) -> str:
    record(0)
    await asyncio.sleep(seconds)
    return "finished"


@app.task
def cancellable_thread(seconds: float) -> str:
    """A `def` task that looks at current_job().cancelled between steps."""
    record(0)
    job = pgjobs.current_job()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if job.cancelled:
            raise pgjobs.CancelledByRequest("stopping as asked")
        time.sleep(0.02)
    return "finished"


@app.task
def busy(seconds: float) -> str:
    """Ignores cancellation: in a child process it is killed all the same."""
    record(0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "finished"


@app.task(retries=2)
def poison(how: str) -> None:
    """Kills the process that runs it."""
    record(0)
    if how == "exit":
        os._exit(3)
    import ctypes

    ctypes.string_at(0)  # a segfault


# -- limits ---------------------------------------------------------------------------


def _timed_run(n: int, seconds: float) -> None:
    job = pgjobs.current_job()
    conn = _guard_conn()
    conn.execute(
        "INSERT INTO test_runs (job_id, n, pid, attempt) VALUES (%s, %s, %s, %s)",
        (job.id, n, os.getpid(), job.attempt),
    )
    time.sleep(seconds)
    conn.execute(
        "UPDATE test_runs SET ended_at = clock_timestamp() WHERE job_id = %s AND attempt = %s",
        (job.id, job.attempt),
    )


@app.task(concurrency=3)
def fragile_api(n: int, seconds: float) -> int:
    """Calls an outside API that allows 3 calls at a time, across all workers."""
    _timed_run(n, seconds)
    return n


@app.task(rate_limit="5/s")
def rated(n: int) -> int:
    """At most 5 starts a second, across all workers."""
    _timed_run(n, 0.0)
    return n


# -- workflows ------------------------------------------------------------------------


@app.task(retries=5, backoff=pgjobs.Backoff(base=0.05, cap=0.2))
def total(values: list[int]) -> int:
    """A chord callback: the sum of its members' results."""
    return sum(values)


@app.task(retries=5, backoff=pgjobs.Backoff(base=0.05, cap=0.2))
def collect(values: list[Any]) -> list[Any]:
    """A chord callback that returns what it got, and records that it ran."""
    _record(
        "INSERT INTO test_runs (job_id, n, pid, attempt) VALUES (%(id)s, -1, %(pid)s, %(a)s)",
        {"id": pgjobs.current_job().id, "pid": os.getpid(), "a": pgjobs.current_job().attempt},
    )
    return values


@app.task(retries=5, backoff=pgjobs.Backoff(base=0.05, cap=0.2))
def inc(prev: int, pause: float = 0.0) -> int:
    """A chain step: one more than the step before, after a pause; records each run."""
    job = pgjobs.current_job()
    _record(
        "INSERT INTO test_runs (job_id, n, pid, attempt) VALUES (%(id)s, %(n)s, %(pid)s, %(a)s)",
        {"id": job.id, "n": prev, "pid": os.getpid(), "a": job.attempt},
    )
    time.sleep(pause)
    return prev + 1


@app.task
def nul_result() -> str:
    """Returns text Postgres cannot store in jsonb."""
    return "a\x00b"


@app.task
def nul_error() -> None:
    """Fails with a message Postgres cannot store as it is."""
    raise ValueError("a\x00b")
