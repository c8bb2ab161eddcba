"""Leader election: the worker holding a session advisory lock leads.

The lock lives as long as the leader's connection: when the leader dies, or
its connection drops, Postgres releases it and the next worker to try takes
over. No clocks, no leases of our own.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg

log = logging.getLogger("pgjobs.maintenance")

#: The advisory lock key: 'pgjobs' in ASCII, so it reads as ours in pg_locks.
LOCK_KEY = 0x70676A6F6273


class Leader:
    """Tries for the leader's lock on a connection of its own."""

    def __init__(self, url: str, connect_timeout: float) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.is_leader = False

    async def try_lead(self) -> bool:
        """Take the lock if it is free; check that we still hold it if we lead."""
        try:
            if self.conn is None or self.conn.closed:
                self.is_leader = False
                self.conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
                )
            if self.is_leader:
                # A cheap round trip: if the connection died, so did the lock.
                await self.conn.execute("SELECT 1")
                return True
            cur = await self.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            row = await cur.fetchone()
            self.is_leader = bool(row and row[0])
        except (psycopg.Error, OSError) as exc:
            if self.is_leader:
                log.warning("lost the leader's connection (%s)", exc)
            self.is_leader = False
            await self.close()
        return self.is_leader

    async def close(self) -> None:
        """Give up leadership (closing the connection releases the lock)."""
        conn, self.conn = self.conn, None
        self.is_leader = False
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
