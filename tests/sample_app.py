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
from pydantic import BaseModel

import pgjobs

app = pgjobs.App()


_local = threading.local()


def _record(sql: str, params: dict[str, Any]) -> None:
    # One connection per task thread, kept: a connect per job would measure
    # connection set-up, not the queue.
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(app.url, autocommit=True)
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
