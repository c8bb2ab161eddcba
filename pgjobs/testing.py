"""Testing tasks like the rest of your code: run them as a worker would, assert what was enqueued.

- perform(task, *args, **kwargs) runs one attempt here and now, through the
  worker's own path: the arguments are validated and encoded as enqueue does,
  read back from JSON and decoded as a worker does, the task runs with
  current_job() set (on a thread for a `def` task, as in a worker), and its
  result is encoded as a worker stores it. It returns what job.wait() would,
  or raises the task's exception. aperform() is its async twin.
- drain(app) runs the jobs that are ready in the database with a real
  in-process Worker(app, burst=True), and says which jobs it ran.
- enqueued(app, task=..., args=..., kwargs=..., queue=...) lists the matching
  jobs in the database; assert_enqueued() and refute_enqueued() fail with the
  list of what was enqueued.
- temporary_database() and reset() give a test run a database of its own and
  empty it between tests; the pytest plugin (pgjobs.pytest_plugin) is built
  on them.

Nothing in pgjobs imports this module: it is for tests only.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql as psql
from pydantic import TypeAdapter

from pgjobs.client.app import App
from pgjobs.client.encoding import Signature, to_json
from pgjobs.client.host import Host
from pgjobs.client.tasks import Enqueuer, Task
from pgjobs.core.errors import ConfigurationError
from pgjobs.core.jobs import Job, Status
from pgjobs.db import driver
from pgjobs.db.connections import connect
from pgjobs.worker.executor import Executor, Outcome
from pgjobs.worker.worker import Worker

__all__ = [
    "WAITING",
    "Drained",
    "adrain",
    "aperform",
    "assert_enqueued",
    "drain",
    "enqueued",
    "perform",
    "refute_enqueued",
    "reset",
    "temporary_database",
]

T = TypeVar("T")

#: The statuses enqueued() looks at by default: jobs waiting to run.
WAITING: tuple[Status, ...] = (Status.BLOCKED, Status.SCHEDULED, Status.PENDING, Status.RETRYING)

#: How many jobs a failed assertion lists before it says how many more there are.
LISTED = 20


# -- perform: one attempt, in-process ------------------------------------------------


class _Executor(Executor):
    """The worker's Executor, keeping the exception a failed attempt raised."""

    error: Exception | None = None

    def failed(
        self, row: Mapping[str, Any], task: Task | None, exc: Exception, elapsed: float
    ) -> Outcome:
        self.error = exc
        return super().failed(row, task, exc, elapsed)


def _enqueuer(task: Task | Enqueuer) -> Enqueuer:
    if isinstance(task, Enqueuer):
        return task
    if isinstance(task, Task):
        return Enqueuer(task, task.defaults)
    raise TypeError(
        "perform() takes a task made with @app.task (or task.options(...)), "
        f"got {type(task).__name__}"
    )


def perform(task: Task | Enqueuer, /, *args: Any, **kwargs: Any) -> Any:
    """Run one attempt of `task` here and now, as a worker would; return its stored result.

    The arguments go through enqueue's validation (the same errors) and a JSON
    round trip; the task sees current_job() (attempt 1, its queue, max_attempts
    and dedup key from `task.options(...)` when given one), and its time
    limits apply. The return value is what job.wait() would give: the result
    after the worker's JSON encoding. The task's exception is raised as is; no
    retry is run. perform() itself writes nothing to the database (the task may).
    """
    _refuse_running_loop("perform", "aperform")
    return _run(_enqueuer(task).task.app, lambda: aperform(task, *args, **kwargs))


async def aperform(task: Task | Enqueuer, /, *args: Any, **kwargs: Any) -> Any:
    """Async twin of perform(), for tests that run in an event loop."""
    enqueuer = _enqueuer(task)
    target = enqueuer.task
    new = enqueuer.prepare(args, kwargs)  # validated and encoded exactly as enqueue does
    # The worker reads the arguments back from jsonb: from the JSON text, here.
    row: dict[str, Any] = {
        "id": new.id,
        "task": target.name,
        "queue": new.queue,
        "attempt": 1,
        "max_attempts": new.max_attempts,
        "dedup_key": new.dedup_key,
        "args": json.loads(new.args_json),
        "kwargs": json.loads(new.kwargs_json),
    }
    executor = _Executor({target.name: target}, threads=1, report_progress=_checked_progress)
    try:
        outcome = await executor.run(executor.prepare(row))
    finally:
        executor.shutdown()
    if executor.error is not None:
        raise executor.error
    if outcome.status is not Status.SUCCEEDED or outcome.result is None:
        raise RuntimeError(f"the attempt of {target.name!r} ended {outcome.outcome}")
    return json.loads(outcome.result)


def _checked_progress(job_id: uuid.UUID, text: str) -> None:
    # A worker writes the latest value in batches; perform() keeps none. What a
    # worker could not store, set_progress() has refused before it gets here.
    return


def _refuse_running_loop(name: str, twin: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{name}() cannot run inside a running event loop; "
        f"use `await pgjobs.testing.{twin}(...)` there"
    )


def _run(app: Host, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on an event loop of its own, and close what it opened on that loop."""

    async def main() -> T:
        try:
            return await make()
        finally:
            # An async task that enqueued opened the App's async pool on this
            # loop, which ends here: closed now rather than left to the
            # garbage collector with a dead loop.
            await app.database.close_loop_pool()

    return asyncio.run(main())


# -- drain: the jobs in the database, with a real worker -------------------------------


@dataclass(frozen=True)
class Drained:
    """The jobs a drain() ran, each as it is after the drain, in the order they first started."""

    jobs: list[Job]

    @property
    def counts(self) -> dict[str, int]:
        """How many of them are in each status now: {"succeeded": 3, "failed": 1}."""
        return dict(Counter(job.status.value for job in self.jobs))

    @property
    def succeeded(self) -> int:
        return sum(1 for job in self.jobs if job.status is Status.SUCCEEDED)

    @property
    def failed(self) -> int:
        """Jobs that failed for good (those that will retry are in counts["retrying"])."""
        return sum(1 for job in self.jobs if job.status is Status.FAILED)

    def __len__(self) -> int:
        return len(self.jobs)


def drain(app: App, queues: Sequence[str] | None = None, **worker_options: Any) -> Drained:
    """Run the jobs that are ready with an in-process burst Worker, until none is left.

    `queues`: the queues to drain; by default every queue of the App's tasks.
    Jobs the run enqueues or unblocks (workflow steps, retries due at once)
    run too; scheduled jobs and retries that wait for a later time do not.
    `worker_options` go to pgjobs.Worker (concurrency=, queue_order=, ...).
    """
    _refuse_running_loop("drain", "adrain")
    worker = _burst_worker(app, queues, worker_options)
    _run(app, lambda: worker.arun(install_signal_handlers=False))
    return _ran_by(app, worker.id)


async def adrain(app: App, queues: Sequence[str] | None = None, **worker_options: Any) -> Drained:
    """Async twin of drain()."""
    worker = _burst_worker(app, queues, worker_options)
    await worker.arun(install_signal_handlers=False)
    return _ran_by(app, worker.id)


def _burst_worker(app: App, queues: Sequence[str] | None, options: dict[str, Any]) -> Worker:
    if queues is None:
        queues = sorted({task.defaults.queue for task in app.tasks.values()})
        if not queues:
            raise ConfigurationError(
                "drain(): the App has no tasks, so there is no queue to drain; "
                "register its tasks first, or pass queues=[...]"
            )
    elif isinstance(queues, str):
        queues = [queues]  # one name, not its letters
    return Worker(app, queues=queues, burst=True, **options)


def _ran_by(app: App, worker_id: str) -> Drained:
    # Every attempt a worker ends leaves a row in pgjobs.attempts under its id.
    with app.connection() as conn:
        rows = driver.run(driver.named("testing_ran_by", {"worker_id": worker_id}), conn)
    return Drained([Job.from_row(row, app) for row in rows])


# -- enqueued: what is in the database -------------------------------------------------

_ANY = TypeAdapter(Any)


def _statuses(status: Status | str | Collection[Status | str] | None) -> list[str] | None:
    if status is None:
        return None
    chosen = [status] if isinstance(status, str) else list(status)
    try:
        return [Status(s).value for s in chosen]
    except ValueError:
        names = ", ".join(s.value for s in Status)
        raise ValueError(f"unknown status in {status!r} (one of: {names})") from None


def _encode_value(sig: Signature | None, param: str | None, label: str, value: Any) -> Any:
    """One argument as enqueue stores it: through its parameter's type where there is one."""
    if sig is not None and param is not None:
        p = sig.sig.parameters[param]
        return sig.convert(p, label, value, to_json=True)
    return _ANY.dump_python(value, mode="json")


def _encode_args(sig: Signature | None, args: Sequence[Any]) -> list[Any]:
    out = []
    for i, value in enumerate(args):
        param = None
        if sig is not None and i < len(sig.positional):
            param = sig.positional[i].name
        elif sig is not None and sig.var_positional is not None:
            param = sig.var_positional.name
        out.append(_encode_value(sig, param, param or str(i), value))
    return list(json.loads(to_json(out)))


def _encode_kwargs(sig: Signature | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        param = None
        if sig is not None:
            p = sig.sig.parameters.get(key)
            if p is not None and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                param = key
            elif sig.var_keyword is not None:
                param = sig.var_keyword.name
        out[key] = _encode_value(sig, param, key, value)
    return dict(json.loads(to_json(out)))


@dataclass(frozen=True)
class _Filter:
    task: str | None
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    queue: str | None
    statuses: list[str] | None

    def matches(self, job: Job) -> bool:
        return (
            (self.task is None or job.task == self.task)
            and (self.queue is None or job.queue == self.queue)
            and (self.args is None or job.args == self.args)
            and (self.kwargs is None or job.kwargs == self.kwargs)
        )

    def describe(self) -> str:
        parts = [
            f"{name}={value!r}"
            for name, value in (
                ("task", self.task),
                ("args", self.args),
                ("kwargs", self.kwargs),
                ("queue", self.queue),
            )
            if value is not None
        ]
        return ", ".join(parts) or "any job"

    def statuses_text(self) -> str:
        return "any status" if self.statuses is None else "status " + "/".join(self.statuses)


def _filter(
    app: App,
    task: Task | str | None,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    queue: str | None,
    status: Status | str | Collection[Status | str] | None,
) -> _Filter:
    sig = None
    name = None
    if isinstance(task, Task):
        name, sig = task.name, task.signature
    elif task is not None:
        name = task
        known = app.tasks.get(task)
        sig = known.signature if known is not None else None
    if isinstance(args, (str, bytes)) or (args is not None and isinstance(args, Mapping)):
        raise TypeError(f"args= is the list of positional arguments, got {args!r}")
    return _Filter(
        task=name,
        # Compared as stored: validated through the task's types and made JSON,
        # so (1, 2) matches [1, 2] and a model matches its fields.
        args=None if args is None else _encode_args(sig, args),
        kwargs=None if kwargs is None else _encode_kwargs(sig, kwargs),
        queue=queue,
        statuses=_statuses(status),
    )


def _jobs(app: App, task: str | None, queue: str | None, statuses: list[str] | None) -> list[Job]:
    params = {"task": task, "queue": queue, "statuses": statuses}
    with app.connection() as conn:
        rows = driver.run(driver.named("testing_enqueued", params), conn)
    return [Job.from_row(row, app) for row in rows]


def enqueued(
    app: App,
    *,
    task: Task | str | None = None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    status: Status | str | Collection[Status | str] | None = WAITING,
) -> list[Job]:
    """The jobs in the database that match, oldest first.

    Every filter is optional. `args` and `kwargs` must equal the job's, compared
    after the encoding enqueue does (through the task's parameter types, to
    JSON). `status`: by default the jobs waiting to run (WAITING); a status or
    several; None for any.
    """
    f = _filter(app, task, args, kwargs, queue, status)
    return [job for job in _jobs(app, f.task, f.queue, f.statuses) if f.matches(job)]


def _call_text(job: Job) -> str:
    parts = [repr(a) for a in job.args] + [f"{k}={v!r}" for k, v in job.kwargs.items()]
    return f"{job.task}({', '.join(parts)}) queue={job.queue!r} status={job.status.value}"


def _listing(jobs: Sequence[Job], what: str) -> str:
    if not jobs:
        return f"nothing was enqueued ({what})"
    lines = [f"enqueued ({what}), {len(jobs)} job{'s' if len(jobs) != 1 else ''}:"]
    lines += [f"  {_call_text(job)}" for job in jobs[:LISTED]]
    if len(jobs) > LISTED:
        lines.append(f"  ... and {len(jobs) - LISTED} more")
    return "\n".join(lines)


def assert_enqueued(
    app: App,
    *,
    task: Task | str | None = None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    status: Status | str | Collection[Status | str] | None = WAITING,
    count: int | None = None,
) -> list[Job]:
    """Fail unless a job matches (exactly `count` of them, when given); return the matches.

    The filters are enqueued()'s. The failure message lists what was enqueued.
    """
    f = _filter(app, task, args, kwargs, queue, status)
    # Every job of those statuses, for the message: what was enqueued instead.
    every = _jobs(app, None, None, f.statuses)
    found = [job for job in every if f.matches(job)]
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    wanted = "a job" if count is None else f"{count} job{'s' if count != 1 else ''}"
    raise AssertionError(
        f"expected {wanted} matching {f.describe()}, found {len(found)}; "
        + _listing(every, f.statuses_text())
    )


def refute_enqueued(
    app: App,
    *,
    task: Task | str | None = None,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    status: Status | str | Collection[Status | str] | None = WAITING,
) -> None:
    """Fail if any job matches; the failure message lists the matching jobs."""
    f = _filter(app, task, args, kwargs, queue, status)
    found = [job for job in _jobs(app, f.task, f.queue, f.statuses) if f.matches(job)]
    if found:
        raise AssertionError(
            f"expected no job matching {f.describe()}; " + _listing(found, f.statuses_text())
        )


# -- a database of the test run's own ----------------------------------------------------


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """A new database on the server of `server_url`, migrated; dropped when the block ends.

    It is named pgjobs_test_<pid>_<random>, so runs side by side (pytest-xdist
    workers too) never meet. Yields its URL. The role needs CREATEDB.
    """
    driver.check_url(server_url)
    name = f"pgjobs_test_{os.getpid()}_{secrets.token_hex(4)}"
    where = driver.describe(server_url)
    try:
        with connect(server_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    except psycopg.Error as exc:
        raise ConfigurationError(
            f"cannot create a test database on {where}: {_first_line(exc)}"
        ) from None
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        App(url).migrate()
        yield url
    finally:
        _drop_database(server_url, name)


def _drop_database(server_url: str, name: str) -> None:
    with connect(server_url, autocommit=True, connect_timeout=10) as conn:
        drop = psql.SQL("DROP DATABASE IF EXISTS {}").format(psql.Identifier(name))
        if conn.info.server_version >= 130000:
            conn.execute(drop + psql.SQL(" WITH (FORCE)"))
            return
        # Before Postgres 13 a database with sessions on it cannot be dropped:
        # a worker a test left running, say.
        driver.run(driver.named("testing_end_sessions", {"name": name}), conn)
        conn.execute(drop)


def reset(app: App) -> None:
    """Empty pgjobs' tables in the App's database: jobs, attempts, dead letters, workers, ...

    Refuses a database whose name does not contain "test", so a test run
    pointed at the wrong URL loses nothing.
    """
    with app.connection() as conn:
        row = driver.run(driver.named("testing_database", fetch="one"), conn)
        database = str(row["name"]) if row is not None else ""
        if "test" not in database.lower():
            raise ConfigurationError(
                f"reset() empties pgjobs' tables only in a database whose name contains "
                f"'test'; {database!r} is not one"
            )
        # Every table of the schema but the migrations' own: tables a later
        # revision adds are emptied too.
        rows = driver.run(driver.named("testing_tables"), conn)
        tables = [psql.Identifier("pgjobs", r["tablename"]) for r in rows]
        if tables:
            conn.execute(psql.SQL("TRUNCATE {}").format(psql.SQL(", ").join(tables)))
