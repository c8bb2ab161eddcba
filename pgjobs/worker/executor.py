"""Running one attempt: its context, arguments, time limits, cancellation and outcome."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pgjobs.client.context import JobContext
from pgjobs.client.context import running_job as _current
from pgjobs.client.tasks import Task
from pgjobs.core.errors import CancelledByRequest, HardTimeout, SoftTimeout, UnknownTask, WorkerLost
from pgjobs.core.jobs import Status, check_transition


class EncodedResult(Protocol):
    """A result a child process encoded as JSON text (pgjobs.worker.processes.Encoded)."""

    @property
    def text(self) -> str: ...


class ProcessPool(Protocol):
    """What the executor needs of pgjobs.worker.processes.ProcessPool, which imports it."""

    async def run(self, task: Task, attempt: Attempt, args: Any, kwargs: Any) -> EncodedResult: ...

    def stop_replacing(self) -> None: ...


@dataclass(slots=True)
class Outcome:
    """How one attempt ended, ready for the completer to write."""

    job_id: uuid.UUID
    attempt: int
    status: Status  # the job's next status
    outcome: str  # what the attempts row records
    result: str | None = None
    error: str | None = None
    retry_in: float | None = None  # seconds until the next attempt
    progress: str | None = None
    # For the transition log, written once the database has the outcome:
    row: Mapping[str, Any] | None = None  # the claimed row (task, queue)
    elapsed: float = 0.0  # seconds the attempt ran


def error_info(exc: BaseException) -> dict[str, Any]:
    """An exception as stored on the job: type, message, traceback."""
    # An exception from a child process carries the child's traceback.
    tb = getattr(exc, "__pgjobs_traceback__", None) or "".join(traceback.format_exception(exc))
    return {
        "type": type(exc).__qualname__,
        "message": _storable(str(exc)),
        "traceback": _storable(tb),
    }


def _storable(text: str) -> str:
    # jsonb holds neither NUL characters nor unpaired surrogates (which
    # surrogateescape makes of undecodable bytes, in a file name say), and an
    # error must always be storable: both are written as their escapes.
    text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode()
    return text


@dataclass(slots=True)
class Attempt:
    """One attempt the worker is running, and the handles to stop it."""

    row: Mapping[str, Any]
    ctx: JobContext
    cancel_requested: bool = False
    #: the worker lost its lease on the job (the rescuer may give it to
    #: another): the attempt is stopped where it can be, and what it ends
    #: with goes through the same fence as any outcome
    lease_lost: bool = False
    #: the worker stopped waiting for it (shutdown): its outcome is not recorded
    abandoned: bool = False
    _interrupt: Callable[[], object] | None = field(default=None, repr=False)
    #: the asyncio task that runs the attempt, once the worker has started it
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def job_id(self) -> uuid.UUID:
        return self.ctx.id

    def request_cancel(self) -> None:
        """Cancel this attempt: the flag for `def` tasks, and a hard stop where there is one."""
        if self.cancel_requested:
            return
        self.cancel_requested = True
        self.ctx.request_cancel()
        if self._interrupt is not None:
            self._interrupt()

    def lose_lease(self) -> None:
        """Stop this attempt because its worker no longer holds the job's lease.

        An attempt that stops gives the job back without spending a retry; one
        that ends anyway (a thread cannot be stopped) reports how it ended.
        Either outcome applies only if the job is still this attempt's.
        """
        self.lease_lost = True
        self.request_cancel()


class _Interruptible:
    """Awaits a task's coroutine, and can raise SoftTimeout at the point where it waits.

    asyncio can only cancel a task, and a cancelled coroutine sees
    CancelledError. To deliver SoftTimeout instead, this awaitable stands
    between the task and the coroutine: on a soft interrupt it cancels the
    task (which wakes the coroutine's pending await), takes back the
    cancellation, and throws SoftTimeout into the coroutine there.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.soft_pending = False
        self.task: asyncio.Task[Any] | None = None

    def soft_interrupt(self) -> None:
        if self.task is not None and not self.task.done():
            self.soft_pending = True
            self.task.cancel()

    def __await__(self) -> Generator[Any, Any, Any]:
        send: Any = None
        throw: BaseException | None = None
        while True:
            try:
                if throw is not None:
                    exc, throw = throw, None
                    yielded = self.coro.throw(exc)
                else:
                    yielded = self.coro.send(send)
            except StopIteration as stop:
                return stop.value
            try:
                send = yield yielded
            except asyncio.CancelledError as exc:
                if self.soft_pending:
                    self.soft_pending = False
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    throw = SoftTimeout("the soft time limit has passed: wrap up")
                else:
                    throw = exc
            except BaseException as exc:
                throw = exc


_ENCODED = object()


class Executor:
    """Runs attempts: async tasks on the event loop, sync tasks on threads or child processes."""

    def __init__(
        self,
        tasks: Mapping[str, Task],
        threads: int,
        report_progress: Callable[[uuid.UUID, str], None],
        processes: ProcessPool | None = None,
    ) -> None:
        self.tasks = tasks
        self.report_progress = report_progress
        self.processes = processes
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="pgjobs-task"
        )
        #: threads still running attempts that passed their hard limit
        self.abandoned_threads = 0

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def prepare(self, row: Mapping[str, Any]) -> Attempt:
        """The Attempt for a claimed row, with its context and deadline."""
        task = self.tasks.get(row["task"])
        limit = None
        if task is not None:
            limit = task.soft_timeout or task.timeout
        ctx = JobContext(
            id=row["id"],
            task=row["task"],
            queue=row["queue"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            dedup_key=row["dedup_key"],
            progress_sink=self.report_progress,
            wrap_up_at=None if limit is None else time.monotonic() + limit,
        )
        return Attempt(row=row, ctx=ctx)

    async def run(self, attempt: Attempt) -> Outcome:
        """Run one attempt and decide the job's next status; never raises for the task's errors."""
        row = attempt.row
        started = time.monotonic()
        task = self.tasks.get(row["task"])
        try:
            if task is None:
                raise UnknownTask(f"no task named {row['task']!r} is registered in this worker")
            args, kwargs = task.signature.decode(row["args"], row["kwargs"] or {})
            if task.is_async and task.timeout is None and task.soft_timeout is None:
                value = await self._run_async_unlimited(task, attempt, args, kwargs)
            elif task.is_async:
                value = await self._run_async(task, attempt, args, kwargs)
            elif self.processes is not None:
                # The child decodes the arguments and encodes the result itself.
                encoded = await self.processes.run(task, attempt, args, kwargs)
                value = _ENCODED
            else:
                value = await self._run_thread(task, attempt, args, kwargs)
            result = encoded.text if value is _ENCODED else task.signature.encode_result(value)
        except asyncio.CancelledError:
            if not attempt.cancel_requested:
                raise  # the worker is shutting down and hands the job back
            return self._cancelled(attempt, None, time.monotonic() - started)
        except Exception as exc:
            if attempt.cancel_requested:
                return self._cancelled(attempt, None, time.monotonic() - started)
            return self.failed(row, task, exc, time.monotonic() - started)
        if attempt.cancel_requested and not attempt.lease_lost:
            return self._cancelled(attempt, result, time.monotonic() - started)
        # Logged by the worker once the database has it (see pgjobs.logs).
        return Outcome(
            row["id"],
            row["attempt"],
            Status.SUCCEEDED,
            "succeeded",
            result=result,
            row=row,
            elapsed=time.monotonic() - started,
        )

    async def _run_async(
        self, task: Task, attempt: Attempt, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        token = _current.set(attempt.ctx)
        try:
            driver = _Interruptible(task.fn(*args, **kwargs))

            async def drive() -> Any:
                return await driver

            inner = asyncio.ensure_future(drive())
        finally:
            _current.reset(token)
        driver.task = inner

        def interrupt() -> None:
            inner.cancel()

        attempt._interrupt = interrupt
        loop = asyncio.get_running_loop()
        soft = (
            loop.call_later(task.soft_timeout, driver.soft_interrupt) if task.soft_timeout else None
        )
        try:
            done, _ = await asyncio.wait({inner}, timeout=task.timeout)
            if not done:
                inner.cancel()
                await asyncio.gather(inner, return_exceptions=True)
                raise HardTimeout(f"the attempt ran past its hard time limit of {task.timeout} s")
            return inner.result()
        finally:
            if soft is not None:
                soft.cancel()
            if not inner.done():
                inner.cancel()

    async def _run_async_unlimited(
        self, task: Task, attempt: Attempt, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        # No time limit: the coroutine runs in the attempt's own asyncio task,
        # without a task and a wait of its own, which would double the cost of
        # a short job. A cancellation request cancels that task; run() tells
        # it from a shutdown by attempt.cancel_requested.
        # The worker has the task already: asking asyncio for it cost a no-op
        # job 7 % of the worker's busy time (sampled).
        me = attempt.task or asyncio.current_task()
        assert me is not None
        attempt._interrupt = me.cancel
        token = _current.set(attempt.ctx)
        try:
            return await task.fn(*args, **kwargs)
        except asyncio.CancelledError:
            if attempt.cancel_requested:
                me.uncancel()
            raise
        finally:
            _current.reset(token)

    async def _run_thread(
        self, task: Task, attempt: Attempt, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        token = _current.set(attempt.ctx)
        try:
            # The thread gets a copy of this context, so current_job() works there.
            context = contextvars.copy_context()
        finally:
            _current.reset(token)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, lambda: context.run(task.fn, *args, **kwargs))
        try:
            done, _ = await asyncio.wait({future}, timeout=task.timeout)
        except asyncio.CancelledError:
            # The worker gave up on the attempt (shutdown, lost lease); the
            # thread runs on and holds its slot until it ends.
            if not future.done():
                self.abandoned_threads += 1
                future.add_done_callback(self._thread_ended)
            raise
        if done:
            return future.result()
        # A thread cannot be stopped from outside. The attempt fails now; the
        # thread runs on, and counts against the worker's capacity until it ends.
        self.abandoned_threads += 1
        future.add_done_callback(self._thread_ended)
        raise HardTimeout(
            f"the attempt ran past its hard time limit of {task.timeout} s; its thread cannot be "
            "stopped and runs on (run the worker with --processes to have it killed)"
        )

    def _thread_ended(self, future: asyncio.Future[Any]) -> None:
        self.abandoned_threads -= 1
        if not future.cancelled():
            future.exception()  # retrieved, so asyncio does not log it as unhandled

    def _cancelled(self, attempt: Attempt, result: str | None, elapsed: float) -> Outcome:
        row = attempt.row
        if attempt.lease_lost:
            # Stopped because the lease was lost, not by request: the job goes
            # back to the queue, and the run spends no retry (see finish_jobs).
            check_transition(Status.RUNNING, Status.PENDING)
            error = json.dumps(error_info(WorkerLost("the worker lost its lease on the job")))
            return Outcome(
                row["id"],
                row["attempt"],
                Status.PENDING,
                "lost",
                error=error,
                row=row,
                elapsed=elapsed,
            )
        check_transition(Status.RUNNING, Status.CANCELLED)
        error = json.dumps(error_info(CancelledByRequest("cancelled while it ran")))
        return Outcome(
            row["id"],
            row["attempt"],
            Status.CANCELLED,
            "cancelled",
            result=result,
            error=error,
            row=row,
            elapsed=elapsed,
        )

    def failed(
        self, row: Mapping[str, Any], task: Task | None, exc: Exception, elapsed: float
    ) -> Outcome:
        """The outcome of an attempt that raised `exc`: retry, or fail (pgjobs.testing keeps
        the exception by overriding it)."""
        attempt: int = row["attempt"]
        info = json.dumps(error_info(exc))
        delay = None
        if task is not None:
            delay = task.policy.next_delay(exc, attempt, row["max_attempts"])
        if delay is not None:
            check_transition(Status.RUNNING, Status.RETRYING)
            return Outcome(
                row["id"],
                attempt,
                Status.RETRYING,
                "failed",
                error=info,
                retry_in=delay,
                row=row,
                elapsed=elapsed,
            )
        check_transition(Status.RUNNING, Status.FAILED)
        return Outcome(
            row["id"], attempt, Status.FAILED, "failed", error=info, row=row, elapsed=elapsed
        )
