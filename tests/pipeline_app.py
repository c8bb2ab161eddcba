"""An App whose hooks record who made each transition, for tests/test_pipeline.py (its
workers import it)."""

from __future__ import annotations

import asyncio
import os

import psycopg

import pgjobs
from pgjobs.observe.events import JobEvent

app = pgjobs.App()


@app.on("job.failed")
@app.on("job.cancelled")
@app.on("job.pending")
def record(event: JobEvent) -> None:
    # A connection of the hook's own: it sees only what has committed.
    with psycopg.connect(app.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT status FROM pgjobs.jobs WHERE id = %s", (event.job_id,)
        ).fetchone()
        conn.execute(
            "INSERT INTO transition_log (name, job_id, by, previous, seen_status, error_type,"
            " reason, pid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (event.name, event.job_id, event.by, event.previous, row and row[0],
             (event.error or {}).get("type"), event.reason, os.getpid()),
        )  # fmt: skip


@app.task
def poison() -> None:
    """Kills the worker that runs it."""
    os._exit(3)


@app.task
def noop() -> None:
    pass


@app.task
def fails() -> None:
    raise ValueError("for good")


@app.task
def step(previous: int = 0) -> int:
    """A workflow step: one more than the step before it."""
    return previous + 1


@app.task
def broken_step(previous: int = 0) -> None:
    """A workflow step that fails for good (no retries)."""
    raise ValueError(f"cannot go on from {previous}")


@app.task
async def slow_step(previous: int = 0) -> int:
    """A workflow step that runs until it is cancelled."""
    await asyncio.sleep(60)
    return previous + 1
