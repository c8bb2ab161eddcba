"""Running one job: its context, its arguments, its function, and its outcome."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pgjobs.context import JobContext, _current
from pgjobs.errors import UnknownTask
from pgjobs.jobs import Status, check_transition
from pgjobs.retry import should_retry
from pgjobs.tasks import Task

log = logging.getLogger("pgjobs.worker")


@dataclass
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


def error_info(exc: BaseException) -> dict[str, Any]:
    """An exception as stored on the job: type, message, traceback."""
    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


class Executor:
    """Runs claimed jobs: async tasks on the event loop, sync tasks on a thread pool."""

    def __init__(
        self,
        tasks: Mapping[str, Task],
        threads: int,
        report_progress: Callable[[uuid.UUID, str], None],
    ) -> None:
        self.tasks = tasks
        self.report_progress = report_progress
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="pgjobs-task"
        )

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, row: Mapping[str, Any]) -> Outcome:
        """Run one claimed job and decide its next status; never raises for the task's errors."""
        job_id: uuid.UUID = row["id"]
        attempt: int = row["attempt"]
        started = time.monotonic()
        task = self.tasks.get(row["task"])
        try:
            if task is None:
                raise UnknownTask(f"no task named {row['task']!r} is registered in this worker")
            ctx = JobContext(
                id=job_id,
                task=task.name,
                queue=row["queue"],
                attempt=attempt,
                max_attempts=row["max_attempts"],
                idempotency_key=row["dedup_key"] or f"pgjobs-{job_id}",
                _report=self.report_progress,
            )
            args, kwargs = task.signature.decode(row["args"], row["kwargs"])
            value = await self._call(task, ctx, args, kwargs)
            result = task.signature.encode_result(value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._failed(row, task, exc, time.monotonic() - started)
        log.info(
            "job %s %s running -> succeeded (attempt %d, %.1f ms)",
            job_id,
            row["task"],
            attempt,
            1000 * (time.monotonic() - started),
        )
        return Outcome(job_id, attempt, Status.SUCCEEDED, "succeeded", result=result)

    async def _call(
        self, task: Task, ctx: JobContext, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        token = _current.set(ctx)
        try:
            if task.is_async:
                return await task.fn(*args, **kwargs)
            # The thread gets a copy of this context, so current_job() works there.
            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self.pool, lambda: context.run(task.fn, *args, **kwargs)
            )
        finally:
            _current.reset(token)

    def _failed(
        self, row: Mapping[str, Any], task: Task | None, exc: Exception, elapsed: float
    ) -> Outcome:
        attempt: int = row["attempt"]
        info = json.dumps(error_info(exc))
        if task is not None and should_retry(attempt, row["max_attempts"]):
            delay = task.backoff.delay(attempt)
            check_transition(Status.RUNNING, Status.RETRYING)
            log.warning(
                "job %s %s running -> retrying (attempt %d, %.1f ms, next in %.1f s): %s: %s",
                row["id"],
                row["task"],
                attempt,
                1000 * elapsed,
                delay,
                type(exc).__name__,
                exc,
            )
            return Outcome(
                row["id"],
                attempt,
                Status.RETRYING,
                "failed",
                error=info,
                retry_in=delay,
            )
        log.error(
            "job %s %s running -> failed (attempt %d, %.1f ms): %s: %s",
            row["id"],
            row["task"],
            attempt,
            1000 * elapsed,
            type(exc).__name__,
            exc,
        )
        return Outcome(row["id"], attempt, Status.FAILED, "failed", error=info)
