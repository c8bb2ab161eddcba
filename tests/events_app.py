"""An App with hooks and subscribers, for tests/test_events.py (its workers import it)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg
from pydantic import BaseModel

import pgjobs
from pgjobs.observe.events import JobEvent

app = pgjobs.App()


def _log(kind: str, event: JobEvent, extra: Any = None) -> None:
    # A connection of the hook's own: what it reads is what others can see,
    # so a hook that ran inside the finishing transaction would see the old status.
    with psycopg.connect(app.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT status FROM pgjobs.jobs WHERE id = %s", (event.job_id,)
        ).fetchone()
        conn.execute(
            "INSERT INTO event_log (kind, name, job_id, task, attempt, seen_status, detail, pid)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (kind, event.name, event.job_id, event.task, event.attempt, row and row[0],
             None if extra is None else str(extra), os.getpid()),
        )  # fmt: skip


@app.on("job.succeeded")
def on_success(event: JobEvent) -> None:
    _log("hook", event, event.result)


@app.on("job.failed")
def on_failure(event: JobEvent) -> None:
    _log("hook", event, (event.error or {}).get("message"))


@app.on("job.retrying")
async def on_retry(event: JobEvent) -> None:
    await asyncio.sleep(0)
    _log("async-hook", event, event.retry_in)


@app.on("job.*")
def broken_hook(event: JobEvent) -> None:
    raise RuntimeError("a hook that always raises")


@app.task(retries=1, backoff=pgjobs.Backoff(base=0.05, cap=0.1))
def double(n: int) -> int:
    if n < 0:
        raise ValueError(f"negative: {n}")
    return 2 * n


class SignedUp(BaseModel):
    user_id: int
    email: str


@app.subscriber("user.signed_up")
def send_welcome(event: SignedUp) -> str:
    return f"welcome {event.email}"


@app.subscriber("user.signed_up", retries=1, backoff=pgjobs.Backoff(base=0.05, cap=0.1))
def sync_crm(event: SignedUp) -> int:
    raise ConnectionError("the CRM is down")


@app.subscriber("user.signed_up", queue="default")
async def count_signup(event: SignedUp) -> int:
    return event.user_id
