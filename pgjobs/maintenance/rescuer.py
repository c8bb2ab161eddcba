"""The rescuer: jobs of workers whose heartbeat lapsed run again, or fail for good."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgjobs import logs
from pgjobs.core.jobs import Status
from pgjobs.db.queries import sql

#: Attempts a job may lose with their worker in a row before it fails for good.
MAX_LOST = 3


async def run_once(
    conn: psycopg.AsyncConnection[Any],
    *,
    worker_id: str = "",
    lease_seconds: float = 30.0,
    max_lost: int = MAX_LOST,
) -> int:
    """Rescue the running jobs of dead workers; returns how many were rescued.

    `worker_id` is the leader's own (never taken for dead); `lease_seconds` how
    long a job whose worker row is gone is left to that worker; `max_lost` the
    crash budget (see rescue_jobs in sql/queries.sql).
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql("rescue_jobs"),
            {"worker_id": worker_id, "lease_seconds": lease_seconds, "max_lost": max_lost},
        )
        rows = await cur.fetchall()
    for r in rows:
        # WARNING whatever the job's next status: a worker died under it.
        logs.transition(
            r["id"],
            r["task"],
            r["queue"],
            Status.RUNNING,
            r["status"],
            r["attempt"],
            r["duration"],
            error="WorkerLost",
            reason=f"rescued from worker {r['worker_id']} (its lease ran out)"
            + ("; the crash budget is spent" if r["status"] == Status.FAILED else ""),
            level=logging.WARNING,
        )
    return len(rows)
