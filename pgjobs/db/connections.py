"""Where pgjobs' connections come from: which database, direct connections, and the pools.

resolve_url() is the one rule that picks the database (App, every CLI command, the
worker, the web server). connect() and aconnect() open a direct connection with the
settings a pooler mode needs, session() a worker's long-lived one and worker_pool() a
worker's pool: nothing else in pgjobs opens a connection or builds a pool (make lint
checks it, tools/db_path.py); Database holds an App's two pools (sync and async), opens
them on first use, runs operations (driver.Op) on them or on a caller's connection, and
turns pool and driver failures into pgjobs errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal, NoReturn, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgjobs.core.errors import ConfigurationError
from pgjobs.db import driver, embedded
from pgjobs.db.driver import DatabaseUnavailable

log = logging.getLogger("pgjobs")

#: The URL that asks for the embedded Postgres (pgjobs.db.embedded) by name.
EMBEDDED = "embedded"


def resolve_url(explicit: str | None) -> tuple[str, bool]:
    """Which database to use, and whether it is the embedded one: the one rule for the App,
    every CLI command, the worker and the web server.

    An explicit URL (App(url), --url) wins over $PGJOBS_URL. The embedded Postgres is used
    when asked for by name ("embedded", e.g. PGJOBS_URL=embedded) or, with nothing
    configured at all, only when the `embedded` extra is installed, with a WARNING naming
    its data folder; otherwise nothing configured is a ConfigurationError that says how to
    set it. A job enqueued into a database no worker reads is worse than an error.
    """
    chosen = explicit if explicit is not None else os.environ.get("PGJOBS_URL")
    if chosen is not None and chosen.strip() != EMBEDDED:
        return driver.normalize_url(chosen), False
    if chosen is None:
        if not embedded.available():
            raise ConfigurationError(
                "no database configured: give App(url=...) or --url, or set PGJOBS_URL "
                "(postgresql://user:password@host:5432/dbname); PGJOBS_URL=embedded starts a "
                "private Postgres (pip install 'pgjobs[embedded]')"
            )
        log.warning(
            "no database configured (App(url), --url, $PGJOBS_URL): using the embedded "
            "Postgres in %s",
            embedded.data_dir(),
        )
    return embedded.start(), True


def connect(url: str, *, pooler: str | None = None, **settings: Any) -> psycopg.Connection[Any]:
    """A direct connection, with what a pooler mode needs (driver.connection_kwargs())."""
    return psycopg.connect(url, **settings, **driver.connection_kwargs(pooler))


async def aconnect(
    url: str, *, pooler: str | None = None, **settings: Any
) -> psycopg.AsyncConnection[Any]:
    """Async twin of connect()."""
    return await psycopg.AsyncConnection.connect(
        url, **settings, **driver.connection_kwargs(pooler)
    )


async def session(
    url: str, *, pooler: str | None, connect_timeout: int, **settings: Any
) -> psycopg.AsyncConnection[Any]:
    """A worker's long-lived connection of its own (LISTEN, the leader's lock, the upkeep,
    the goodbye): autocommit, `connect_timeout` whole seconds, and KEEPALIVE, so that a peer
    gone without a word is noticed within about 30 s rather than the OS's two hours."""
    return await aconnect(
        url,
        pooler=pooler,
        autocommit=True,
        connect_timeout=connect_timeout,
        **driver.KEEPALIVE,
        **settings,
    )


def worker_pool(
    url: str,
    *,
    pooler: str | None,
    connect_timeout: float,
    min_size: int,
    max_size: int,
    name: str,
    configure: Callable[[Any], Awaitable[None]] | None = None,
    max_idle: float | None = None,
) -> driver.AsyncPool:
    """A pool of a worker's (not yet open): autocommit, rows as dicts read with
    driver.ADAPTERS, KEEPALIVE, the pooler's rules, idle connections checked without a round
    trip (driver.acheck_idle), and reconnection within driver.RECONNECT_MAX_DELAY of the
    database coming back. `configure` sets up each new connection (session settings)."""
    extra: dict[str, Any] = {} if max_idle is None else {"max_idle": max_idle}
    return driver.AsyncPool(
        url,
        min_size=min_size,
        max_size=max_size,
        configure=configure,
        name=name,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "context": driver.ADAPTERS,
            **driver.KEEPALIVE,
            **driver.connection_kwargs(pooler),
        },
        timeout=connect_timeout,
        check=driver.acheck_idle,
        open=False,
        connection_class=driver.AsyncPoolConnection,
        **extra,
    )


class Settings(Protocol):
    """What a Database reads of its owner when it opens a pool (the App has them)."""

    @property
    def url(self) -> str: ...

    @property
    def pooler(self) -> str | None: ...

    pool_size: int
    connect_timeout: float


class Database:
    """An App's pools and how operations run on them.

    The settings are read from `settings` when a pool opens, so that an App's URL,
    pool size and timeout may be set until its first call.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sync_pool: driver.Pool | None = None
        self.async_pool: AsyncConnectionPool[driver.AsyncPoolConnection] | None = None
        self.async_loop: asyncio.AbstractEventLoop | None = None
        # It holds nothing of a call's own, so one serves every call.
        self.errors = MapErrors(self)

    @property
    def opened(self) -> bool:
        """Whether a pool has opened (the URL and pooler mode are then fixed)."""
        return self.sync_pool is not None or self.async_pool is not None

    def _conn_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(1, int(self.settings.connect_timeout)),
            "context": driver.ADAPTERS,
            **driver.connection_kwargs(self.settings.pooler),
        }

    @property
    def pool(self) -> driver.Pool:
        """The sync connection pool (opened on first use)."""
        if self.sync_pool is None:
            self.probe()
            s = self.settings
            self.sync_pool = driver.Pool(
                s.url,
                connection_class=driver.PoolConnection,
                min_size=1,
                max_size=s.pool_size,
                kwargs=self._conn_kwargs(),
                timeout=s.connect_timeout,
                check=driver.check_idle,
                open=False,
                name="pgjobs",
            )
            # Waiting for the first connection, which the first call needs anyway,
            # keeps that call from asking the pool to grow: a second connection
            # then stays, and the pool hands out the two in turn, each backend
            # colder than one would be.
            self.sync_pool.open(wait=True)
        return self.sync_pool

    async def apool(self) -> AsyncConnectionPool[driver.AsyncPoolConnection]:
        """The async connection pool of the running event loop (opened on first use)."""
        loop = asyncio.get_running_loop()
        if self.async_pool is None or self.async_loop is not loop:
            if self.sync_pool is None:
                await asyncio.to_thread(self.probe)
            # A pool belongs to the event loop that opened it; asyncio.run() twice
            # in one process gets a fresh pool rather than a dead one.
            s = self.settings
            self.async_pool = AsyncConnectionPool(
                s.url,
                connection_class=driver.AsyncPoolConnection,
                min_size=1,
                max_size=s.pool_size,
                kwargs=self._conn_kwargs(),
                timeout=s.connect_timeout,
                check=driver.acheck_idle,
                open=False,
                name="pgjobs-async",
            )
            await self.async_pool.open(wait=False)
            self.async_loop = loop
        return self.async_pool

    def probe(self) -> None:
        """One direct connection before the pool exists: a dead or wrong database is then
        one clear error at once, rather than a pool that retries in the background until
        its timeout."""
        s = self.settings
        try:
            connect(s.url, pooler=s.pooler, connect_timeout=max(1, int(s.connect_timeout))).close()
        except psycopg.Error as exc:
            raise (driver.translate(exc, s.url) or exc) from None

    def raise_mapped(self, exc: Exception) -> NoReturn:
        """Raise the pgjobs error for a pool or database failure (or `exc` itself)."""
        mapped = self.mapped(exc)
        if mapped is exc:
            raise exc
        raise mapped from exc

    def mapped(self, exc: Exception) -> Exception:
        """The pgjobs error for a pool or database failure (or `exc` itself)."""
        if isinstance(exc, PoolTimeout):
            return self._unreachable()
        return driver.translate(exc, self.settings.url) or exc

    def _unreachable(self) -> Exception:
        # The pool only says it timed out; one direct attempt tells why.
        s = self.settings
        try:
            connect(s.url, pooler=s.pooler, connect_timeout=3).close()
        except psycopg.Error as exc:
            return driver.translate(exc, s.url) or exc
        return DatabaseUnavailable(
            f"no connection to Postgres at {driver.describe(s.url)} became free within "
            f"{s.connect_timeout} s"
        )

    @contextlib.contextmanager
    def connection(self) -> Iterator[driver.PoolConnection]:
        """A connection from the sync pool, in autocommit mode."""
        with self.errors, self.pool.connection() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def aconnection(self) -> AsyncIterator[driver.AsyncPoolConnection]:
        """Async twin of connection()."""
        with self.errors:
            pool = await self.apool()
            async with pool.connection() as conn:
                yield conn

    def run(self, op: driver.Op, conn: Any = None, atomic: bool = False) -> Any:
        """Run an operation on `conn` (the caller's, in its transaction) or a pooled one.

        `atomic`: in a transaction of its own where the connection is in none.
        """
        if conn is not None:
            c = driver.sync_driver(conn)
            with self.errors:
                if atomic and c.autocommit:
                    with c.transaction():
                        return driver.run(op, c)
                return driver.run(op, c)
        # Not through connection() or the pool's connection(): their `with conn`
        # commits on the way out, which on these autocommit connections does
        # nothing and still costs a one-job enqueue. putconn() takes back a
        # connection in any state (rolled back, or replaced when broken). The
        # errors are mapped by hand: a `with` costs two calls, a `try` none.
        try:
            pool = self.sync_pool or self.pool
            c, until = pool.take()
            try:
                if atomic:
                    with c.transaction():
                        return driver.run_pooled(op, c)
                return driver.run_pooled(op, c)
            finally:
                pool.give_back(c, until)
        except (PoolTimeout, psycopg.Error) as exc:
            self.raise_mapped(exc)

    async def arun(self, op: driver.Op, conn: Any = None, atomic: bool = False) -> Any:
        """Async twin of run()."""
        if conn is not None:
            c = await driver.async_driver(conn)
            with self.errors:
                if atomic and c.autocommit:
                    async with c.transaction():
                        return await driver.arun(op, c)
                return await driver.arun(op, c)
        try:
            apool = await self.apool()
            ac = await apool.getconn()
            try:
                if atomic:
                    async with ac.transaction():
                        return await driver.arun_pooled(op, ac)
                return await driver.arun_pooled(op, ac)
            finally:
                await apool.putconn(ac)
        except (PoolTimeout, psycopg.Error) as exc:
            self.raise_mapped(exc)

    async def close_loop_pool(self) -> None:
        """Close the async pool if the running event loop opened it (its loop is ending)."""
        if self.async_pool is not None and self.async_loop is asyncio.get_running_loop():
            await self.async_pool.close()
            self.async_pool = None
            self.async_loop = None

    def close(self) -> None:
        """Close both pools."""
        if self.sync_pool is not None:
            self.sync_pool.close()
            self.sync_pool = None
        if self.async_pool is not None and self.async_loop is not None:
            if not self.async_loop.is_closed() and not self.async_loop.is_running():
                self.async_loop.run_until_complete(self.async_pool.close())
            self.async_pool = None

    async def aclose(self) -> None:
        """Async twin of close()."""
        if self.async_pool is not None:
            await self.async_pool.close()
            self.async_pool = None
        if self.sync_pool is not None:
            self.sync_pool.close()
            self.sync_pool = None


class MapErrors:
    """Database.errors: turns pool and driver failures into pgjobs errors. A class, not a
    generator, as it wraps every operation."""

    __slots__ = ("database",)

    def __init__(self, database: Database) -> None:
        self.database = database

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if isinstance(exc, (PoolTimeout, psycopg.Error)):
            self.database.raise_mapped(exc)
        return False
