"""App: configuration, connections, the task registry, and the calls on jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, overload

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgjobs import _db, logs, pipeline
from pgjobs.errors import (
    ConfigurationError,
    IllegalTransition,
    InvalidArguments,
    JobNotFound,
    UnknownTask,
)
from pgjobs.health import Threshold
from pgjobs.maintenance import horizon

if TYPE_CHECKING:
    from pgjobs.events import Hook
    from pgjobs.workflows import WorkflowInfo, WorkflowSummary
from pgjobs.jobs import (
    DeadLetter,
    Job,
    JobList,
    Status,
    _new_object,
    _set_attr,
    can_transition,
    new_job_ints,
    sources,
    uuid_of,
)
from pgjobs.retry import Backoff, ExceptionTypes, RetryPolicy
from pgjobs.tasks import (
    Encoded,
    NewJob,
    Options,
    Periodic,
    Task,
    check_options,
    encode_each,
    initial_status,
    prepare_many,
    split_item,
)

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Callable[..., Any])

DEFAULT_MAX_PAYLOAD = 1_048_576
#: The largest max_payload_bytes. A jsonb value holds at most 255 MiB, and
#: jsonb takes up to six times the room of compact JSON text (a small number,
#: two characters with its comma, is a 4-byte entry and an 8-byte numeric):
#: 32 MiB of text always fits.
MAX_PAYLOAD_LIMIT = 32 * 1_048_576


def _payload_limit_from_env() -> int:
    text = os.environ.get("PGJOBS_MAX_PAYLOAD_BYTES")
    if not text:
        return DEFAULT_MAX_PAYLOAD
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(
            f"$PGJOBS_MAX_PAYLOAD_BYTES must be a number of bytes, got {text!r}"
        ) from None


@dataclass(frozen=True)
class Page(Sequence[Job]):
    """One page of app.jobs(): the jobs, and the cursor for the next page (None at the end).

    Read it as the list of its jobs (iteration, len(), [i]), as a page of
    app.dead_letters() is read; `jobs` is that list.
    """

    jobs: list[Job]
    next_cursor: str | None

    def __len__(self) -> int:
        return len(self.jobs)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        return self.jobs[index]

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)


class DeadLetterPage(list[DeadLetter]):
    """A page of app.dead_letters(): a list, with the cursor of the next page (None at the end)."""

    next_cursor: str | None = None


@dataclass(frozen=True)
class QueueStats:
    """A queue's depth by status and the age, in seconds, of its oldest ready job."""

    queue: str
    counts: dict[str, int]
    oldest_pending_age: float | None

    @property
    def depth(self) -> int:
        """Jobs waiting to run: pending, scheduled and retrying."""
        return sum(self.counts.get(s, 0) for s in ("pending", "scheduled", "retrying"))


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job: which worker ran it, when, and how it ended."""

    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime
    outcome: str  # succeeded, failed (retried or not), cancelled, lost (its worker died)
    error: dict[str, Any] | None


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker: where it runs, what it serves, and when it last said so."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float  # seconds since its last heartbeat
    running: int  # jobs it runs now
    stuck: int = 0  # threads still running past a hard time limit: their slots are taken
    busy: int = 0  # slots taken: running + stuck


log = logging.getLogger("pgjobs")

#: The URL that asks for the embedded Postgres (pgjobs.embedded) by name.
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
        return _db.normalize_url(chosen), False
    from pgjobs import embedded

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


class App:
    """A pgjobs application: where the jobs live and which tasks exist.

    `url` is a Postgres URL or DSN, or "embedded"; without one, $PGJOBS_URL (see
    resolve_url() for the one rule every command follows).

    `pooler="transaction"` (else $PGJOBS_POOLER) says `url` leads through a pooler that
    gives each transaction whichever server connection is free (PgBouncer's
    pool_mode = transaction): pgjobs then keeps no session state on those
    connections, and what needs a session goes over `listen_url`, a direct URL
    (README: PgBouncer and other poolers).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        listen_url: str | None = None,
        pooler: str | None = None,
        max_payload_bytes: int | None = None,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        thresholds: Mapping[str, Threshold] | None = None,
        horizon_max_age: float | None = None,
    ) -> None:
        if url is not None and url.strip() != EMBEDDED:
            url = _db.normalize_url(url)
        self._url = url
        self.listen_url = None if listen_url is None else _db.normalize_url(listen_url)
        # Given no pooler mode, $PGJOBS_POOLER: the deployment says how its workers and web
        # server reach the database, as it does with $PGJOBS_URL.
        if pooler is None:
            self._pooler = _db.pooler_mode(os.environ.get("PGJOBS_POOLER"), "$PGJOBS_POOLER")
        else:
            self._pooler = _db.pooler_mode(pooler)
        self.max_payload_bytes = max_payload_bytes or _payload_limit_from_env()
        if not 1 <= self.max_payload_bytes <= MAX_PAYLOAD_LIMIT:
            raise ConfigurationError(
                f"max_payload_bytes must be between 1 and {MAX_PAYLOAD_LIMIT} "
                f"(32 MiB, what a jsonb value always holds), got {self.max_payload_bytes}"
            )
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.tasks: dict[str, Task] = {}
        self.periodics: dict[str, Periodic] = {}
        self._pool: _db.Pool | None = None
        self._apool: AsyncConnectionPool[_db.AsyncPoolConnection] | None = None
        self._apool_loop: asyncio.AbstractEventLoop | None = None
        self.embedded = False
        # Backlog limits per queue ("*" for every queue), for `pgjobs check` and /metrics.
        self.thresholds: dict[str, Threshold] = dict(thresholds or {})
        # Seconds a transaction, prepared transaction or replication slot may hold the
        # xmin horizon before the leader warns and `pgjobs check` and /metrics report it.
        self.horizon_max_age = horizon.max_age_setting(horizon_max_age)
        #: Hooks by event ("job.failed", ...; "job.*"), run by workers after commit.
        self.hooks: dict[str, list[Hook]] = {}
        #: Subscriber tasks by published event name.
        self.subscribers: dict[str, list[Task]] = {}
        # It holds nothing of a call's own, so one serves every call.
        self._map_errors = _MapErrors(self)

    # -- configuration -----------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL in use (see resolve_url()); resolving it may start the embedded
        Postgres."""
        if self._url is None or self._url.strip() == EMBEDDED:
            self._url, self.embedded = resolve_url(self._url)
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        if self._pool is not None or self._apool is not None:
            raise ConfigurationError("the URL cannot change once the App has connected")
        self._url = value if value.strip() == EMBEDDED else _db.normalize_url(value)
        self.embedded = False

    @property
    def pooler(self) -> str | None:
        """The pooler mode: "transaction", or None (see the class's docstring)."""
        return self._pooler

    @pooler.setter
    def pooler(self, value: str | None) -> None:
        if self._pool is not None or self._apool is not None:
            raise ConfigurationError("the pooler mode cannot change once the App has connected")
        self._pooler = _db.pooler_mode(value)

    def migrate(self) -> None:
        """Create or upgrade the pgjobs schema in the database (idempotent).

        Migrations started together (workers, `pgjobs migrate`) take turns:
        see pgjobs.migrations.LOCK_KEY. Behind a transaction pooler they run
        over listen_url where there is one (see pgjobs.migrations.locked()).
        """
        from sqlalchemy.exc import DBAPIError

        from pgjobs.migrations import upgrade

        with self._errors():
            try:
                if self.pooler is None:
                    upgrade(self.url)
                else:
                    upgrade(self.listen_url or self.url, pooler=self.pooler)
            except DBAPIError as exc:
                # Migrations run through SQLAlchemy, which wraps the driver's
                # errors: unwrapped, they map to pgjobs' one-line errors.
                if not isinstance(exc.orig, psycopg.Error):
                    raise
                if isinstance(exc.orig, psycopg.errors.InsufficientPrivilege):
                    reason = str(exc.orig).strip().splitlines()[0]
                    raise ConfigurationError(
                        f"cannot migrate the database at {_db.describe(self.url)}: {reason}; "
                        "run `pgjobs migrate` as a role that may create the pgjobs schema"
                    ) from None
                raise exc.orig from None

    def check_schema(self) -> None:
        """Raise SchemaMissing unless `pgjobs migrate` has run on the database."""
        self._run(_schema_op())

    async def acheck_schema(self) -> None:
        """Async twin of check_schema()."""
        await self._arun(_schema_op())

    # -- tasks -------------------------------------------------------------------

    @overload
    def task(self, fn: F, /) -> Task: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retries: int = 0,
        backoff: Backoff | None = None,
        retry_on: ExceptionTypes | None = None,
        fail_on: ExceptionTypes = (),
        timeout: float | None = None,
        soft_timeout: float | None = None,
        concurrency: int | None = None,
        rate_limit: str | None = None,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(  # type: ignore[misc]  # mypy misreads the positional-only default
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retries: int = 0,
        backoff: Backoff | None = None,
        retry_on: ExceptionTypes | None = None,
        fail_on: ExceptionTypes = (),
        timeout: float | None = None,
        soft_timeout: float | None = None,
        concurrency: int | None = None,
        rate_limit: str | None = None,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a function as a task: `@app.task` or `@app.task(queue=..., retries=...)`.

        `retries`: attempts after the first. `backoff`: the wait between them.
        `retry_on`: the only exceptions worth another attempt (default: any);
        `fail_on`: exceptions that fail the job at once. `soft_timeout` and
        `timeout`: the soft and hard time limits of one attempt, in seconds.
        `concurrency`: at most this many of its jobs run at once, across all
        workers; `rate_limit`: at most so many start per period ("100/m").
        """

        def register(f: Callable[..., Any]) -> Task:
            # name="" is refused by Task, not taken as "use the function's name".
            task_name = f.__name__ if name is None else name
            if task_name in self.tasks:
                raise ConfigurationError(f"a task named {task_name!r} is already registered")
            t = Task(
                self,
                f,
                name=task_name,
                queue=queue,
                priority=priority,
                policy=RetryPolicy(
                    retries=retries,
                    backoff=backoff or Backoff(),
                    retry_on=_types(retry_on),
                    fail_on=_types(fail_on) or (),
                ),
                timeout=timeout,
                soft_timeout=soft_timeout,
                concurrency=concurrency,
                rate_limit=rate_limit,
            )
            self.tasks[task_name] = t
            return t

        return register(fn) if fn is not None else register

    def periodic(
        self,
        schedule: str,
        *,
        timezone: str = "UTC",
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        catch_up: str = "latest",
    ) -> Callable[[Task | Callable[..., Any]], Task]:
        """Run a task on a cron schedule: `@app.periodic("*/5 * * * *", timezone="Europe/Paris")`.

        Put it above `@app.task(...)`, or on a plain function to make it a task
        with the defaults. Exactly one job per slot is enqueued however many
        workers run (the database decides). After downtime, `catch_up="latest"`
        runs the missed slots once; `"all"` runs each of them (at most 100).
        A six-field schedule has a leading seconds field.
        """
        from pgjobs.cron import CronSchedule
        from pgjobs.tasks import CATCH_UP, Periodic

        cron = CronSchedule(schedule, timezone=timezone)
        if catch_up not in CATCH_UP:
            raise ConfigurationError(
                f"catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}"
            )

        def register(target: Task | Callable[..., Any]) -> Task:
            task = target if isinstance(target, Task) else self.task(target)
            key = name or task.name
            if key in self.periodics:
                raise ConfigurationError(f"a periodic task named {key!r} is already registered")
            entry = Periodic(key, task, cron, tuple(args), kwargs, catch_up)
            entry.job_for(cron.next_after(datetime.now(UTC)))  # bad arguments fail here, at import
            self.periodics[key] = entry
            return task

        return register

    def on(self, event: str) -> Callable[[H], H]:
        """Register a hook for job transitions: `@app.on("job.failed")` (or "job.*").

        Workers call it with a JobEvent after the transition has committed, on
        a thread of their own (an async hook runs on the worker's event loop).
        Events: job.started, job.succeeded, job.retrying, job.failed, job.cancelled.
        """
        from pgjobs.events import check_event

        try:
            name = check_event(event)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

        def register(fn: H) -> H:
            self.hooks.setdefault(name, []).append(fn)
            return fn

        return register

    def subscriber(
        self, event: str, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], Task]:
        """Register a task that gets a job for each app.publish(event, payload).

        The function takes the payload as its one argument (type hints check
        it). `options` are @app.task's (queue, retries, ...); the task is named
        "<event>:<function>" unless `name` says otherwise.
        """
        from pgjobs.events import check_topic

        try:
            topic = check_topic(event)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

        def register(fn: Callable[..., Any]) -> Task:
            task_name = f"{topic}:{fn.__name__}" if name is None else name  # "" is refused
            task = self.task(name=task_name, **options)(fn)
            assert isinstance(task, Task)
            self.subscribers.setdefault(topic, []).append(task)
            return task

        return register

    def publish(self, event: str, payload: Any = None, *, conn: Any = None) -> list[Job]:
        """Insert one job per subscriber of `event`, in one statement (conn=: your transaction)."""
        return self._insert(self._event_jobs(event, payload), conn)

    async def apublish(self, event: str, payload: Any = None, *, conn: Any = None) -> list[Job]:
        """Async twin of publish()."""
        return await self._ainsert(self._event_jobs(event, payload), conn)

    def _event_jobs(self, event: str, payload: Any) -> list[NewJob]:
        from pgjobs.events import check_topic

        try:
            topic = check_topic(event)
        except ValueError as exc:
            raise InvalidArguments(str(exc), field="event") from None
        # Validated for every subscriber before any is inserted: all or none.
        return [t.prepare((payload,), {}, t.defaults) for t in self.subscribers.get(topic, [])]

    def get_task(self, name: str) -> Task:
        """The registered task of that name; raises UnknownTask."""
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTask(f"no task named {name!r} is registered (known: {known})") from None

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        dedup_key: str | None = None,
        dedup_window: float | None = None,
        conn: Any = None,
    ) -> Job:
        """Enqueue a registered task by name (what the CLI and the web API use)."""
        new = self._prepare_by_name(
            task, args, kwargs, queue, priority, delay, dedup_key, dedup_window
        )
        return self._insert([new], conn)[0]

    async def aenqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        dedup_key: str | None = None,
        dedup_window: float | None = None,
        conn: Any = None,
    ) -> Job:
        """Async twin of enqueue()."""
        new = self._prepare_by_name(
            task, args, kwargs, queue, priority, delay, dedup_key, dedup_window
        )
        return (await self._ainsert([new], conn))[0]

    def _prepare_by_name(
        self,
        task: str,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None,
        queue: str | None,
        priority: int | None,
        delay: float | None,
        dedup_key: str | None,
        dedup_window: float | None = None,
    ) -> NewJob:
        t = self.get_task(task)
        if not isinstance(args, (list, tuple)):
            raise InvalidArguments(f"task {task!r}: args must be a list, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise InvalidArguments(
                f"task {task!r}: kwargs must be an object, got {type(kwargs).__name__}"
            )
        opts = t.defaults
        opts = Options(
            # queue="" is refused by check_options(), not taken as "the task's queue".
            queue=opts.queue if queue is None else queue,
            priority=opts.priority if priority is None else priority,
            delay=delay,
            max_attempts=opts.max_attempts,
            dedup_key=dedup_key,
            dedup_window=dedup_window,
        )
        a, kw = split_item((list(args), kwargs or {}))
        return t.prepare(a, kw, opts)

    # -- connections -------------------------------------------------------------

    def _conn_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(1, int(self.connect_timeout)),
            "context": _db.ADAPTERS,
            **_db.connection_kwargs(self.pooler),
        }

    @property
    def pool(self) -> _db.Pool:
        """The App's own sync connection pool (opened on first use)."""
        if self._pool is None:
            self._probe()
            self._pool = _db.Pool(
                self.url,
                connection_class=_db.PoolConnection,
                min_size=1,
                max_size=self.pool_size,
                kwargs=self._conn_kwargs(),
                timeout=self.connect_timeout,
                check=_db.check_idle,
                open=False,
                name="pgjobs",
            )
            # Waiting for the first connection, which the first call needs anyway,
            # keeps that call from asking the pool to grow: a second connection
            # then stays, and the pool hands out the two in turn, each backend
            # colder than one would be (6 % of one-job enqueues, measured).
            self._pool.open(wait=True)
        return self._pool

    async def _get_apool(self) -> AsyncConnectionPool[_db.AsyncPoolConnection]:
        loop = asyncio.get_running_loop()
        if self._apool is None or self._apool_loop is not loop:
            if self._pool is None:
                await asyncio.to_thread(self._probe)
            # A pool belongs to the event loop that opened it; asyncio.run() twice
            # in one process gets a fresh pool rather than a dead one.
            self._apool = AsyncConnectionPool(
                self.url,
                connection_class=_db.AsyncPoolConnection,
                min_size=1,
                max_size=self.pool_size,
                kwargs=self._conn_kwargs(),
                timeout=self.connect_timeout,
                check=_db.acheck_idle,
                open=False,
                name="pgjobs-async",
            )
            await self._apool.open(wait=False)
            self._apool_loop = loop
        return self._apool

    def _probe(self) -> None:
        # One direct connection before the pool exists: a dead or wrong
        # database is then one clear error at once, rather than a pool that
        # retries in the background until its timeout.
        try:
            psycopg.connect(
                self.url,
                connect_timeout=max(1, int(self.connect_timeout)),
                **_db.connection_kwargs(self.pooler),
            ).close()
        except psycopg.Error as exc:
            raise (_db.translate(exc, self.url) or exc) from None

    def _errors(self) -> _MapErrors:
        """A context that turns pool and database failures into pgjobs errors."""
        return self._map_errors

    def _raise_mapped(self, exc: Exception) -> NoReturn:
        """Raise the pgjobs error for a pool or database failure (or `exc` itself)."""
        mapped = self._mapped(exc)
        if mapped is exc:
            raise exc
        raise mapped from exc

    def _mapped(self, exc: Exception) -> Exception:
        """The pgjobs error for a pool or database failure (or `exc` itself)."""
        if isinstance(exc, PoolTimeout):
            return self._unreachable()
        return _db.translate(exc, self.url) or exc

    def _unreachable(self) -> Exception:
        # The pool only says it timed out; one direct attempt tells why.
        try:
            psycopg.connect(
                self.url, connect_timeout=3, **_db.connection_kwargs(self.pooler)
            ).close()
        except psycopg.Error as exc:
            return _db.translate(exc, self.url) or exc
        return _db.DatabaseUnavailable(
            f"no connection to Postgres at {_db.describe(self.url)} became free within "
            f"{self.connect_timeout} s"
        )

    @contextlib.contextmanager
    def connection(self) -> Iterator[_db.PoolConnection]:
        """A connection from the App's pool, in autocommit mode."""
        with self._errors(), self.pool.connection() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def aconnection(self) -> AsyncIterator[_db.AsyncPoolConnection]:
        """Async twin of connection()."""
        with self._errors():
            pool = await self._get_apool()
            async with pool.connection() as conn:
                yield conn

    def _run(self, op: _db.Op, conn: Any = None, atomic: bool = False) -> Any:
        if conn is not None:
            c = _db.sync_driver(conn)
            with self._errors():
                # Inside the caller's transaction when there is one; an
                # autocommit connection gets a transaction of its own.
                if atomic and c.autocommit:
                    with c.transaction():
                        return _db.run(op, c)
                return _db.run(op, c)
        # Not through connection() or the pool's connection(): their `with conn`
        # commits on the way out, which on these autocommit connections does
        # nothing and still cost 4 % of a one-job enqueue. putconn() takes back a
        # connection in any state (rolled back, or replaced when broken). The
        # errors are mapped by hand: a `with` costs two calls, a `try` none.
        try:
            pool = self._pool or self.pool
            c, until = pool.take()
            try:
                if atomic:
                    with c.transaction():
                        return _db.run_pooled(op, c)
                return _db.run_pooled(op, c)
            finally:
                pool.give_back(c, until)
        except (PoolTimeout, psycopg.Error) as exc:
            self._raise_mapped(exc)

    async def _arun(self, op: _db.Op, conn: Any = None, atomic: bool = False) -> Any:
        if conn is not None:
            c = await _db.async_driver(conn)
            with self._errors():
                if atomic and c.autocommit:
                    async with c.transaction():
                        return await _db.arun(op, c)
                return await _db.arun(op, c)
        try:
            apool = await self._get_apool()
            ac = await apool.getconn()
            try:
                if atomic:
                    async with ac.transaction():
                        return await _db.arun_pooled(op, ac)
                return await _db.arun_pooled(op, ac)
            finally:
                await apool.putconn(ac)
        except (PoolTimeout, psycopg.Error) as exc:
            self._raise_mapped(exc)

    def close(self) -> None:
        """Close the App's connection pools."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._apool is not None and self._apool_loop is not None:
            if not self._apool_loop.is_closed() and not self._apool_loop.is_running():
                self._apool_loop.run_until_complete(self._apool.close())
            self._apool = None

    async def aclose(self) -> None:
        """Async twin of close()."""
        if self._apool is not None:
            await self._apool.close()
            self._apool = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- operations, written once for sync and async --------------------------------

    def _insert(self, rows: list[NewJob], conn: Any) -> list[Job]:
        if not rows:
            return []
        return self._run(_insert_op(self, rows), conn, atomic=_needs_tx(rows))  # type: ignore[no-any-return]

    async def _ainsert(self, rows: list[NewJob], conn: Any) -> list[Job]:
        if not rows:
            return []
        return await self._arun(_insert_op(self, rows), conn, atomic=_needs_tx(rows))  # type: ignore[no-any-return]

    def _insert_one(self, row: NewJob, conn: Any) -> Job:
        if row.dedup_key is not None:
            return self._insert([row], conn)[0]
        return self._run(_insert_one_op(self, row), conn)  # type: ignore[no-any-return]

    async def _ainsert_one(self, row: NewJob, conn: Any) -> Job:
        if row.dedup_key is not None:
            return (await self._ainsert([row], conn))[0]
        return await self._arun(_insert_one_op(self, row), conn)  # type: ignore[no-any-return]

    def _enqueue_many(self, task: Task, opts: Options, items: Iterable[Any], conn: Any) -> JobList:
        items = list(items)
        if len(items) < COPY_FROM or opts.dedup_key is not None:
            return JobList(self._insert(prepare_many(task, opts, items), conn))
        prepared = None
        if conn is not None and not _db.sync_driver(conn).autocommit:
            prepared = _validated(task, opts, items)
        return self._run(_copy_op(self, task, opts, items, prepared), conn, atomic=True)  # type: ignore[no-any-return]

    async def _aenqueue_many(
        self, task: Task, opts: Options, items: Iterable[Any], conn: Any
    ) -> JobList:
        items = list(items)
        if len(items) < COPY_FROM or opts.dedup_key is not None:
            return JobList(await self._ainsert(prepare_many(task, opts, items), conn))
        prepared = None
        if conn is not None and not (await _db.async_driver(conn)).autocommit:
            prepared = _validated(task, opts, items)
        op = _copy_op(self, task, opts, items, prepared)
        return await self._arun(op, conn, atomic=True)  # type: ignore[no-any-return]

    def get_job(self, job_id: uuid.UUID | str) -> Job:
        """The job with that id, as it is now.

        Raises JobNotFound (a LookupError) when no job has that id: it never
        existed, or retention has pruned it since it ended; and when `job_id`
        is not a UUID at all.
        """
        return self._run(_get_op(self, _as_id(job_id)))  # type: ignore[no-any-return]

    async def aget_job(self, job_id: uuid.UUID | str) -> Job:
        """Async twin of get_job(): raises JobNotFound the same way."""
        return await self._arun(_get_op(self, _as_id(job_id)))  # type: ignore[no-any-return]

    def _job_status(self, job_id: uuid.UUID) -> tuple[str, Any, Any]:
        return self._run(_status_op(job_id))  # type: ignore[no-any-return]

    async def _ajob_status(self, job_id: uuid.UUID) -> tuple[str, Any, Any]:
        return await self._arun(_status_op(job_id))  # type: ignore[no-any-return]

    def jobs(
        self,
        *,
        status: Status | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Jobs, newest first, filtered; pass the page's next_cursor to get the next page."""
        return self._run(_list_op(self, status, queue, task, limit, cursor))  # type: ignore[no-any-return]

    async def ajobs(
        self,
        *,
        status: Status | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Async twin of jobs()."""
        return await self._arun(_list_op(self, status, queue, task, limit, cursor))  # type: ignore[no-any-return]

    def queues(self) -> list[QueueStats]:
        """Every queue with its depth by status and the age of its oldest ready job."""
        return self._run(_queues_op())  # type: ignore[no-any-return]

    async def aqueues(self) -> list[QueueStats]:
        """Async twin of queues()."""
        return await self._arun(_queues_op())  # type: ignore[no-any-return]

    def attempts(self, job_id: uuid.UUID | str) -> list[Attempt]:
        """A job's attempts in order: who ran each, when, and how it ended."""
        return self._run(_attempts_op(_as_id(job_id)))  # type: ignore[no-any-return]

    async def aattempts(self, job_id: uuid.UUID | str) -> list[Attempt]:
        """Async twin of attempts()."""
        return await self._arun(_attempts_op(_as_id(job_id)))  # type: ignore[no-any-return]

    def workers(self) -> list[WorkerInfo]:
        """The workers registered now, with their heartbeat age and running jobs."""
        return self._run(_workers_op())  # type: ignore[no-any-return]

    async def aworkers(self) -> list[WorkerInfo]:
        """Async twin of workers()."""
        return await self._arun(_workers_op())  # type: ignore[no-any-return]

    def finished_series(self, window: float = 3600, step: float = 60) -> list[dict[str, Any]]:
        """Jobs ended per queue and bucket of `step` seconds over the last `window` seconds."""
        return self._run(_series_op(window, step))  # type: ignore[no-any-return]

    async def afinished_series(
        self, window: float = 3600, step: float = 60
    ) -> list[dict[str, Any]]:
        """Async twin of finished_series()."""
        return await self._arun(_series_op(window, step))  # type: ignore[no-any-return]

    def cancel(self, job_id: uuid.UUID | str) -> Job:
        """Cancel a job: a waiting one ends `cancelled` now, a running one once its worker stops it.

        Returns the job as it is now; for a running job `cancel_requested` is
        True until its worker has stopped it, wherever that worker runs.
        """
        return self._run(_cancel_op(self, _as_id(job_id)))  # type: ignore[no-any-return]

    async def acancel(self, job_id: uuid.UUID | str) -> Job:
        """Async twin of cancel()."""
        return await self._arun(_cancel_op(self, _as_id(job_id)))  # type: ignore[no-any-return]

    # -- dead letters and replay -----------------------------------------------------

    def dead_letters(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        limit: int = 50,
        cursor: uuid.UUID | str | None = None,
    ) -> DeadLetterPage:
        """Jobs that failed for good, newest first; pass its next_cursor as cursor for more."""
        op = _dead_letters_op(task, queue, since, before, limit, cursor)
        return self._run(op)  # type: ignore[no-any-return]

    async def adead_letters(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        limit: int = 50,
        cursor: uuid.UUID | str | None = None,
    ) -> DeadLetterPage:
        """Async twin of dead_letters()."""
        op = _dead_letters_op(task, queue, since, before, limit, cursor)
        return await self._arun(op)  # type: ignore[no-any-return]

    def get_dead_letter(self, job_id: uuid.UUID | str) -> DeadLetter:
        """The dead letter of one job; raises JobNotFound when it has none."""
        return self._run(_dead_letter_op(_as_id(job_id)))  # type: ignore[no-any-return]

    async def aget_dead_letter(self, job_id: uuid.UUID | str) -> DeadLetter:
        """Async twin of get_dead_letter()."""
        return await self._arun(_dead_letter_op(_as_id(job_id)))  # type: ignore[no-any-return]

    def replay(self, job_id: uuid.UUID | str) -> Job:
        """Run a failed or cancelled job again, with as many attempts as it first had.

        It leaves the dead letters and keeps its history: attempt numbers go on
        from where they stopped. Raises IllegalTransition for a job in another status.
        """
        return self.replay_many([job_id])[0]

    async def areplay(self, job_id: uuid.UUID | str) -> Job:
        """Async twin of replay()."""
        return (await self.areplay_many([job_id]))[0]

    def replay_many(self, job_ids: Sequence[uuid.UUID | str]) -> list[Job]:
        """replay() for several jobs at once: all of them, or (on any error) none."""
        ids = [_as_id(i) for i in job_ids]
        with pipeline.after_commit(pipeline.of(self)):
            return self._run(_replay_op(self, ids), atomic=True)  # type: ignore[no-any-return]

    async def areplay_many(self, job_ids: Sequence[uuid.UUID | str]) -> list[Job]:
        """Async twin of replay_many()."""
        ids = [_as_id(i) for i in job_ids]
        with pipeline.after_commit(pipeline.of(self)):
            return await self._arun(_replay_op(self, ids), atomic=True)  # type: ignore[no-any-return]

    def replay_dead_letters(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        everything: bool = False,
    ) -> list[uuid.UUID]:
        """Replay the dead letters matching the filters (all: everything=True); returns the ids."""
        op = _bulk_replay_op(task, queue, since, before, everything)
        with pipeline.after_commit(pipeline.of(self)):
            return self._run(op, atomic=True)  # type: ignore[no-any-return]

    async def areplay_dead_letters(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        everything: bool = False,
    ) -> list[uuid.UUID]:
        """Async twin of replay_dead_letters()."""
        op = _bulk_replay_op(task, queue, since, before, everything)
        with pipeline.after_commit(pipeline.of(self)):
            return await self._arun(op, atomic=True)  # type: ignore[no-any-return]

    def purge_dead_letters(
        self,
        job_ids: Sequence[uuid.UUID | str] | None = None,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        everything: bool = False,
    ) -> int:
        """Forget dead letters for good: these ids, those matching the filters, or everything=True.

        The jobs stay `failed` with their history. Returns how many were purged.
        """
        op = _purge_op(job_ids, task, queue, since, before, everything)
        return self._run(op)  # type: ignore[no-any-return]

    async def apurge_dead_letters(
        self,
        job_ids: Sequence[uuid.UUID | str] | None = None,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        everything: bool = False,
    ) -> int:
        """Async twin of purge_dead_letters()."""
        op = _purge_op(job_ids, task, queue, since, before, everything)
        return await self._arun(op)  # type: ignore[no-any-return]

    # -- workflows -----------------------------------------------------------------

    def get_workflow(self, workflow_id: uuid.UUID | str) -> WorkflowInfo:
        """A workflow as it is now: its shape, status, and its steps, each a Job (WorkflowStep)."""
        from pgjobs.workflows import get_workflow_op

        return self._run(get_workflow_op(_as_id(workflow_id), self))  # type: ignore[no-any-return]

    async def aget_workflow(self, workflow_id: uuid.UUID | str) -> WorkflowInfo:
        """Async twin of get_workflow()."""
        from pgjobs.workflows import get_workflow_op

        op = get_workflow_op(_as_id(workflow_id), self)
        return await self._arun(op)  # type: ignore[no-any-return]

    def workflows(
        self, *, limit: int = 50, cursor: uuid.UUID | str | None = None
    ) -> tuple[list[WorkflowSummary], str | None]:
        """Workflows, newest first, with how far each got; and the next page's cursor."""
        from pgjobs.workflows import list_workflows_op

        op = list_workflows_op(limit, None if cursor is None else _as_id(cursor))
        return self._run(op)  # type: ignore[no-any-return]

    async def aworkflows(
        self, *, limit: int = 50, cursor: uuid.UUID | str | None = None
    ) -> tuple[list[WorkflowSummary], str | None]:
        """Async twin of workflows()."""
        from pgjobs.workflows import list_workflows_op

        op = list_workflows_op(limit, None if cursor is None else _as_id(cursor))
        return await self._arun(op)  # type: ignore[no-any-return]

    def cancel_workflow(self, workflow_id: uuid.UUID | str) -> tuple[int, int]:
        """Cancel every step that has not ended: (cancelled now, running ones asked to stop)."""
        from pgjobs.workflows import cancel_workflow_op

        return self._run(cancel_workflow_op(_as_id(workflow_id)))  # type: ignore[no-any-return]

    async def acancel_workflow(self, workflow_id: uuid.UUID | str) -> tuple[int, int]:
        """Async twin of cancel_workflow()."""
        from pgjobs.workflows import cancel_workflow_op

        return await self._arun(cancel_workflow_op(_as_id(workflow_id)))  # type: ignore[no-any-return]

    # -- workers -------------------------------------------------------------------

    def run_worker(self, **options: Any) -> None:
        """Run a worker in this process until it is stopped (see pgjobs.worker.Worker)."""
        from pgjobs.worker import Worker

        Worker(self, **options).run()


def _types(value: ExceptionTypes | type[BaseException] | None) -> ExceptionTypes | None:
    if value is None:
        return None
    return value if isinstance(value, tuple) else (value,)


def _as_id(job_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(str(job_id))
    except ValueError:
        raise JobNotFound(f"{job_id!r} is not a job id (a UUID)") from None


#: From this many jobs without dedup keys, enqueue_many() uses COPY. Below it,
#: one INSERT ... unnest statement is cheaper than COPY's extra round trips.
COPY_FROM = 100


def _needs_tx(rows: list[NewJob]) -> bool:
    return any(r.dedup_key for r in rows)


def _one_job_params(r: NewJob) -> _db.Columns:
    """The parameters of the enqueue_job statement for one job (its columns: past_defaults())."""
    values = (r.queue, r.status, r.priority, r.max_attempts, r.run_at, r.dedup_key, r.meta_json)
    if values == _ALL_DEFAULTS and not r.limited:  # most jobs: no dict to build
        return _db.Columns((), (r.id, r.task, r.args_json, r.kwargs_json))
    named = past_defaults(dict(zip(_ONE_JOB_COLUMNS, values, strict=True), limited=r.limited))
    return _db.Columns(tuple(named), (r.id, r.task, r.args_json, r.kwargs_json, *named.values()))


def _insert_one_op(app: App, r: NewJob) -> _db.Op:
    """One job without a dedup key: the most common enqueue, with nothing to look up."""
    started = logs.clock()
    row = yield "enqueue_job", _one_job_params(r), "one"
    logs.enqueued((r,), started)
    return _fresh_job(r, row["created_at"], set(_JOB_FIELDS_SET), {"_app": app})


def _insert_op(app: App, rows: list[NewJob]) -> _db.Op:
    found: dict[uuid.UUID, Job] = {}
    fresh: list[NewJob] = []
    # A key used twice in one batch: the later rows get the earlier row's job.
    keyed_here: dict[str, NewJob] = {}
    same_as: dict[uuid.UUID, NewJob] = {}
    for r in rows:
        if r.dedup_key is None:
            fresh.append(r)
            continue
        if r.dedup_key in keyed_here:
            same_as[r.id] = keyed_here[r.dedup_key]
            continue
        taken = yield (
            "claim_dedup_key",
            {"key": r.dedup_key, "job_id": r.id, "window_seconds": r.window_seconds},
            "one",
        )
        if taken is not None:
            fresh.append(r)
            keyed_here[r.dedup_key] = r
            continue
        existing = yield "job_for_dedup_key", {"key": r.dedup_key}, "one"
        if existing is None:  # cannot happen while the key row holds its job
            raise RuntimeError(f"dedup key {r.dedup_key!r} points at no job")
        job = Job.from_row(existing, app)
        found[r.id] = job.model_copy(update={"deduplicated": True})
        found[r.id]._app = app
    started = logs.clock()
    if len(fresh) == 1:
        r = fresh[0]
        row = yield "enqueue_job", _one_job_params(r), "one"
        created_at = row["created_at"]
    elif fresh:
        row = yield (
            "enqueue_jobs",
            {
                "ids": [r.id for r in fresh],
                "tasks": [r.task for r in fresh],
                "queues": [r.queue for r in fresh],
                "statuses": [r.status for r in fresh],
                "priorities": [r.priority for r in fresh],
                "args": [r.args_json for r in fresh],
                "kwargs": [r.kwargs_json for r in fresh],
                "max_attempts": [r.max_attempts for r in fresh],
                "run_ats": [r.run_at for r in fresh],
                "dedup_keys": [r.dedup_key for r in fresh],
                "metas": [r.meta_json for r in fresh],
                "limited": [r.limited for r in fresh],
            },
            "one",
        )
        created_at = row["created_at"]
    # Only the jobs inserted here: a deduplicated one did not change.
    logs.enqueued(fresh, started)
    out: list[Job] = []
    built: dict[uuid.UUID, Job] = {}
    make = _JobMaker(app, created_at if fresh else None)
    for r in rows:
        if r.id in found:
            out.append(found[r.id])
            continue
        if r.id in same_as:
            first = built[same_as[r.id].id]
            twin = first.model_copy(update={"deduplicated": True})
            twin._app = app
            out.append(twin)
            continue
        job = make(r)
        built[r.id] = job
        out.append(job)
    return out


def _validated(task: Task, opts: Options, items: list[Any]) -> list[Encoded]:
    """A large batch checked whole before anything is sent, so as never to abort a transaction."""
    check_options(opts)
    return list(encode_each(task, items))


def _copy_op(
    app: App, task: Task, opts: Options, items: list[Any], prepared: list[Encoded] | None
) -> _db.Op:
    """A large batch by COPY. Without `prepared`, items are validated as they stream.

    Streaming overlaps our Python with the server's work. It is used only in a
    transaction of pgjobs' own: a bad item aborts the COPY and so inserts nothing,
    as when everything is validated first (which a caller's open transaction
    gets, so that a bad item never aborts it).
    """
    run_at, _ = check_options(opts)
    status = initial_status(run_at)
    row = yield "copy_jobs_begin", {"status": status, "queue": opts.queue}, "one"
    created_at = row["now"]
    shared = _copy_shared(task, opts, run_at)
    source = encode_each(task, items) if prepared is None else prepared
    # What the jobs are made from when they are read (see JobList): ids as
    # integers and arguments as JSON text, neither an object the garbage
    # collector tracks. A thousand Jobs made here, each with its dict, UUID
    # and lists, cost more than the rest of the call, most of it in the
    # collections they set off.
    ints: list[int] = []
    args_json: list[str] = []
    kwargs_json: list[str] = []

    def chunks(encoding: str) -> Iterator[bytes]:
        # The rows in COPY's binary format, written here rather than by
        # psycopg's write_row(), COPY_CHUNK at a time.
        head, tail = _copy_row_parts(task.name, shared, encoding)
        yield COPY_START
        start = 0
        for _, _, a_json, k_json in source:
            args_json.append(a_json)
            kwargs_json.append(k_json)
            if len(args_json) - start == COPY_CHUNK:
                yield rows(start, head, tail)
                start += COPY_CHUNK
        if len(args_json) > start:
            yield rows(start, head, tail)
        yield COPY_END

    def rows(start: int, head: bytes, tail: bytes) -> bytes:
        new = new_job_ints(len(args_json) - start)
        ints.extend(new)
        return _copy_rows(new, args_json[start:], kwargs_json[start:], head, tail)

    started = logs.clock()
    yield "copy_jobs", {"columns": tuple(shared), "chunks": chunks}, "copy"
    make = _JobMaker(app, created_at).batch(task.name, opts, status, run_at)
    jobs = JobList.later(ints, lambda i: make(ints[i], args_json[i], kwargs_json[i]))
    logs.enqueued(jobs, started)
    return jobs


def _copy_shared(task: Task, opts: Options, run_at: datetime | None) -> dict[str, Any]:
    """The values past id, args, kwargs and task that every row of one COPY shares.

    Those that are the table's own defaults are left to it: Postgres then
    neither reads nor converts them for each row (the rows' server CPU fell by
    a seventh with them left out, measured on 30,000 rows).
    """
    shared: dict[str, Any] = {
        "queue": opts.queue,
        "status": initial_status(run_at),
        "priority": opts.priority,
        "max_attempts": opts.max_attempts,
        # Unset, run_at is now(): the transaction's start, as created_at is.
        "run_at": run_at,
        "meta": _NO_META,
        "limited": task.limited,
    }
    return past_defaults(shared)


def past_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The values an insert of jobs names: those that are not the table's defaults.

    The rest are left to the table: Postgres then neither reads nor converts
    them (an unset run_at is now(), the transaction's start, as created_at is).
    """
    return {c: v for c, v in values.items() if v is not None and v != COLUMN_DEFAULTS.get(c)}


#: The defaults of pgjobs.jobs' columns that past_defaults() leaves out
#: (run_at's is now()); a test holds them to the schema's.
COLUMN_DEFAULTS: dict[str, Any] = {
    "queue": "default",
    "status": "pending",
    "priority": 0,
    "max_attempts": 1,
    "meta": "{}",
    "limited": False,
}

#: The columns of a job that _one_job_params() reads first, and their defaults.
_ONE_JOB_COLUMNS = ("queue", "status", "priority", "max_attempts", "run_at", "dedup_key", "meta")
_ALL_DEFAULTS = tuple(COLUMN_DEFAULTS.get(c) for c in _ONE_JOB_COLUMNS)

#: The meta of a job enqueued by enqueue_many(): nothing (events and workflows set theirs).
_NO_META = "{}"

# COPY's binary format: the rows are sent as the types' own binary forms, which
# Postgres takes as they are (the text format had it split each line and parse
# a UUID out of hex, a sixth of its CPU per row); and a row costs less to write
# here than as text. A field is its length (4 bytes) and its bytes.
COPY_START = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
COPY_END = b"\xff\xff"  # a row of -1 fields
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _jsonb_head(size: int) -> bytes:
    """The start of a jsonb field for JSON text of `size` bytes: the length, format version 1."""
    return struct.pack(">ib", size + 1, 1)


def _jsonb_field(text: str) -> bytes:
    """JSON text (ASCII) as a jsonb field."""
    return _jsonb_head(len(text)) + text.encode()


#: _jsonb_head() of each size up to 511: a list lookup, where packing the head
#: for each row cost more than the rest of the row.
_JSONB_HEADS = [_jsonb_head(n) for n in range(512)]
_NO_KWARGS = _jsonb_field("{}")


def _text_field(text: str, encoding: str) -> bytes:
    data = text.encode(encoding)
    return struct.pack(">i", len(data)) + data


_FIELDS: dict[str, Callable[[Any, str], bytes]] = {
    "queue": _text_field,
    "status": _text_field,
    "priority": lambda v, _: struct.pack(">ih", 2, v),
    "max_attempts": lambda v, _: struct.pack(">ii", 4, v),
    # timestamptz: microseconds since 2000-01-01 UTC.
    "run_at": lambda v, _: struct.pack(">iq", 8, (v - _PG_EPOCH) // _MICROSECOND),
    "meta": lambda v, _: _jsonb_field(v),
    "limited": lambda v, _: struct.pack(">i?", 1, v),
}


def _copy_row_parts(task_name: str, shared: dict[str, Any], encoding: str) -> tuple[bytes, bytes]:
    """What each row of one COPY starts with (its field count, the id's length) and ends with."""
    head = struct.pack(">hi", 4 + len(shared), 16)
    tail = _text_field(task_name, encoding)
    return head, tail + b"".join(_FIELDS[c](v, encoding) for c, v in shared.items())


def _copy_rows(
    ids: list[int], args_json: list[str], kwargs_json: list[str], head: bytes, tail: bytes
) -> bytes:
    """Rows of COPY's binary format: id (a UUID's integer), args and kwargs of each."""
    # The JSON text is ASCII (json escapes the rest), so its length is its size
    # in bytes, and it reads the same in any client encoding.
    return b"".join(
        [
            b"%b%b%b%b%b%b"
            % (
                head,
                i.to_bytes(16),
                _JSONB_HEADS[len(a)] if len(a) < 512 else _jsonb_head(len(a)),
                a.encode(),
                _NO_KWARGS if k == "{}" else _jsonb_field(k),
                tail,
            )
            for i, a, k in zip(ids, args_json, kwargs_json, strict=True)
        ]
    )


#: Rows per write during a COPY (about 12 KB): each is sent as soon as it is
#: made, so the server inserts rows while the rest are still being validated,
#: and the last chunk leaves it little to do after the end. Measured per
#: 1,000-job call: 128 rows 7.9-8.4 ms, 256 rows 8.0-8.5, 1,000 rows 11.2.
COPY_CHUNK = 128


class _MapErrors:
    """App._errors(): a class, not a generator, as it wraps every operation."""

    __slots__ = ("app",)

    def __init__(self, app: App) -> None:
        self.app = app

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if isinstance(exc, (PoolTimeout, psycopg.Error)):
            self.app._raise_mapped(exc)
        return False


_STATUSES = {s.value: s for s in Status}


def _job_template() -> tuple[dict[str, Any], frozenset[str]]:
    """The fields of a job just inserted, before its own values, and the fields it sets."""
    # Fields a new job has before any attempt; the rest are the model's defaults.
    model = Job.model_construct(
        id=uuid.UUID(int=0),
        task="",
        queue="",
        status=Status.PENDING,
        attempts=0,
        started_at=None,
        finished_at=None,
        result=None,
        error=None,
        progress=None,
        worker_id=None,
        deduplicated=False,
    )
    fields_set = frozenset(model.model_fields_set) | {
        "priority",
        "args",
        "kwargs",
        "max_attempts",
        "created_at",
        "run_at",
        "dedup_key",
    }
    return dict(model.__dict__), fields_set


_JOB_BASE, _JOB_FIELDS_SET = _job_template()


def _job(fields: dict[str, Any], fields_set: set[str], private: dict[str, Any]) -> Job:
    """A Job of these fields, built the way pydantic's own model_copy() builds a copy.

    The values come from our own validated rows, so validating them again (or
    model_construct(), three times the cost) buys nothing, and a thousand-job
    batch would feel it. `fields_set` and `private` may be shared by the jobs of
    one call: pydantic changes neither in place on a frozen model (an assignment
    raises first; model_copy() copies both), and those jobs have the same app.
    """
    job = _new_object(Job)
    _set_attr(job, "__dict__", fields)
    _set_attr(job, "__pydantic_fields_set__", fields_set)
    _set_attr(job, "__pydantic_extra__", None)
    _set_attr(job, "__pydantic_private__", private)
    return job


def _fresh_job(
    r: NewJob, created_at: datetime | None, fields_set: set[str], private: dict[str, Any]
) -> Job:
    """The Job of a row just inserted, as the database now holds it."""
    # A copy of a dict that has every key, then stores over its values: a
    # quarter of what building the dict from `**base` and the new values
    # costs, which inserts every key again and grows the table twice.
    fields = _JOB_BASE.copy()
    fields["created_at"] = created_at
    fields["id"] = r.id
    fields["task"] = r.task
    fields["queue"] = r.queue
    fields["status"] = _STATUSES[r.status]
    fields["priority"] = r.priority
    fields["args"] = r.args
    fields["kwargs"] = r.kwargs
    fields["max_attempts"] = r.max_attempts
    fields["run_at"] = r.run_at or created_at
    fields["dedup_key"] = r.dedup_key
    return _job(fields, fields_set, private)


class _JobMaker:
    """Jobs for the rows of one insert, which share their created_at and app."""

    def __init__(self, app: App, created_at: datetime | None) -> None:
        self.created_at = created_at
        self.fields_set = set(_JOB_FIELDS_SET)
        self.private = {"_app": app}

    def batch(
        self, task: str, opts: Options, status: str, run_at: datetime | None
    ) -> Callable[[int, str, str], Job]:
        """Jobs of one enqueue_many() call, which share all but their id and arguments."""
        base = _JOB_BASE.copy()
        base["created_at"] = self.created_at
        base["task"] = task
        base["queue"] = opts.queue
        base["status"] = _STATUSES[status]
        base["priority"] = opts.priority
        base["max_attempts"] = opts.max_attempts
        base["run_at"] = run_at or self.created_at
        base["dedup_key"] = None
        fields_set, private = self.fields_set, self.private

        def make(job_id: int, args_json: str, kwargs_json: str) -> Job:
            # The arguments as written: their JSON text, read back.
            fields = base.copy()
            fields["id"] = uuid_of(job_id)
            fields["args"] = json.loads(args_json)
            fields["kwargs"] = json.loads(kwargs_json)
            return _job(fields, fields_set, private)

        return make

    def __call__(self, r: NewJob) -> Job:
        return _fresh_job(r, self.created_at, self.fields_set, self.private)


def _get_op(app: App, job_id: uuid.UUID) -> _db.Op:
    row = yield "get_job", {"id": job_id}, "one"
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    return Job.from_row(row, app)


def _status_op(job_id: uuid.UUID) -> _db.Op:
    row = yield "get_job_status", {"id": job_id}, "one"
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    return row["status"], row["result"], row["error"]


def _list_op(
    app: App,
    status: Status | str | None,
    queue: str | None,
    task: str | None,
    limit: int,
    cursor: str | None,
) -> _db.Op:
    if status is not None:
        try:
            status = Status(status).value
        except ValueError:
            names = ", ".join(s.value for s in Status)
            raise InvalidArguments(f"unknown status {status!r} (one of: {names})") from None
    if not 1 <= limit <= 1000:
        raise InvalidArguments(f"limit must be between 1 and 1000, got {limit}")
    _plain_text(queue=queue, task=task)
    cursor_id = None
    if cursor:
        try:
            cursor_id = uuid.UUID(cursor)
        except ValueError:
            raise InvalidArguments(f"invalid cursor {cursor!r}") from None
    rows = yield (
        "list_jobs",
        {
            "status": status,
            "queue": queue,
            "task": task,
            "cursor": cursor_id,
            "limit": limit,
        },
        "all",
    )
    jobs = [Job.from_row(r, app) for r in rows[:limit]]
    next_cursor = str(jobs[-1].id) if len(rows) > limit else None
    return Page(jobs=jobs, next_cursor=next_cursor)


def _queues_op() -> _db.Op:
    rows = yield "queue_stats", {}, "all"
    stats: dict[str, QueueStats] = {}
    for r in rows:
        q = stats.setdefault(r["queue"], QueueStats(r["queue"], {}, None))
        q.counts[r["status"]] = r["jobs"]
        if r["oldest_age"] is not None:
            stats[r["queue"]] = QueueStats(q.queue, q.counts, float(r["oldest_age"]))
    return list(stats.values())


def _schema_op() -> _db.Op:
    row = yield "schema_version", {}, "one"
    if not row["migrated"]:
        raise _db.SchemaMissing("the database has no pgjobs schema: run `pgjobs migrate`")


def task_summary_op(ids: Sequence[uuid.UUID]) -> _db.Op:
    """Per-task counts and timings for a set of jobs (the demo's summary table)."""
    rows = yield "task_summary", {"ids": list(ids)}, "all"
    return rows


def _attempts_op(job_id: uuid.UUID) -> _db.Op:
    job = yield "get_job_status", {"id": job_id}, "one"
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    rows = yield "job_attempts", {"id": job_id}, "all"
    return [Attempt(**r) for r in rows]


def _workers_op() -> _db.Op:
    rows = yield "list_workers", {}, "all"
    return [
        WorkerInfo(**{**r, "queues": list(r["queues"]), "heartbeat_age": float(r["heartbeat_age"])})
        for r in rows
    ]


def _series_op(window: float, step: float) -> _db.Op:
    if not 1 <= step <= window <= 31 * 86400:
        raise InvalidArguments(
            f"need 1 <= step <= window <= 31 days, got step {step} s, window {window} s"
        )
    rows = yield "finished_series", {"window": window, "step": step}, "all"
    return [dict(r) for r in rows]


def _cancel_op(app: App, job_id: uuid.UUID) -> _db.Op:
    # A job that waits ends here; a running one is its worker's to stop, so
    # it is only asked to (the worker hears of it by NOTIFY, or by its poll).
    waiting = [s for s in sources(Status.CANCELLED) if s != Status.RUNNING]
    row = yield "cancel_job", {"id": job_id, "from_statuses": waiting}, "one"
    if row is not None:
        pipeline.of(app).rows([row], by=pipeline.ADMIN)  # committed: autocommit
        return Job.from_row(row, app)
    asked = yield "request_cancel", {"id": job_id}, "one"
    if asked is not None:
        return Job.from_row(asked, app)
    # Neither waiting nor running: it has ended (or just has).
    current = yield "get_job", {"id": job_id}, "one"
    if current is None:
        raise JobNotFound(f"no job with id {job_id}")
    return Job.from_row(current, app)


#: The statuses a job is replayed from: it failed for good or was cancelled.
_REPLAYABLE = [Status.FAILED.value, Status.CANCELLED.value]
assert all(can_transition(s, Status.PENDING) for s in _REPLAYABLE)


def _plain_text(**values: str | None) -> None:
    # Postgres text cannot hold NUL: say which filter has one instead of a DataError.
    for name, value in values.items():
        if value is not None and "\x00" in value:
            raise InvalidArguments(f"{name} must not contain a NUL character", field=name)


def _filters(
    task: str | None, queue: str | None, since: datetime | None, before: datetime | None
) -> dict[str, Any]:
    _plain_text(task=task, queue=queue)
    for label, moment in (("since", since), ("before", before)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidArguments(f"{label} must be timezone-aware (e.g. datetime.now(UTC))")
    return {"task": task, "queue": queue, "since": since, "before": before}


def _dead_letters_op(
    task: str | None,
    queue: str | None,
    since: datetime | None,
    before: datetime | None,
    limit: int,
    cursor: uuid.UUID | str | None,
) -> _db.Op:
    if not 1 <= limit <= 1000:
        raise InvalidArguments(f"limit must be between 1 and 1000, got {limit}")
    params = _filters(task, queue, since, before)
    params.update(limit=limit, cursor=None if cursor is None else _as_id(cursor))
    rows = yield "list_dead_letters", params, "all"
    # The query reads one row more than the page: whether another page follows.
    page = DeadLetterPage(DeadLetter.from_row(r) for r in rows[:limit])
    page.next_cursor = str(page[-1].job_id) if len(rows) > limit else None
    return page


def _dead_letter_op(job_id: uuid.UUID) -> _db.Op:
    row = yield "get_dead_letter", {"id": job_id}, "one"
    if row is None:
        raise JobNotFound(f"no dead letter for job {job_id}")
    return DeadLetter.from_row(row)


def _replay_op(app: App, job_ids: list[uuid.UUID]) -> _db.Op:
    params = _filters(None, None, None, None)
    params.update(ids=job_ids, from_statuses=_REPLAYABLE)
    rows = yield "replay_jobs", params, "all"
    replayed = {r["id"] for r in rows}
    jobs = []
    for job_id in job_ids:
        row = yield "get_job", {"id": job_id}, "one"
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        job = Job.from_row(row, app)
        if job_id not in replayed:
            # Raised inside the transaction: none of the others is replayed either.
            raise IllegalTransition(
                f"job {job_id} is {job.status.value}: only failed or cancelled jobs can be replayed"
            )
        jobs.append(job)
    # Reported only now: until here an IllegalTransition would undo every replay.
    pipeline.admin(rows, reason="replayed")
    return jobs


def _require_scope(
    what: str, filters: dict[str, Any], everything: bool, ids: object = None
) -> None:
    if ids is None and not everything and all(v is None for v in filters.values()):
        raise InvalidArguments(
            f"{what} needs a filter (task, queue, since, before) or everything=True"
        )


def _bulk_replay_op(
    task: str | None,
    queue: str | None,
    since: datetime | None,
    before: datetime | None,
    everything: bool,
) -> _db.Op:
    params = _filters(task, queue, since, before)
    _require_scope("replaying dead letters", params, everything)
    params.update(ids=None, from_statuses=_REPLAYABLE)
    rows = yield "replay_jobs", params, "all"
    pipeline.admin(rows, reason="replayed")
    return [r["id"] for r in rows]


def _purge_op(
    job_ids: Sequence[uuid.UUID | str] | None,
    task: str | None,
    queue: str | None,
    since: datetime | None,
    before: datetime | None,
    everything: bool,
) -> _db.Op:
    params = _filters(task, queue, since, before)
    _require_scope("purging dead letters", params, everything, job_ids)
    params["ids"] = None if job_ids is None else [_as_id(i) for i in job_ids]
    rows = yield "purge_dead_letters", params, "all"
    return len(rows)
