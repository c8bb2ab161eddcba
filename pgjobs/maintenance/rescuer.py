"""The rescuer: jobs of workers whose heartbeat lapsed run again, or fail for good."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgjobs.queries import sql

log = logging.getLogger("pgjobs.maintenance")


async def run_once(conn: psycopg.AsyncConnection[Any], lease_seconds: float) -> int:
    """Rescue the running jobs of dead workers; returns how many were rescued."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("rescue_jobs"), {"lease_seconds": lease_seconds})
        rows = await cur.fetchall()
    for r in rows:
        log.warning(
            "job %s rescued from worker %s (no heartbeat for %.0f s): running -> %s",
            r["id"],
            r["worker_id"],
            lease_seconds,
            r["status"],
        )
    return len(rows)
