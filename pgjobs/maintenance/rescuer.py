"""The rescuer: jobs of workers whose heartbeat lapsed run again, or fail for good."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgjobs import logs
from pgjobs.jobs import Status
from pgjobs.queries import sql


async def run_once(conn: psycopg.AsyncConnection[Any]) -> int:
    """Rescue the running jobs of dead workers; returns how many were rescued."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("rescue_jobs"), {})
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
            reason=f"rescued from worker {r['worker_id']} (its lease ran out)",
            level=logging.WARNING,
        )
    return len(rows)
