"""Upkeep: the leader vacuums and analyzes the pgjobs tables that autovacuum leaves alone.

Where autovacuum runs, Postgres does this itself and upkeep does nothing.
Where it is off, for the server or for a table, nothing else ever analyzes the
jobs table. A plan that a worker's connection made while the table was small
(a fresh install, a table just truncated) then stays cached for the life of
the connection: a sequential scan and a sort of the whole table for every
claim, slower with every job the table keeps. ANALYZE makes every connection
plan again, with the table's real size; VACUUM keeps the dead rows of claimed
and finished jobs from piling up. Upkeep does both by autovacuum's own rule
and thresholds, on a connection of its own, so a long VACUUM never holds up
the leader's other duties.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from pgjobs._db import KEEPALIVE
from pgjobs.queries import sql

log = logging.getLogger("pgjobs.maintenance")

#: Seconds between two looks at the tables' statistics (a cheap read).
INTERVAL = 5.0

#: Seconds stop() gives the server to cancel a round's statement, and then the round to end,
#: before it closes the round's connection: a worker must stop on time when the database
#: does not answer.
STOP_WAIT = 2.0


@dataclass(frozen=True)
class Chore:
    """One table that autovacuum would have vacuumed or analyzed by now."""

    schema: str
    name: str
    vacuum: bool
    analyze: bool
    dead_rows: int
    changed_rows: int

    @property
    def table(self) -> str:
        """The table's schema-qualified name, for messages."""
        return f"{self.schema}.{self.name}"

    def statement(self) -> pgsql.Composed:
        """VACUUM (with ANALYZE) or ANALYZE of the table, never waiting for a lock."""
        ident = pgsql.Identifier(self.schema, self.name)
        if self.vacuum:
            # TRUNCATE false: cutting empty pages off the table's end would take
            # its exclusive lock, which stops every claim while it is held.
            options = "SKIP_LOCKED, TRUNCATE false" + (", ANALYZE" if self.analyze else "")
            return pgsql.SQL("VACUUM ({}) {}").format(pgsql.SQL(options), ident)
        return pgsql.SQL("ANALYZE (SKIP_LOCKED) {}").format(ident)


async def due(conn: psycopg.AsyncConnection[Any], told: set[str] | None = None) -> list[Chore]:
    """The chores due now, by autovacuum's rule, on the tables this role may vacuum.

    A table that is due but not this role's to vacuum is named in a warning,
    once per name in `told`.
    """
    told = set() if told is None else told
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("upkeep_due"))
        rows = await cur.fetchall()
    chores = []
    for r in rows:
        table = f"{r['schemaname']}.{r['relname']}"
        if not r["allowed"]:
            if table not in told:
                told.add(table)
                log.warning(
                    "autovacuum is off for %s and this role may not vacuum it: vacuum "
                    "and analyze it as its owner, grant this role MAINTAIN on it "
                    "(PostgreSQL 17 and later), or turn autovacuum on",
                    table,
                )
            continue
        chores.append(
            Chore(
                r["schemaname"],
                r["relname"],
                r["vacuum"],
                r["analyze"],
                r["n_dead_tup"],
                r["n_mod_since_analyze"],
            )
        )
    return chores


async def run(conn: psycopg.AsyncConnection[Any], chores: list[Chore]) -> None:
    """Do the chores on `conn`, which must be in autocommit (VACUUM runs outside a transaction)."""
    for chore in chores:
        started = time.monotonic()
        await conn.execute(chore.statement())
        log.debug(
            "%s %s (%d dead rows, %d changed) in %.0f ms",
            "vacuumed" if chore.vacuum else "analyzed",
            chore.table,
            chore.dead_rows,
            chore.changed_rows,
            (time.monotonic() - started) * 1000,
        )


class Upkeep:
    """The leader's upkeep: looks every `interval` seconds, and does what is due in the
    background, one round at a time."""

    def __init__(self, url: str, connect_timeout: float, interval: float = INTERVAL) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None  # the running round's
        self._stopping = False
        self._last_look = 0.0
        self._told: set[str] = set()
        self._announced: set[str] = set()

    @property
    def busy(self) -> bool:
        """A round of chores is still running."""
        return self._task is not None and not self._task.done()

    async def tick(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Look at the statistics if it is time to, and start the chores that are due."""
        if self.busy or time.monotonic() - self._last_look < self.interval:
            return
        if self._task is not None:
            done, self._task = self._task, None
            # A round's database errors are logged in it; anything else is a
            # bug, and stops the maintenance loudly, as in any other duty.
            done.result()
        self._last_look = time.monotonic()
        chores = await due(conn, self._told)
        if not chores:
            return
        for c in chores:
            if c.table not in self._announced:
                self._announced.add(c.table)
                log.info(
                    "autovacuum is off for %s: the leader vacuums and analyzes it itself", c.table
                )
        self._stopping = False
        self._task = asyncio.create_task(self._round(chores), name="pgjobs-upkeep")

    async def _round(self, chores: list[Chore]) -> None:
        try:
            conn = self._conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout)),
                **KEEPALIVE,
            )
            async with conn:
                # A vacuum of a large table may rightly outlast a timeout the
                # role sets for its statements; it would fail at every look.
                await conn.execute("SET statement_timeout = 0")
                await run(conn, chores)
        except (psycopg.Error, OSError) as exc:
            if self._stopping:  # cancelled or cut off by stop(), as asked
                log.debug("upkeep round stopped (%s)", exc)
                return
            # Statistics still say it is due: the next look tries again.
            log.warning("upkeep failed (%s); trying again later", exc)
        finally:
            self._conn = None

    async def stop(self) -> None:
        """End a round that is running: its statement is cancelled on the server, and its
        connection closed if the server has not answered within STOP_WAIT seconds."""
        task, self._task = self._task, None
        if task is None:
            return
        if task.done():
            if not task.cancelled() and task.exception() is not None:
                log.error("upkeep failed: %r", task.exception())
            return
        self._stopping = True
        conn = self._conn
        try:
            if conn is not None and not conn.closed:
                # Not task.cancel() while a statement runs: psycopg would answer
                # it by sending the server a cancel request and then waiting for
                # the statement to end, up to 5 s each, which on a dead network
                # held a stopping worker 10 s past its budget. The same request,
                # bounded here; the round then ends with the statement's error.
                try:
                    await conn.cancel_safe(timeout=STOP_WAIT)
                except (psycopg.Error, OSError):
                    pass  # no answer: the connection is closed below
                else:
                    await asyncio.wait({task}, timeout=STOP_WAIT)
        finally:
            # Also when stop() is itself cancelled. Closed, the connection no
            # longer counts as running a statement, so the round ends at once,
            # by its own error or by cancellation (which also ends a connect).
            if conn is not None and not task.done():
                await conn.close()
            if not task.done():
                task.cancel()
            # wait() rather than await: the round's own cancellation is not ours.
            await asyncio.wait({task})
