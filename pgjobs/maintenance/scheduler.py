"""The scheduler: scheduled and retrying jobs whose time has come become 'pending'."""

from __future__ import annotations

from typing import Any

import psycopg

from pgjobs.db import driver as _db
from pgjobs.db.rows import ReleaseDueJobs
from pgjobs.observe import pipeline


def release_op(limit: int) -> _db.Returns[list[ReleaseDueJobs]]:
    """Up to `limit` due jobs released, their queues' workers woken: their transitions' rows."""
    rows: list[ReleaseDueJobs] = yield "release_due_jobs", {"limit": limit}, "all"
    return rows


async def run_once(
    conn: psycopg.AsyncConnection[Any],
    limit: int = 1000,
    events: pipeline.Pipeline = pipeline.LOG_ONLY,
) -> int:
    """Release up to `limit` due jobs and wake their queues' workers; returns how many.

    Each transition goes to `events` (the App's pipeline: its log and its hooks).
    """
    rows = await _db.arun(release_op(limit), conn)
    events.rows(rows, by=pipeline.SCHEDULER)
    return len(rows)
