"""current_job(): what a running task knows about its own job."""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pgjobs.client.encoding import to_json, unstorable


@dataclass
class JobContext:
    """The running job, as seen from inside its task."""

    id: uuid.UUID
    task: str
    queue: str
    attempt: int
    max_attempts: int
    #: The job's dedup key, if it was enqueued with one (the worker's, for idempotency_key).
    dedup_key: str | None = field(repr=False)
    #: Where set_progress() sends the job's progress: the worker's batch of progress values.
    progress_sink: Callable[[uuid.UUID, str], None] = field(repr=False)
    #: time.monotonic() at which the task should wrap up (its soft limit, else its hard one)
    wrap_up_at: float | None = field(default=None, repr=False)
    # A plain flag: set from the event loop, read from the task's thread; an
    # Event per job would cost more than a no-op job itself.
    _cancelled: bool = field(default=False, repr=False)

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this job: pass it to outside services."""
        # Made when read: most tasks never ask, and a no-op job would feel it.
        return self.dedup_key or f"pgjobs-{self.id}"

    def set_progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Record how far the job has got; readers see it within a fraction of a second.

        Cheap to call often: the worker writes the latest value in batches.
        """
        progress: dict[str, Any] = {"current": current}
        if total is not None:
            progress["total"] = total
            if total:
                progress["percent"] = round(100.0 * current / total, 1)
        if message is not None:
            progress["message"] = message
        # Refused here, in the task: jsonb would refuse them when the worker
        # writes the batch of progress values, and hold up the others in it.
        try:
            text = to_json(progress)
        except ValueError:
            raise ValueError(
                f"progress must be finite numbers, got current={current!r}, total={total!r}"
            ) from None
        bad = unstorable(text)
        if bad:
            raise ValueError(f"a progress message must not contain {bad}")
        self.progress_sink(self.id, text)

    @property
    def deadline(self) -> datetime | None:
        """When the task should have finished (its soft limit, else its hard one), or None."""
        if self.wrap_up_at is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.wrap_up_at - time.monotonic())

    def time_left(self) -> float | None:
        """Seconds until the deadline (negative once past it), or None without a time limit."""
        return None if self.wrap_up_at is None else self.wrap_up_at - time.monotonic()

    @property
    def cancelled(self) -> bool:
        """True once someone asked to cancel this job: a `def` task should stop soon."""
        return self._cancelled

    def request_cancel(self) -> None:
        """Mark the job as asked to cancel (the worker calls it when it hears of a request)."""
        self._cancelled = True


#: The job the running task belongs to: the worker's executor sets it around each attempt.
running_job: contextvars.ContextVar[JobContext] = contextvars.ContextVar("pgjobs_current_job")


def current_job() -> JobContext:
    """The job the calling task is running for; raises RuntimeError outside a task."""
    try:
        return running_job.get()
    except LookupError:
        raise RuntimeError("current_job() is only available inside a running task") from None
