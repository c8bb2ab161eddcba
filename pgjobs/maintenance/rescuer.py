"""The rescuer: jobs of workers whose heartbeat lapsed run again, or fail for good."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgjobs.queries import sql

log = logging.getLogger("pgjobs.maintenance")


async def run_once(conn: psycopg.AsyncConnection[Any]) -> int:
    """Rescue the running jobs of dead workers; returns how many were rescued."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("rescue_jobs"), {})
        rows = await cur.fetchall()
    for r in rows:
        log.warning(
            "job %s rescued from worker %s (its lease ran out): running -> %s",
            r["id"],
            r["worker_id"],
            r["status"],
        )
    return len(rows)
