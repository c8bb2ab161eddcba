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

After a held xmin horizon is released (see horizon.py), upkeep also takes
back what the hold cost, autovacuum or not: it vacuums the jobs table at
once (autovacuum may not come by for a minute, and claims wade through the
dead rows until then), and then rebuilds, with REINDEX INDEX CONCURRENTLY,
each pgjobs index far larger than its entries need (bloated_indexes in
sql/queries.sql): VACUUM lets an index reuse its freed pages but never makes
it smaller, so the claim index would keep the size of every row the hold
kept. It does the same after each VACUUM of its own, where autovacuum is
off. One rebuild at a time, never while a horizon is held, and an invalid
index that an interrupted rebuild left behind is dropped first.

Its reads are named statements in sql/ (upkeep_due, bloated_indexes, ...).
VACUUM, ANALYZE, REINDEX and DROP INDEX are composed here, with the names
quoted as identifiers (psycopg.sql): they name a table or an index that those
reads found, and no statement can take a relation's name as a parameter; nor
can they be planned (EXPLAIN) as the named statements are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgjobs.db import connections
from pgjobs.db import driver as _db
from pgjobs.observe import horizon

log = logging.getLogger("pgjobs.maintenance")

#: Seconds between two looks at the tables' statistics (a cheap read).
INTERVAL = 5.0

#: Seconds stop() gives the server to cancel a round's statement, and then the round to end,
#: before it closes the round's connection: a worker must stop on time when the database
#: does not answer.
STOP_WAIT = 2.0

#: An index is rebuilt when it is more than REINDEX_RATIO times the size its
#: entries need and larger than that by more than REINDEX_MIN_BYTES: far
#: enough from a healthy index's slack that a rebuild is worth its work, and
#: rebuilding an index of a few hundred kilobytes takes milliseconds.
REINDEX_RATIO = 4.0
REINDEX_MIN_BYTES = 512 * 1024

#: The table a held horizon fills with dead rows, vacuumed once it is released.
JOBS = ("pgjobs", "jobs")


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
        # Not a named statement: it is composed with identifiers, which a parameter cannot be.
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
    rows = await _db.arun(_db.named("upkeep_due", {}), conn)
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


async def vacuum_after_release(conn: psycopg.AsyncConnection[Any]) -> None:
    """VACUUM the jobs table on `conn`, in autocommit, once a held horizon is released."""
    started = time.monotonic()
    # Not SKIP_LOCKED: an autovacuum that started while the horizon was held
    # may remove nothing the hold kept, and it yields its lock to this one.
    # TRUNCATE false, as for the chores: claims go on meanwhile.
    # Not a named statement: it is composed with identifiers, which a parameter cannot be.
    await conn.execute(pgsql.SQL("VACUUM (TRUNCATE false) {}").format(pgsql.Identifier(*JOBS)))
    log.info(
        "vacuumed %s.%s after the xmin horizon's release, in %.0f ms",
        *JOBS,
        (time.monotonic() - started) * 1000,
    )


@dataclass(frozen=True)
class Bloated:
    """An index far larger than its entries need."""

    schema: str
    name: str
    table: str
    bytes: int
    expected_bytes: int
    entries: int

    @property
    def index(self) -> str:
        """The index's schema-qualified name, for messages."""
        return f"{self.schema}.{self.name}"


async def bloated(
    conn: psycopg.AsyncConnection[Any],
    tables: Iterable[str],
    told: set[str] | None = None,
    ratio: float = REINDEX_RATIO,
    min_bytes: int = REINDEX_MIN_BYTES,
) -> list[Bloated]:
    """The indexes of these pgjobs `tables` that a rebuild would make much smaller, largest
    excess first. Their statistics must be fresh: call it after a VACUUM of the tables.

    One that this role may not rebuild is named in a warning, once per name in `told`.
    """
    told = set() if told is None else told
    params = {"tables": sorted(tables), "ratio": ratio, "min_bytes": min_bytes}
    rows = await _db.arun(_db.named("bloated_indexes", params), conn)
    found = []
    for r in rows:
        b = Bloated(
            r["schemaname"],
            r["indexname"],
            r["tablename"],
            r["bytes"],
            r["expected_bytes"],
            r["entries"],
        )
        if not r["allowed"]:
            if b.index not in told:
                told.add(b.index)
                log.warning(
                    "%s takes %s for about %d entries, and this role may not rebuild it: "
                    "run REINDEX INDEX CONCURRENTLY %s as the table's owner",
                    b.index,
                    _size(b.bytes),
                    b.entries,
                    b.index,
                )
            continue
        found.append(b)
    return found


async def drop_leftovers(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Drop the invalid indexes that interrupted rebuilds left; returns their names."""
    rows = await _db.arun(_db.named("reindex_leftovers", {}), conn)
    dropped = []
    for r in rows:
        ident = pgsql.Identifier(r["schemaname"], r["indexname"])
        # Not a named statement: it is composed with identifiers, which a parameter cannot be.
        await conn.execute(pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(ident))
        name = f"{r['schemaname']}.{r['indexname']}"
        log.info("dropped %s, an invalid index left by an interrupted REINDEX CONCURRENTLY", name)
        dropped.append(name)
    return dropped


async def reindex(conn: psycopg.AsyncConnection[Any], index: Bloated) -> int:
    """Rebuild the index without blocking writes (REINDEX INDEX CONCURRENTLY) on `conn`, in
    autocommit; returns its new size in bytes."""
    started = time.monotonic()
    ident = pgsql.Identifier(index.schema, index.name)
    # Not a named statement: it is composed with identifiers, which a parameter cannot be.
    await conn.execute(pgsql.SQL("REINDEX INDEX CONCURRENTLY {}").format(ident))
    params = {"index": f'"{index.schema}"."{index.name}"'}
    row = await _db.arun(_db.named("index_size", params, "one"), conn)
    after = int(row["bytes"]) if row and row["bytes"] is not None else 0
    log.info(
        "rebuilt %s (REINDEX CONCURRENTLY): %s for about %d entries, now %s, in %.0f ms",
        index.index,
        _size(index.bytes),
        index.entries,
        _size(after),
        (time.monotonic() - started) * 1000,
    )
    return after


def _size(n: int) -> str:
    """Bytes for a message: 812 bytes, 16.0 kB, 1.6 MB."""
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("kB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _without_statement_timeout(url: str) -> str:
    """`url` with statement_timeout=0 last among its startup options (the last one wins)."""
    options = conninfo_to_dict(url).get("options") or ""
    return make_conninfo(url, options=f"{options} -c statement_timeout=0".strip())


class Upkeep:
    """The leader's upkeep: looks every `interval` seconds, and does what is due in the
    background, one round at a time."""

    def __init__(
        self,
        url: str,
        connect_timeout: float,
        interval: float = INTERVAL,
        horizon_max_age: float = horizon.DEFAULT_MAX_AGE,
        pooler: str | None = None,
    ) -> None:
        # A URL whose connection keeps its session (the round sets statement_timeout):
        # behind a transaction pooler, the direct one (see Maintenance).
        self.url = url
        self.pooler = pooler
        self.connect_timeout = connect_timeout
        self.interval = interval
        self.horizon_max_age = horizon_max_age
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None  # the running round's
        self._stopping = False
        self._last_look = 0.0
        self._told: set[str] = set()
        self._announced: set[str] = set()
        # A held horizon was released: vacuum the jobs table and rebuild
        # bloated indexes, once no horizon is held.
        self._reclaim = False
        # What a rebuild interrupted under an earlier leader left is dropped at
        # the first look, not only before the next rebuild.
        self._leftovers_checked = False

    @property
    def busy(self) -> bool:
        """A round of chores is still running."""
        return self._task is not None and not self._task.done()

    def reclaim_soon(self) -> None:
        """After a held horizon's release: vacuum the jobs table and rebuild the indexes it
        bloated at the next look when no horizon is held any more."""
        self._reclaim = True

    async def tick(self, conn: psycopg.AsyncConnection[Any], horizon_held: bool = False) -> None:
        """Look at the statistics if it is time to, and start the chores that are due; and,
        unless `horizon_held`, the reclaiming that a released horizon asked for."""
        if self.busy or time.monotonic() - self._last_look < self.interval:
            return
        if self._task is not None:
            done, self._task = self._task, None
            # A round's database errors are logged in it; anything else is a
            # bug, and stops the maintenance loudly, as in any other duty.
            done.result()
        self._last_look = time.monotonic()
        chores = await due(conn, self._told)
        reclaim = self._reclaim and not horizon_held
        leftovers = not self._leftovers_checked and not horizon_held
        if not chores and not reclaim and not leftovers:
            return
        for c in chores:
            if c.table not in self._announced:
                self._announced.add(c.table)
                log.info(
                    "autovacuum is off for %s: the leader vacuums and analyzes it itself", c.table
                )
        self._reclaim = self._reclaim and not reclaim  # asked again if the round fails
        self._leftovers_checked = self._leftovers_checked or leftovers
        self._stopping = False
        # Where a vacuum ran, the statistics of the table's indexes are fresh:
        # the sizes their entries need can be told, and bloated ones rebuilt.
        vacuumed = {c.name for c in chores if c.vacuum and c.schema == JOBS[0]}
        if reclaim:
            vacuumed.add(JOBS[1])
        rebuild = set() if horizon_held else vacuumed
        self._task = asyncio.create_task(
            self._round(chores, reclaim, rebuild, leftovers), name="pgjobs-upkeep"
        )

    async def _round(
        self, chores: list[Chore], reclaim: bool, rebuild: set[str], leftovers: bool
    ) -> None:
        try:
            # A vacuum of a large table, or a rebuild of a large index, may rightly
            # outlast a timeout the role sets for its statements; it would fail at
            # every look. Straight to Postgres, the session starts without one: a
            # SET would itself run under the role's timeout, and one that fires as
            # the SET ends cancels the next statement. A pooler may refuse startup
            # options, so through one the session is set by a statement instead.
            url = self.url if self.pooler else _without_statement_timeout(self.url)
            conn = self._conn = await connections.session(
                url, pooler=self.pooler, connect_timeout=max(1, int(self.connect_timeout))
            )
            async with conn:
                if self.pooler:
                    await _db.arun(_db.named("upkeep_session", {}, "none"), conn)
                await run(conn, chores)
                if reclaim and not any(c.vacuum and (c.schema, c.name) == JOBS for c in chores):
                    await vacuum_after_release(conn)
                if rebuild or leftovers:
                    await drop_leftovers(conn)
                if rebuild:
                    await self._rebuild(conn, rebuild)
        except (psycopg.Error, OSError) as exc:
            if self._stopping:  # cancelled or cut off by stop(), as asked
                log.debug("upkeep round stopped (%s)", exc)
                return
            # Statistics still say it is due, and a reclaim is asked again:
            # the next look tries again.
            self._reclaim = self._reclaim or reclaim
            self._leftovers_checked = self._leftovers_checked and not leftovers
            log.warning("upkeep failed (%s); trying again later", exc)
        finally:
            self._conn = None

    async def _rebuild(self, conn: psycopg.AsyncConnection[Any], tables: set[str]) -> None:
        """Rebuild each bloated index of `tables` in turn, as long as no horizon is held (a
        rebuild waits for every older snapshot to end)."""
        for index in await bloated(conn, tables, self._told):
            now = await horizon.aread(conn, self.horizon_max_age)
            if now.is_held:
                log.info("rebuild of %s put off: %s", index.index, now.summary())
                self._reclaim = True
                return
            await reindex(conn, index)

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
