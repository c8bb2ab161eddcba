"""The driver: operations over a connection, pools, the caller's own connections (outbox),
and clear errors.

Operations that talk SQL are written once, as generators that yield
(query name, params, fetch) steps and receive each step's rows; run() and
arun() drive them over a sync or an async cursor. So every operation has its
async twin without being written twice.
"""

from __future__ import annotations

import functools
import json
import re
import select
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Literal, NamedTuple, TypeVar

import psycopg
from psycopg.abc import PQGen
from psycopg.adapt import AdaptersMap
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import JsonbBinaryLoader, JsonbLoader
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from pgjobs.core.errors import ConfigurationError, PgJobsError
from pgjobs.db import prepared as _prepared
from pgjobs.db.queries import sql

T = TypeVar("T")

# "copy": the step's params are "chunks", a function of the connection's
# client encoding (its Python codec name) that gives the data, written in turn
# with COPY FROM STDIN, and "columns", the names that fill the statement's
# {columns} slot.
Fetch = Literal["one", "all", "none", "copy"]

#: libpq settings for the long-lived connections of workers. A peer that
#: vanishes without closing the connection (a network cut, a dead host) is
#: otherwise noticed only after the OS's two-hour keepalive: a worker would
#: hang on it. With these, such a connection fails within about 30 s and the
#: worker reconnects. Ignored on Unix sockets.
KEEPALIVE: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # ms: unacknowledged writes give up too
}

#: App(pooler=...) for a pooler that gives each transaction whichever server
#: connection is free (PgBouncer's pool_mode = transaction, RDS Proxy, Supavisor).
TRANSACTION_POOLER = "transaction"
#: The spellings of "no such pooler" (a direct connection, or a session pooler).
_NO_POOLER = ("", "none")


def pooler_mode(value: str | None, name: str = "pooler") -> str | None:
    """App(pooler=...), --pooler or $PGJOBS_POOLER (`name`, for the error), checked:
    TRANSACTION_POOLER, or None for a connection that keeps its session ('' and 'none'
    say so explicitly)."""
    if value is None or value.strip().lower() in _NO_POOLER:
        return None
    if value.strip().lower() == TRANSACTION_POOLER:
        return TRANSACTION_POOLER
    raise ConfigurationError(
        f"{name} must be {TRANSACTION_POOLER!r} (a transaction-pooling PgBouncer or proxy) "
        f"or 'none', got {value!r}"
    )


def connection_kwargs(pooler: str | None) -> dict[str, Any]:
    """What every connection pgjobs makes adds to its own settings, for a pooler mode.

    Behind a transaction pooler psycopg prepares nothing: a named prepared
    statement lives on one server connection, and the next transaction may get
    another, where it "does not exist" (PgBouncer before 1.21 does not follow
    them). The App's own one-job INSERT reads the same setting: on such a
    connection it is sent unprepared too (PoolConnection.run_prepared).
    """
    return {"prepare_threshold": None} if pooler == TRANSACTION_POOLER else {}


# A statement's name, its parameters (by name, or by position for a few hot
# statements) and what to fetch.
Step = tuple[str, dict[str, Any] | tuple[Any, ...], Fetch]

# The C scanner that json.loads() itself uses (typeshed does not list it).
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads_jsonb(data: str | bytes) -> Any:
    """A jsonb value as Postgres sends it, in Python."""
    # Postgres prints jsonb as valid UTF-8 JSON without surrounding spaces, so
    # the decoder's scanner can read it alone: json.loads() would also guess
    # the encoding of the bytes and match whitespace around the value: three to
    # six times the work, for the arguments a worker reads for every job.
    text = data.decode() if isinstance(data, bytes) else data
    try:
        return _scan_json(text, 0)[0]
    except StopIteration:  # not JSON after all: json.loads() says why
        return json.loads(text)


class _JsonbLoader(JsonbLoader):
    _loads = staticmethod(loads_jsonb)


class _JsonbBinaryLoader(JsonbBinaryLoader):
    _loads = staticmethod(loads_jsonb)


#: The adapters of the pools pgjobs reads jobs on (the App's and the workers'):
#: psycopg's, with jsonb read by loads_jsonb().
ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_loader("jsonb", _JsonbLoader)
ADAPTERS.register_loader("jsonb", _JsonbBinaryLoader)


def closed_by_server(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    # An idle pooled connection (no LISTEN) has nothing to read unless the
    # server said goodbye (a restart, pg_terminate_backend, idle timeout):
    # its socket is then readable. Asking the socket costs a system call;
    # asking the server (psycopg_pool's check_connection) a round trip.
    if conn.closed:
        return True
    # poll(), not select(): select() fails on descriptors above 1023. A pool's
    # connection keeps its poller: its socket is the same for all its life.
    poller = getattr(conn, "_idle_poller", None)
    if poller is None:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        if isinstance(conn, (PoolConnection, AsyncPoolConnection)):
            conn._idle_poller = poller
    return bool(poller.poll(0))


def check_idle(conn: psycopg.Connection[Any]) -> None:
    """Pool check: refuse a connection the server has closed, without a round trip."""
    if closed_by_server(conn):
        # Closed here too, so the pool discards it rather than offering it again.
        conn.close()
        raise psycopg.OperationalError("the server closed this idle connection")


async def acheck_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """Async twin of check_idle()."""
    if closed_by_server(conn):
        await conn.close()
        raise psycopg.OperationalError("the server closed this idle connection")


Op = Generator[Step, Any, Any]
#: An operation that returns a T: its steps' rows arrive as dicts, typed by
#: pgjobs.db.rows where the code reads them by name.
Returns = Generator[Step, Any, T]


class DatabaseUnavailable(PgJobsError, ConnectionError):
    """Postgres cannot be reached, or dropped the connection."""


class SchemaMissing(PgJobsError):
    """The database has no pgjobs schema yet: run `pgjobs migrate`."""


def describe(url: str) -> str:
    """A URL or DSN without its password, for error messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable connection string>"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


def check_url(url: str) -> None:
    """Raise ConfigurationError for a connection string libpq cannot parse, or an empty one."""
    if not url.strip():
        # libpq reads an empty string as "all defaults" ($PGHOST, a local
        # socket, the user's own name): a database nobody chose.
        raise ConfigurationError(
            "an empty URL is not a database: give a Postgres URL such as "
            "postgresql://user:password@host:5432/dbname (or a DSN, host=... dbname=...), "
            "or no URL at all to use $PGJOBS_URL"
        )
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"not a valid Postgres URL or DSN: {exc}") from None


#: A SQLAlchemy URL names its driver after the scheme (postgresql+psycopg://);
#: libpq knows postgresql:// and postgres:// only.
_DRIVER = re.compile(r"^(postgres(?:ql)?)\+([A-Za-z0-9_]*)://")
#: The drivers whose URLs are libpq URLs once the suffix is gone.
_PSYCOPG_DRIVERS = frozenset({"psycopg", "psycopg2"})


def normalize_url(url: str) -> str:
    """The connection string to hand libpq: checked as check_url() does, with the driver
    suffix of a SQLAlchemy-style postgresql+psycopg:// or postgresql+psycopg2:// URL
    taken off. Every URL the App or the CLI is given comes through here."""
    m = _DRIVER.match(url)
    if m is not None:
        if m.group(2) not in _PSYCOPG_DRIVERS:
            raise ConfigurationError(
                f"pgjobs connects with psycopg: a {m.group(0)} URL names another driver; "
                f"use {m.group(1)}:// (or {m.group(1)}+psycopg://)"
            )
        url = f"{m.group(1)}://{url[m.end() :]}"
    check_url(url)
    return url


_FIRST_LINE = re.compile(r"\s*\n.*", re.DOTALL)


def translate(exc: BaseException, url: str) -> PgJobsError | None:
    """A pgjobs error with a one-line message for a database failure, or None."""
    if isinstance(exc, psycopg.errors.UndefinedTable) and "pgjobs." in str(exc):
        return SchemaMissing(
            f"the database at {describe(url)} has no pgjobs schema: run `pgjobs migrate`"
        )
    if isinstance(exc, psycopg.OperationalError):
        reason = _FIRST_LINE.sub("", str(exc)).strip() or type(exc).__name__
        return DatabaseUnavailable(f"cannot reach Postgres at {describe(url)}: {reason}")
    return None


def sync_driver(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg connection behind a caller's connection (psycopg or SQLAlchemy)."""
    if isinstance(conn, psycopg.Connection):
        return conn
    module = type(conn).__module__
    if module.startswith("sqlalchemy"):
        if hasattr(conn, "get_bind") and callable(getattr(conn, "connection", None)):
            conn = conn.connection()  # a Session: its Connection in the current transaction
        raw = getattr(getattr(conn, "connection", None), "driver_connection", None)
        if isinstance(raw, psycopg.Connection):
            return raw
        raise ConfigurationError(
            "conn= takes a SQLAlchemy connection only with the psycopg (3) driver: "
            "use a postgresql+psycopg:// URL"
        )
    if isinstance(conn, psycopg.AsyncConnection):
        raise ConfigurationError("an async connection needs the async call: use aenqueue()")
    raise ConfigurationError(
        f"conn= takes a psycopg Connection or a SQLAlchemy Connection/Session, "
        f"not {type(conn).__name__}"
    )


async def async_driver(conn: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg async connection behind a caller's connection (psycopg or SQLAlchemy)."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    module = type(conn).__module__
    if module.startswith("sqlalchemy.ext.asyncio"):
        if hasattr(conn, "get_bind"):  # an AsyncSession
            conn = await conn.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        if isinstance(raw, psycopg.AsyncConnection):
            return raw
        raise ConfigurationError(
            "conn= takes a SQLAlchemy async connection only with the psycopg (3) driver: "
            "use a postgresql+psycopg:// URL"
        )
    if isinstance(conn, psycopg.Connection) or module.startswith("sqlalchemy"):
        raise ConfigurationError("a sync connection needs the sync call: use enqueue()")
    raise ConfigurationError(
        f"conn= takes a psycopg AsyncConnection or a SQLAlchemy AsyncConnection/AsyncSession, "
        f"not {type(conn).__name__}"
    )


class PoolConnection(psycopg.Connection[Any]):
    """A connection of the App's pool: it keeps the cursor pgjobs' operations run on."""

    _ops_cursor: psycopg.Cursor[DictRow] | None = None
    _idle_poller: select.poll | None = None
    _statements: _prepared.Statements | None = None

    def ops_cursor(self) -> psycopg.Cursor[DictRow]:
        """The cursor kept for pgjobs' operations, made again once closed."""
        cur = self._ops_cursor
        if cur is None or cur.closed:
            cur = self._ops_cursor = self.cursor(row_factory=dict_row)
        return cur

    def run_prepared(self, query: str, values: tuple[Any, ...]) -> list[DictRow]:
        """Rows of a positional query, prepared on this connection (pgjobs.db.prepared)."""
        s = self._statements
        if s is None:
            s = self._statements = _prepared.Statements(self)
        with self.lock:
            return self.wait(_prepared.run(s, query, values))

    def _deallocate(self, name: bytes | None) -> PQGen[None]:
        _prepared.forget_on_deallocate_all(self._statements, name)
        return super()._deallocate(name)


#: Seconds a connection set aside between the App's operations stays out of its pool.
KEEP_FOR = 5.0

_IDLE = psycopg.pq.TransactionStatus.IDLE


class Pool(ConnectionPool[PoolConnection]):
    """The App's sync pool: it sets one connection aside between the App's operations.

    A round through psycopg_pool (its lock, checks, statistics and log calls)
    was a sixth of a one-job enqueue's client instructions; the next operation
    takes the connection set aside instead. The connection goes back into the
    pool as soon as anyone waits for one (getconn(), connection(), or an
    operation that found none aside), and KEEP_FOR seconds after it left the
    pool, so that the pool's own care (lifetime, checks) still reaches it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._aside: list[tuple[PoolConnection, float]] = []
        self._waiters = 0  # callers waiting in ConnectionPool.getconn()
        self._closing = False
        self._aside_lock = threading.Lock()
        kwargs.setdefault("reconnect_timeout", RECONNECT_TIMEOUT)
        super().__init__(*args, **kwargs)

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        # Reconnect within RECONNECT_MAX_DELAY of the database coming back.
        super()._add_connection(attempt or _CappedBackoff(timeout=self.reconnect_timeout), growing)

    def getconn(self, timeout: float | None = None) -> PoolConnection:
        """A connection, as ConnectionPool.getconn(); one set aside is put back first."""
        return self._wait_for(timeout)

    def take(self) -> tuple[PoolConnection, float]:
        """A connection for one of the App's operations, and until when it may be set aside."""
        try:
            c, until = self._aside.pop()  # atomic: no two threads get the same one
        except IndexError:
            return self._wait_for(None), time.monotonic() + KEEP_FOR
        if closed_by_server(c):
            # Back to the pool, whose own check (check_idle) replaces it, quietly.
            super().putconn(c)
            return self._wait_for(None), time.monotonic() + KEEP_FOR
        return c, until

    def give_back(self, c: PoolConnection, until: float) -> None:
        """End an operation: set its connection aside, or return it to the pool."""
        if c.pgconn.transaction_status == _IDLE and time.monotonic() < until:
            # Under the lock with _wait_for(): either a waiter counted itself
            # first, and the connection goes to the pool, or it finds it aside.
            with self._aside_lock:
                if not self._waiters and not self._aside and not self._closing:
                    self._aside.append((c, until))
                    return
        super().putconn(c)

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool and every connection, the one set aside too."""
        with self._aside_lock:
            self._closing = True  # nothing is set aside from now on
        self._put_back_aside()
        super().close(timeout)

    def _wait_for(self, timeout: float | None) -> PoolConnection:
        with self._aside_lock:
            self._waiters += 1
        try:
            # Counted as waiting, so nothing more is set aside; and what was
            # is put back (by pop(), as take() does, never twice the same).
            self._put_back_aside()
            return super().getconn(timeout)
        finally:
            with self._aside_lock:
                self._waiters -= 1

    def _put_back_aside(self) -> None:
        while True:
            try:
                c, _ = self._aside.pop()
            except IndexError:
                return
            super().putconn(c)


class AsyncPoolConnection(psycopg.AsyncConnection[Any]):
    """Async twin of PoolConnection."""

    _ops_cursor: psycopg.AsyncCursor[DictRow] | None = None
    _idle_poller: select.poll | None = None
    _statements: _prepared.Statements | None = None

    def ops_cursor(self) -> psycopg.AsyncCursor[DictRow]:
        """The cursor kept for pgjobs' operations, made again once closed."""
        cur = self._ops_cursor
        if cur is None or cur.closed:
            cur = self._ops_cursor = self.cursor(row_factory=dict_row)
        return cur

    async def run_prepared(self, query: str, values: tuple[Any, ...]) -> list[DictRow]:
        """Async twin of PoolConnection.run_prepared()."""
        s = self._statements
        if s is None:
            s = self._statements = _prepared.Statements(self)
        async with self.lock:
            return await self.wait(_prepared.run(s, query, values))

    def _deallocate(self, name: bytes | None) -> PQGen[None]:
        _prepared.forget_on_deallocate_all(self._statements, name)
        return super()._deallocate(name)


#: The longest wait between two tries to reconnect a pool's connection. psycopg_pool
#: doubles its wait after each failed try without a bound, so past an outage of a
#: minute the first try after the database came back could be half a minute away.
RECONNECT_MAX_DELAY = 0.5
#: A pool keeps trying to reconnect for this long before it gives the connection up.
RECONNECT_TIMEOUT = 24 * 3600.0


class _CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's back-off between reconnection tries, at most RECONNECT_MAX_DELAY."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY)


class AsyncPool(AsyncConnectionPool[Any]):
    """An async pool that reconnects within RECONNECT_MAX_DELAY of the database coming back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("reconnect_timeout", RECONNECT_TIMEOUT)
        super().__init__(*args, **kwargs)

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        await super()._add_connection(
            attempt or _CappedBackoff(timeout=self.reconnect_timeout), growing
        )


# A cursor finds out how to send and read each type on its first statements
# (its adapters and their caches are its own), so a new cursor for every
# one-job enqueue found out again each time: 15 % of the client's CPU per
# enqueue, measured. So an operation on a connection that pgjobs took out of
# its own pool for that operation alone runs on the connection's kept cursor;
# one on a caller's connection, which other code may use meanwhile, gets a
# cursor of its own. A result of several rows is not kept alive in an idle
# connection: its cursor is closed, and the next operation makes another.
def _holds_rows(cur: psycopg.Cursor[DictRow] | psycopg.AsyncCursor[DictRow]) -> bool:
    return cur.pgresult is not None and cur.pgresult.ntuples > 1


#: The type of each column that a statement's {columns} slot may name.
COLUMN_TYPES: dict[str, str] = {
    "queue": "text",
    "status": "text",
    "priority": "smallint",
    "max_attempts": "int",
    "run_at": "timestamptz",
    "dedup_key": "text",
    "meta": "jsonb",
    "limited": "boolean",
}


class Columns(NamedTuple):
    """The parameters of a statement with a {columns} slot: the columns it names, all values."""

    names: tuple[str, ...]
    values: tuple[Any, ...]


@functools.cache
def statement(name: str, columns: tuple[str, ...] = ()) -> str:
    """A named statement naming `columns` after its fixed ones, with their parameters."""
    return (
        sql(name)
        .replace("{columns}", "".join(f", {c}" for c in columns))
        .replace("{values}", "".join(f", %s::{COLUMN_TYPES[c]}" for c in columns))
    )


def _fetched(rows: list[DictRow], fetch: Fetch) -> list[DictRow] | DictRow | None:
    """What a step asked for, of the rows its statement returned."""
    if fetch == "one":
        return rows[0] if rows else None
    return rows if fetch == "all" else None


def _query(name: str, params: Any) -> tuple[str, Any]:
    """A step's statement and its parameters: those of a Columns name its columns."""
    if isinstance(params, Columns):
        return statement(name, params.names), params.values
    return sql(name), params


def copy_statement(name: str, params: dict[str, Any]) -> str:
    """A COPY step's statement, with the columns it names after the fixed ones."""
    return statement(name, tuple(params.get("columns", ())))


def named(name: str, params: dict[str, Any] | None = None, fetch: Fetch = "all") -> Op:
    """An operation of one named statement: what it returns (rows, one row or None)."""
    return (yield name, params or {}, fetch)


def run(op: Op, conn: psycopg.Connection[Any]) -> Any:
    """Drive an operation over a sync connection."""
    with conn.cursor(row_factory=dict_row) as cur:
        return _drive(op, cur)


def run_pooled(op: Op, conn: PoolConnection) -> Any:
    """Drive an operation over a connection taken out of the App's pool for it alone."""
    return _drive(op, None, conn)


def _drive(op: Op, cur: psycopg.Cursor[DictRow] | None, own: PoolConnection | None = None) -> Any:
    # `own`: the connection, when pgjobs took it out of its pool for this
    # operation alone; its positional steps then skip the cursor, and the
    # others run on its kept one (`cur` is None until then).
    try:
        step = next(op)
        while True:
            name, params, fetch = step
            rows: list[DictRow] | DictRow | None
            if own is not None and isinstance(params, Columns):
                found = own.run_prepared(statement(name, params.names), params.values)
                step = op.send(_fetched(found, fetch))
                continue
            if cur is None:
                assert own is not None  # run_pooled() and arun_pooled() pass their connection
                cur = own.ops_cursor()
            if fetch == "copy":
                assert isinstance(params, dict)
                with cur.copy(copy_statement(name, params)) as copy:
                    for chunk in params["chunks"](cur.connection.info.encoding):
                        copy.write(chunk)
                step = op.send(None)
                continue
            cur.execute(*_query(name, params))
            if fetch == "one":
                rows = cur.fetchone()
            elif fetch == "all":
                rows = cur.fetchall()
            else:
                rows = None
            step = op.send(rows)
    except StopIteration as stop:
        return stop.value
    finally:
        if own is not None and cur is not None and _holds_rows(cur):
            cur.close()


async def arun(op: Op, conn: psycopg.AsyncConnection[Any]) -> Any:
    """Drive an operation over an async connection."""
    async with conn.cursor(row_factory=dict_row) as cur:
        return await _adrive(op, cur)


async def arun_pooled(op: Op, conn: AsyncPoolConnection) -> Any:
    """Async twin of run_pooled()."""
    return await _adrive(op, None, conn)


async def _adrive(
    op: Op, cur: psycopg.AsyncCursor[DictRow] | None, own: AsyncPoolConnection | None = None
) -> Any:
    try:
        step = next(op)
        while True:
            name, params, fetch = step
            rows: list[DictRow] | DictRow | None
            if own is not None and isinstance(params, Columns):
                found = await own.run_prepared(statement(name, params.names), params.values)
                step = op.send(_fetched(found, fetch))
                continue
            if cur is None:
                assert own is not None  # run_pooled() and arun_pooled() pass their connection
                cur = own.ops_cursor()
            if fetch == "copy":
                assert isinstance(params, dict)
                async with cur.copy(copy_statement(name, params)) as copy:
                    for chunk in params["chunks"](cur.connection.info.encoding):
                        await copy.write(chunk)
                step = op.send(None)
                continue
            await cur.execute(*_query(name, params))
            if fetch == "one":
                rows = await cur.fetchone()
            elif fetch == "all":
                rows = await cur.fetchall()
            else:
                rows = None
            step = op.send(rows)
    except StopIteration as stop:
        return stop.value
    finally:
        if own is not None and cur is not None and _holds_rows(cur):
            await cur.close()
