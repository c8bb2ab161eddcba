"""Tasks: @app.task's Task, options() and its Enqueuer, rate limits, periodic tasks."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pgjobs.client import enqueue
from pgjobs.client.encoding import (
    NewJob,
    Options,
    Signature,
    check_options,
    encode_call,
    new_job,
    prepare,
)
from pgjobs.client.host import Host
from pgjobs.client.workflows import Call
from pgjobs.core.cron import CronSchedule
from pgjobs.core.errors import ConfigurationError, InvalidArguments
from pgjobs.core.jobs import Job, JobList
from pgjobs.core.retry import RetryPolicy


class Enqueuer:
    """enqueue() and friends for one task with fixed options: what options() returns."""

    def __init__(self, task: Task, options: Options) -> None:
        self.task = task
        self.opts = options
        self._checked: tuple[datetime | None, float | None] | None = None

    def prepare(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> NewJob:
        """Validate and encode one call with these options (its arguments first, as prepare())."""
        task = self.task
        encoded = encode_call(task.app, task.name, task.signature, args, kwargs)
        checked = self._checked
        if checked is None:
            checked = check_options(self.opts)  # raises at every call while they are wrong
            if self.opts.delay is None:
                # Without a delay the outcome does not depend on the time: kept.
                self._checked = checked
        return new_job(task.name, encoded, self.opts, checked, task.limited)

    def enqueue(self, *args: Any, conn: Any = None, **kwargs: Any) -> Job:
        """Insert one job and return it at once; with conn=, inside the caller's transaction."""
        return enqueue.insert_one(self.task.app, self.prepare(args, kwargs), conn)

    async def aenqueue(self, *args: Any, conn: Any = None, **kwargs: Any) -> Job:
        """Async twin of enqueue()."""
        return await enqueue.ainsert_one(self.task.app, self.prepare(args, kwargs), conn)

    def delay(self, *args: Any, **kwargs: Any) -> Job:
        """Same as enqueue(), for those used to Celery."""
        return self.enqueue(*args, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Call:
        """This call as a workflow step, with these options (see pgjobs.chain)."""
        return Call(self.task, args, dict(kwargs), self.opts)

    def enqueue_many(self, items: Iterable[Any], *, conn: Any = None) -> JobList:
        """Insert many jobs at once (COPY from 100 on); one bad item and none is inserted."""
        return enqueue.enqueue_many(self.task.app, self.task, self.opts, items, conn)

    async def aenqueue_many(self, items: Iterable[Any], *, conn: Any = None) -> JobList:
        """Async twin of enqueue_many()."""
        return await enqueue.aenqueue_many(self.task.app, self.task, self.opts, items, conn)


class Task:
    """A function registered with @app.task; call .enqueue() to run it in the background."""

    def __init__(
        self,
        app: Host,
        fn: Callable[..., Any],
        *,
        name: str,
        queue: str,
        priority: int,
        policy: RetryPolicy,
        timeout: float | None = None,
        soft_timeout: float | None = None,
        concurrency: int | None = None,
        rate_limit: str | None = None,
    ) -> None:
        if not name.strip():
            raise ConfigurationError(
                f"a task needs a non-empty name, got {name!r} (leave name out to use the "
                "function's)"
            )
        if not queue.strip():
            raise ConfigurationError(
                f"task {name!r}: queue must be a non-empty name, got {queue!r}"
            )
        if policy.retries < 0:
            raise ConfigurationError(
                f"task {name!r}: retries must be 0 or more, got {policy.retries}"
            )
        for label, limit in (("timeout", timeout), ("soft_timeout", soft_timeout)):
            if limit is not None and limit <= 0:
                raise ConfigurationError(f"task {name!r}: {label} must be positive, got {limit}")
        if timeout is not None and soft_timeout is not None and soft_timeout >= timeout:
            raise ConfigurationError(
                f"task {name!r}: soft_timeout ({soft_timeout}) must be below timeout ({timeout})"
            )
        self.app = app
        self.fn = fn
        self.name = name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(name, fn)
        if "conn" in self.signature.sig.parameters:
            raise ConfigurationError(
                f"task {name!r}: the parameter name 'conn' is taken by enqueue(conn=...) "
                "for the caller's transaction; rename the parameter"
            )
        if concurrency is not None and concurrency < 1:
            raise ConfigurationError(
                f"task {name!r}: concurrency must be at least 1, got {concurrency}"
            )
        self.policy = policy
        self.timeout = timeout
        self.soft_timeout = soft_timeout
        self.concurrency = concurrency
        self.rate_limit = rate_limit
        self.rate = parse_rate(name, rate_limit) if rate_limit is not None else None
        self.defaults = Options(queue=queue, priority=priority, max_attempts=policy.retries + 1)
        self._enqueuer = Enqueuer(self, self.defaults)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.defaults.queue}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now, as a plain call."""
        return self.fn(*args, **kwargs)

    @property
    def limited(self) -> bool:
        """True when the task has a concurrency or rate limit across all workers."""
        return self.concurrency is not None or self.rate is not None

    def prepare(self, args: Sequence[Any], kwargs: Mapping[str, Any], opts: Options) -> NewJob:
        """Validate and encode one call of this task with these options."""
        return prepare(self.app, self.name, self.signature, args, kwargs, opts, self.limited)

    def options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        retries: int | None = None,
        dedup_key: str | None = None,
        dedup_window: float | timedelta | None = None,
    ) -> Enqueuer:
        """The same task with other enqueue options for the next enqueue call.

        `dedup_key`: while a job with this key has not ended, or ended less than
        `dedup_window` ago (seconds or a timedelta; default: as long as the job
        is kept), enqueue returns that job instead of a new one.
        """
        opts = self.defaults
        changes: dict[str, Any] = {}
        if queue is not None:
            if not queue.strip():  # here, where it was given; check_options() would, later
                raise InvalidArguments(
                    f"task {self.name!r}: queue must be a non-empty name, got {queue!r}",
                    field="queue",
                )
            changes["queue"] = queue
        if priority is not None:
            changes["priority"] = priority
        if retries is not None:
            changes["max_attempts"] = retries + 1
        changes["delay"] = delay
        changes["run_at"] = run_at
        changes["dedup_key"] = dedup_key
        changes["dedup_window"] = dedup_window
        return Enqueuer(self, replace(opts, **changes))

    def enqueue(self, *args: Any, conn: Any = None, **kwargs: Any) -> Job:
        """Insert one job and return it at once; with conn=, inside the caller's transaction."""
        return enqueue.insert_one(self.app, self._enqueuer.prepare(args, kwargs), conn)

    async def aenqueue(self, *args: Any, conn: Any = None, **kwargs: Any) -> Job:
        """Async twin of enqueue()."""
        return await enqueue.ainsert_one(self.app, self._enqueuer.prepare(args, kwargs), conn)

    def delay(self, *args: Any, **kwargs: Any) -> Job:
        """Same as enqueue(), for those used to Celery."""
        return self._enqueuer.enqueue(*args, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Call:
        """This call as a workflow step: pgjobs.chain(a.s(1), b.s()), group, chord."""
        return self._enqueuer.s(*args, **kwargs)

    def enqueue_many(self, items: Iterable[Any], *, conn: Any = None) -> JobList:
        """Insert many jobs at once (COPY from 100 on); one bad item and none is inserted."""
        return self._enqueuer.enqueue_many(items, conn=conn)

    async def aenqueue_many(self, items: Iterable[Any], *, conn: Any = None) -> JobList:
        """Async twin of enqueue_many()."""
        return await self._enqueuer.aenqueue_many(items, conn=conn)


_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Rate:
    """At most `count` starts per `period` seconds."""

    count: int
    period: float


def parse_rate(task: str, text: str) -> Rate:
    """'100/m' -> Rate(100, 60.0); also /s, /h, /d and a number of units: '5/10s'."""
    count_text, _, per = text.partition("/")
    unit = per[-1:] if per else ""
    amount_text = per[:-1] or "1"
    try:
        count = int(count_text)
        amount = float(amount_text)
    except ValueError:
        count = amount = 0
    if count < 1 or amount <= 0 or unit not in _RATE_UNITS:
        raise ConfigurationError(
            f"task {task!r}: rate_limit must look like '100/m' (per s, m, h or d, "
            f"optionally '5/10s'), got {text!r}"
        )
    return Rate(count, amount * _RATE_UNITS[unit])


CATCH_UP = ("latest", "all")


@dataclass(frozen=True)
class Periodic:
    """A task enqueued on a cron schedule: one job per slot, whatever the number of workers."""

    name: str
    task: Task
    schedule: CronSchedule
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] | None = None
    #: after downtime: 'latest' runs the missed slots once, 'all' runs each (at most max_catch_up)
    catch_up: str = "latest"
    max_catch_up: int = 100

    def job_for(self, slot: datetime) -> NewJob:
        """The job of one slot, validated like any enqueue."""
        new = self.task.prepare(self.args, self.kwargs or {}, self.task.defaults)
        new.meta_json = json.dumps({"periodic": self.name, "slot": slot.isoformat()})
        return new
