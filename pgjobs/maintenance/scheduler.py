"""The scheduler: scheduled and retrying jobs whose time has come become 'pending'."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgjobs import logs
from pgjobs.db.queries import sql


async def run_once(conn: psycopg.AsyncConnection[Any], limit: int = 1000) -> int:
    """Release up to `limit` due jobs and wake their queues' workers; returns how many."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("release_due_jobs"), {"limit": limit})
        rows = await cur.fetchall()
    logs.from_rows(rows)
    return len(rows)
