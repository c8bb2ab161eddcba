"""Leader election: the worker holding a session advisory lock leads.

The lock lives as long as the leader's connection: when the leader dies, or
its connection drops, Postgres releases it and the next worker to try takes
over. A leader that is alive to Postgres but silent (a paused process whose
connection stays open) is deposed by the others once its heartbeat lapses
(see depose_stale_leader in sql/queries.sql).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg

from pgjobs._db import KEEPALIVE

log = logging.getLogger("pgjobs.maintenance")

#: The advisory lock key: 'pgjobs' in ASCII, so it reads as ours in pg_locks.
LOCK_KEY = 0x70676A6F6273
#: How pg_locks shows a bigint key: its high and low 32 bits as classid and objid.
LOCK_KEY_HIGH, LOCK_KEY_LOW = LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF


class Leader:
    """Tries for the leader's lock on a connection of its own."""

    def __init__(self, url: str, connect_timeout: float) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.is_leader = False
        #: the backend pid of the session holding the lock, while we lead
        self.backend_pid: int | None = None

    async def try_lead(self) -> bool:
        """Take the lock if it is free; check that we still hold it if we lead."""
        try:
            if self.conn is None or self.conn.closed:
                self.is_leader = False
                self.conn = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=max(1, int(self.connect_timeout)),
                    **KEEPALIVE,
                )
            if self.is_leader:
                # A cheap round trip: if the connection died, so did the lock.
                await self.conn.execute("SELECT 1")
                return True
            cur = await self.conn.execute(
                "SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (LOCK_KEY,)
            )
            row = await cur.fetchone()
            self.is_leader = bool(row and row[0])
            self.backend_pid = row[1] if row and row[0] else None
        except (psycopg.Error, OSError) as exc:
            if self.is_leader:
                log.warning("lost the leader's connection (%s)", exc)
            await self.close()
        return self.is_leader

    async def close(self) -> None:
        """Give up leadership (closing the connection releases the lock)."""
        conn, self.conn = self.conn, None
        self.is_leader = False
        self.backend_pid = None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
