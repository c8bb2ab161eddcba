"""The rescuer: jobs of workers whose heartbeat lapsed run again, or fail for good."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from pgjobs.core.jobs import Status
from pgjobs.db import driver as _db
from pgjobs.db.rows import RescueJobs
from pgjobs.observe import pipeline

#: Attempts a job may lose with their worker in a row before it fails for good.
MAX_LOST = 3


def rescue_op(worker_id: str, lease_seconds: float, max_lost: int) -> _db.Returns[list[RescueJobs]]:
    """The running jobs of dead workers, rescued: the rows of their transitions."""
    params = {"worker_id": worker_id, "lease_seconds": lease_seconds, "max_lost": max_lost}
    rows: list[RescueJobs] = yield "rescue_jobs", params, "all"
    return rows


async def run_once(
    conn: psycopg.AsyncConnection[Any],
    *,
    worker_id: str = "",
    lease_seconds: float = 30.0,
    max_lost: int = MAX_LOST,
    events: pipeline.Pipeline = pipeline.LOG_ONLY,
) -> int:
    """Rescue the running jobs of dead workers; returns how many were rescued.

    `worker_id` is the leader's own (never taken for dead); `lease_seconds` how
    long a job whose worker row is gone is left to that worker; `max_lost` the
    crash budget (see rescue_jobs in sql/queries.sql). Each transition goes
    to `events` (the App's pipeline: its log and its hooks) once committed.
    """
    rows = await _db.arun(rescue_op(worker_id, lease_seconds, max_lost), conn)
    # One worker's jobs at a time, with its name in the reason; WARNING whatever
    # the job's next status: a worker died under it.
    by_worker: dict[tuple[str, bool], list[Any]] = {}
    for r in rows:
        by_worker.setdefault((r["worker_id"], r["status"] == Status.FAILED), []).append(r)
    for (lost_worker, spent), group in by_worker.items():
        events.rows(
            group,
            Status.RUNNING,
            by=pipeline.RESCUER,
            error="WorkerLost",
            reason=f"rescued from worker {lost_worker} (its lease ran out)"
            + ("; the crash budget is spent" if spent else ""),
            level=logging.WARNING,
        )
    return len(rows)
