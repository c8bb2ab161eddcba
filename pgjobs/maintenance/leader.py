"""Leader election: the worker holding a session advisory lock leads.

The lock lives as long as the leader's connection: when the leader dies, or
its connection drops, Postgres releases it and the next worker to try takes
over. A leader that is alive to Postgres but silent (a paused process whose
connection stays open) is deposed by the others once its heartbeat lapses
(see depose_stale_leader in sql/queries.sql).

Behind a transaction pooler (App(pooler="transaction")) a session lock would
be taken on whichever server connection ran the statement and stay there,
held for no one, after the worker moved on: the lock's session is then the
direct URL (listen_url). Without one there is no session to hold, and the
election is made per round instead (`url=None`, try_round()): each round of
duties runs in one transaction on a pooled connection, which the pooler keeps
on one server connection to its end, and starts with
pg_try_advisory_xact_lock on the same key. Two rounds never run at once, nor
a round beside a session leader (the two kinds of advisory lock on one key
conflict), and a worker that dies mid-round releases the lock with its
transaction. The workers take rounds in turn, so no worker is the leader
between rounds: none is named in pgjobs.workers.leader_pid, and no lock
session outlives its round for depose_stale_leader to end. Requiring a direct
URL to lead was the other choice; it would leave a deployment whose workers
see only the pooler with no one releasing due jobs or rescuing lost ones.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg

from pgjobs.db import connections, driver
from pgjobs.db.rows import LeaderCheck, LeaderTryLock, LeaderTryRound

log = logging.getLogger("pgjobs.maintenance")

#: The advisory lock key: 'pgjobs' in ASCII, so it reads as ours in pg_locks.
LOCK_KEY = 0x70676A6F6273
#: How pg_locks shows a bigint key: its high and low 32 bits as classid and objid.
LOCK_KEY_HIGH, LOCK_KEY_LOW = LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF


def try_lock_op() -> driver.Returns[LeaderTryLock | None]:
    """Take the session's lock on LOCK_KEY if it is free (leader_try_lock)."""
    row: LeaderTryLock | None = yield "leader_try_lock", {"key": LOCK_KEY}, "one"
    return row


def try_round_op() -> driver.Returns[LeaderTryRound | None]:
    """Take the lock on LOCK_KEY until the transaction ends, if it is free (leader_try_round)."""
    row: LeaderTryRound | None = yield "leader_try_round", {"key": LOCK_KEY}, "one"
    return row


def check_op() -> driver.Returns[LeaderCheck | None]:
    """One round trip on the leader's connection (leader_check)."""
    row: LeaderCheck | None = yield "leader_check", {}, "one"
    return row


class Leader:
    """Tries for the leader's lock on a connection of its own, or per round (`url` None)."""

    def __init__(self, url: str | None, connect_timeout: float, pooler: str | None = None) -> None:
        self.url = url
        #: No session to hold the lock in: each round takes it for its transaction.
        self.per_round = url is None
        self.connect_timeout = connect_timeout
        self.pooler = pooler
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.is_leader = False
        #: the backend pid of the session holding the lock, while we lead
        self.backend_pid: int | None = None

    async def try_round(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """In a transaction on `conn`: take the lock until it ends, if it is free.

        The caller runs the round's duties in the same transaction, and only if
        this returns True.
        """
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            # Outside a transaction the lock would end with the statement.
            raise RuntimeError("try_round() runs in the round's transaction")
        row = await driver.arun(try_round_op(), conn)
        return bool(row and row["locked"])

    async def try_lead(self) -> bool:
        """Take the lock if it is free; check that we still hold it if we lead."""
        assert self.url is not None  # per round: try_round()
        try:
            if self.conn is None or self.conn.closed:
                self.is_leader = False
                self.conn = await connections.session(
                    self.url,
                    pooler=self.pooler,
                    connect_timeout=max(1, int(self.connect_timeout)),
                )
            if self.is_leader:
                # A cheap round trip: if the connection died, so did the lock.
                await driver.arun(check_op(), self.conn)
                return True
            row = await driver.arun(try_lock_op(), self.conn)
            self.is_leader = bool(row and row["locked"])
            self.backend_pid = row["backend_pid"] if row and row["locked"] else None
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
