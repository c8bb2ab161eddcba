"""App: configuration, the task registry, and the calls on jobs.

The App is the composition root of pgjobs.client: it holds the settings, its Database
(pools, pgjobs.db.connections) and its registry (tasks, periodic tasks, hooks,
subscribers); each public call is a thin delegation to the module that does the work
(enqueue, admin, workflows).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, overload

import psycopg

from pgjobs.client import admin, enqueue
from pgjobs.client.calls import JobCalls
from pgjobs.client.encoding import NewJob, Options, split_item
from pgjobs.client.tasks import CATCH_UP, Periodic, Task
from pgjobs.core.cron import CronSchedule
from pgjobs.core.errors import ConfigurationError, InvalidArguments, UnknownTask
from pgjobs.core.jobs import Job
from pgjobs.core.retry import Backoff, ExceptionTypes, RetryPolicy
from pgjobs.db import driver
from pgjobs.db.connections import EMBEDDED, Database, resolve_url
from pgjobs.observe import horizon
from pgjobs.observe.events import Hook, check_event, check_topic
from pgjobs.observe.health import Threshold

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


class Runnable(Protocol):
    """A worker as App.run_worker() starts it."""

    def run(self) -> None: ...


#: What App.run_worker() runs: pgjobs.worker.Worker, wired in by the pgjobs package (the
#: worker is built on the client, which does not import it).
_worker: Callable[..., Runnable] | None = None


def use_worker(cls: Callable[..., Runnable]) -> None:
    """Set the class App.run_worker() runs (pgjobs/__init__.py passes pgjobs.worker.Worker)."""
    global _worker
    _worker = cls


class App(JobCalls):
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
            url = driver.normalize_url(url)
        self._url = url
        self.listen_url = None if listen_url is None else driver.normalize_url(listen_url)
        # Given no pooler mode, $PGJOBS_POOLER: the deployment says how its workers and web
        # server reach the database, as it does with $PGJOBS_URL.
        if pooler is None:
            self._pooler = driver.pooler_mode(os.environ.get("PGJOBS_POOLER"), "$PGJOBS_POOLER")
        else:
            self._pooler = driver.pooler_mode(pooler)
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
        #: Its pools, opened on first use, and how operations run on them.
        self.database = Database(self)
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
        if self.database.opened:
            raise ConfigurationError("the URL cannot change once the App has connected")
        self._url = value if value.strip() == EMBEDDED else driver.normalize_url(value)
        self.embedded = False

    @property
    def pooler(self) -> str | None:
        """The pooler mode: "transaction", or None (see the class's docstring)."""
        return self._pooler

    @pooler.setter
    def pooler(self, value: str | None) -> None:
        if self.database.opened:
            raise ConfigurationError("the pooler mode cannot change once the App has connected")
        self._pooler = driver.pooler_mode(value)

    def migrate(self) -> None:
        """Create or upgrade the pgjobs schema in the database (idempotent).

        Migrations started together (workers, `pgjobs migrate`) take turns:
        see pgjobs.migrations.LOCK_KEY. Behind a transaction pooler they run
        over listen_url where there is one (see pgjobs.migrations.locked()).
        """
        from sqlalchemy.exc import DBAPIError

        from pgjobs.db.migrations import upgrade

        with self.database.errors:
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
                        f"cannot migrate the database at {driver.describe(self.url)}: {reason}; "
                        "run `pgjobs migrate` as a role that may create the pgjobs schema"
                    ) from None
                raise exc.orig from None

    def check_schema(self) -> None:
        """Raise SchemaMissing unless `pgjobs migrate` has run on the database."""
        self.database.run(admin.schema_op())

    async def acheck_schema(self) -> None:
        """Async twin of check_schema()."""
        await self.database.arun(admin.schema_op())

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
        return enqueue.insert(self, self._event_jobs(event, payload), conn)

    async def apublish(self, event: str, payload: Any = None, *, conn: Any = None) -> list[Job]:
        """Async twin of publish()."""
        return await enqueue.ainsert(self, self._event_jobs(event, payload), conn)

    def _event_jobs(self, event: str, payload: Any) -> list[NewJob]:
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
        return enqueue.insert(self, [new], conn)[0]

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
        return (await enqueue.ainsert(self, [new], conn))[0]

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

    @property
    def pool(self) -> driver.Pool:
        """The App's own sync connection pool (opened on first use)."""
        return self.database.pool

    def connection(self) -> AbstractContextManager[driver.PoolConnection]:
        """A connection from the App's pool, in autocommit mode."""
        return self.database.connection()

    def aconnection(self) -> AbstractAsyncContextManager[driver.AsyncPoolConnection]:
        """Async twin of connection()."""
        return self.database.aconnection()

    def close(self) -> None:
        """Close the App's connection pools."""
        self.database.close()

    async def aclose(self) -> None:
        """Async twin of close()."""
        await self.database.aclose()

    # -- workers -------------------------------------------------------------------

    def run_worker(self, **options: Any) -> None:
        """Run a worker in this process until it is stopped (see pgjobs.worker.Worker)."""
        if _worker is None:  # pgjobs/__init__.py sets it: importing any of pgjobs runs it
            raise RuntimeError("no worker class: import pgjobs")
        _worker(self, **options).run()


def _types(value: ExceptionTypes | type[BaseException] | None) -> ExceptionTypes | None:
    if value is None:
        return None
    return value if isinstance(value, tuple) else (value,)
