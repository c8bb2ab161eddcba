"""The one transition pipeline: every committed change of a job's status, whoever made it.

A worker finishing or handing back jobs, the leader's rescuer failing a job
whose worker died once too often, its scheduler releasing due jobs, an
administrator cancelling or replaying jobs from the App, the CLI or the web
API: each tells the App's pipeline, `of(app)`, and the pipeline feeds the same
sinks for all of them:

- the log sink: one line per transition on `pgjobs.jobs` (pgjobs.observe.logs);
- the hook sink: the App's hooks (`@app.on("job.failed")`), through one
  HookRunner per App and process (pgjobs.observe.events), on its thread;
- the metrics: nothing to feed here. The Prometheus metrics are read from the
  database at scrape time (pgjobs.web.metrics), so every committed transition
  reaches them, whichever process made it.

Where hooks run: in the process that made the transition, after it committed.
In a worker that is the worker itself, maintenance included: the leader's
rescuer and scheduler run inside a worker process, and their events go to
that worker's HookRunner, whose async hooks run on the worker's event loop.
In any other process (a web server, `pgjobs dead-letters replay`, a script)
the App's HookRunner runs async hooks on an event loop of the hook thread's
own, and the events it holds are delivered before the interpreter exits.

Hooks follow the status a job moves to: job.started (running), job.succeeded,
job.retrying, job.failed, job.cancelled and job.pending (due, rescued,
replayed or handed back: ready to be claimed again). A JobEvent says which
status the job left (`previous`), who moved it (`by`) and why (`reason`).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from pgjobs.core.jobs import Status
from pgjobs.observe import logs
from pgjobs.observe.events import HookRunner, JobEvent, decode

#: Who makes transitions: JobEvent.by.
WORKER, RESCUER, SCHEDULER, ADMIN = "worker", "rescuer", "scheduler", "admin"

#: The hook event a move to each status is.
EVENT_OF: dict[str, str] = {
    Status.RUNNING: "job.started",
    Status.SUCCEEDED: "job.succeeded",
    Status.RETRYING: "job.retrying",
    Status.FAILED: "job.failed",
    Status.CANCELLED: "job.cancelled",
    Status.PENDING: "job.pending",
}

#: Seconds the events a process still holds at exit get to reach their hooks.
EXIT_WAIT = 5.0


class Finished(Protocol):
    """What outcomes() needs of a worker's outcome (pgjobs.worker.executor.Outcome has it)."""

    @property
    def job_id(self) -> Any: ...
    @property
    def attempt(self) -> int: ...
    @property
    def result(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def retry_in(self) -> float | None: ...
    @property
    def row(self) -> Mapping[str, Any] | None: ...
    @property
    def elapsed(self) -> float: ...


class _Held:
    """The deliveries held until a transaction commits (see after_commit), and the pipeline
    that admin() reports to meanwhile."""

    def __init__(self, pipeline: Pipeline | None) -> None:
        self.pipeline = pipeline
        self.deliveries: list[Callable[[], None]] = []


# None outside after_commit(): transitions are delivered at once.
_held: contextvars.ContextVar[_Held | None] = contextvars.ContextVar(
    "pgjobs_held_transitions", default=None
)


class Pipeline:
    """The sinks of one App's transitions in this process: the log, and its hooks."""

    def __init__(
        self, hooks: Mapping[str, list[Any]] | None = None, *, at_exit: bool = False
    ) -> None:
        self.hooks = hooks if hooks is not None else {}
        self._runner: HookRunner | None = None
        # A worker closes its pipeline as it stops; an App's is drained at exit.
        self._at_exit = at_exit

    @property
    def runner(self) -> HookRunner | None:
        """The hook sink: None while the App has no hooks (nothing is paid for events)."""
        if self._runner is None and self.hooks:
            self._runner = HookRunner(self.hooks, None)
            if self._at_exit:
                atexit.register(self._runner.close, EXIT_WAIT)
        return self._runner

    def bind(self, loop: Any) -> HookRunner | None:
        """The worker's hook sink: async hooks run on `loop`, the worker's event loop."""
        runner = self.runner
        if runner is not None:
            runner.loop = loop
        return runner

    def rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        source: Status | str | None = None,
        *,
        by: str,
        reason: str | None = None,
        error: str | None = None,
        level: int | None = None,
    ) -> None:
        """The transitions a statement returned (columns id, task, queue, attempt, status,
        duration, and from_status unless `source` is given; error where there is one), made
        by `by` (WORKER, RESCUER, SCHEDULER, ADMIN), to the log and the hooks."""
        if not rows:
            return
        held = _held.get()
        if held is not None:
            held.deliveries.append(lambda: self._deliver(rows, source, by, reason, error, level))
            return
        self._deliver(rows, source, by, reason, error, level)

    def _deliver(
        self,
        rows: Sequence[Mapping[str, Any]],
        source: Status | str | None,
        by: str,
        reason: str | None,
        error: str | None,
        level: int | None,
    ) -> None:
        logs.from_rows(rows, source, reason=reason, error=error, level=level)
        runner = self.runner
        if runner is None:
            return
        for r in rows:
            name = EVENT_OF.get(r["status"])
            if name is None or not runner.wants(name):
                continue
            runner.submit(
                JobEvent(
                    name,
                    r["id"],
                    r["task"],
                    r["queue"],
                    r["attempt"],
                    error=_error(r.get("error"), error, reason),
                    previous=str(source if source is not None else r["from_status"]),
                    by=by,
                    reason=reason,
                )
            )

    def outcomes(self, batch: Sequence[Finished], statuses: Sequence[str | None]) -> None:
        """A worker's batch of outcomes as the database applied them (None: not applied), to
        the log and the hooks. Once per batch: a worker whose transitions nobody logs or
        follows pays nothing per job for them."""
        every = logs.log.isEnabledFor(logging.INFO)
        failures = not every and logs.log.isEnabledFor(logging.WARNING)
        if every or failures:
            for o, status in zip(batch, statuses, strict=True):
                if status is not None and (every or status == Status.FAILED):
                    _log_finished(o, status)
        runner = self._runner
        if runner is None:
            return
        for o, status in zip(batch, statuses, strict=True):
            name = f"job.{status}"
            if status is None or not runner.wants(name):
                continue
            row = o.row or {}
            runner.submit(
                JobEvent(
                    name,
                    o.job_id,
                    row.get("task", "?"),
                    row.get("queue", "?"),
                    o.attempt,
                    result=decode(o.result) if status == Status.SUCCEEDED else None,
                    error=decode(o.error) if status != Status.SUCCEEDED else None,
                    retry_in=o.retry_in if status == Status.RETRYING else None,
                    previous=Status.RUNNING.value,
                    by=WORKER,
                )
            )

    def started(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Jobs a worker just claimed (pending -> running; `waited` is the duration)."""
        if logs.log.isEnabledFor(logging.INFO):
            logs.claimed(rows)
        runner = self._runner
        if runner is not None and runner.wants("job.started"):
            for r in rows:
                runner.submit(
                    JobEvent(
                        "job.started",
                        r["id"],
                        r["task"],
                        r["queue"],
                        r["attempt"],
                        previous=Status.PENDING.value,
                        by=WORKER,
                    )
                )


def _error(stored: Any, error: str | None, reason: str | None) -> dict[str, Any] | None:
    """The error a hook sees: the job's own as stored, else the one the caller names."""
    if isinstance(stored, Mapping):
        return dict(stored)
    if isinstance(stored, str):
        decoded = decode(stored)
        if isinstance(decoded, dict):
            return decoded
    if error is None:
        return None
    return {"type": error, "message": reason, "traceback": None}


def _log_finished(o: Finished, status: str) -> None:
    """Log the transition an outcome made, as the database applied it."""
    row = o.row or {}
    error = reason = None
    if o.error is not None and status != Status.SUCCEEDED:
        info = decode(o.error)
        error, reason = info.get("type"), info.get("message")
    logs.transition(
        o.job_id,
        row.get("task", "?"),
        row.get("queue", "?"),
        Status.RUNNING,
        status,
        o.attempt,
        o.elapsed,
        error=error,
        reason=reason,
        retry_in=o.retry_in if status == Status.RETRYING else None,
    )


#: Logs only: for transitions made where no App is at hand.
LOG_ONLY = Pipeline()

_pipelines: weakref.WeakKeyDictionary[Any, Pipeline] = weakref.WeakKeyDictionary()
_pipelines_lock = threading.Lock()  # one pipeline per App, whichever thread asks first


def of(app: Any) -> Pipeline:
    """The App's pipeline in this process, for transitions made outside a worker (LOG_ONLY
    for None). A worker has a pipeline of its own, which its maintenance shares: its hooks
    run on its thread and loop, and it drains them as it stops."""
    if app is None:
        return LOG_ONLY
    found = _pipelines.get(app)
    if found is None:
        with _pipelines_lock:
            found = _pipelines.get(app)
            if found is None:
                found = _pipelines[app] = Pipeline(app.hooks, at_exit=True)
    return found


@contextlib.contextmanager
def after_commit(pipeline: Pipeline | None = None) -> Iterator[None]:
    """Hold the transitions reported inside until the block ends without an error; admin()
    reports to `pipeline` meanwhile (LOG_ONLY when None).

    An operation that runs in one transaction (a replay, a maintenance round
    behind a transaction pooler) reports its transitions from inside it;
    wrapped around the call that commits it, they reach the log and the hooks
    only once they have committed, and not at all when it rolls back.
    """
    held = _Held(pipeline)
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
    for deliver in held.deliveries:
        deliver()


def admin(rows: Sequence[Mapping[str, Any]], *, reason: str | None = None) -> None:
    """An administrator's transitions (columns as for Pipeline.rows, with from_status), to
    the pipeline that the enclosing after_commit() names."""
    held = _held.get()
    target = held.pipeline if held is not None and held.pipeline is not None else LOG_ONLY
    target.rows(rows, by=ADMIN, reason=reason)
