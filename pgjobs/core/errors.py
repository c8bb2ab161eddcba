"""The exceptions pgjobs raises, and the ones tasks raise to steer retries."""

from __future__ import annotations

import uuid
from typing import Any


class PgJobsError(Exception):
    """Base class of every error pgjobs raises on purpose."""


class ConfigurationError(PgJobsError):
    """The App, a worker or the CLI was configured in a way that cannot work."""


class UnknownTask(PgJobsError, LookupError):
    """No task of that name is registered with the App."""


class InvalidArguments(PgJobsError, ValueError):
    """A task was called with arguments that do not fit its signature or types."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        #: The argument or option at fault (a parameter name, "priority", ...), when known.
        self.field = field


class PayloadTooLarge(InvalidArguments):
    """A job's encoded arguments are larger than the App allows."""


class SerializationError(InvalidArguments):
    """A value cannot be encoded as JSON."""


class IllegalTransition(PgJobsError):
    """A job was asked to move between two statuses the state machine does not link."""


class JobNotFound(PgJobsError, LookupError):
    """No job has that id."""


class WaitTimeout(PgJobsError, TimeoutError):
    """Job.wait() gave up before the job ended."""


class JobFailed(PgJobsError):
    """The job failed for good; `error` holds the type, message and traceback."""

    def __init__(self, job_id: uuid.UUID, error: dict[str, Any] | None) -> None:
        self.job_id = job_id
        self.error = error or {}
        kind = self.error.get("type", "Error")
        message = self.error.get("message", "")
        super().__init__(f"job {job_id} failed: {kind}: {message}")


class JobCancelled(PgJobsError):
    """The job was cancelled before it could finish."""

    def __init__(self, job_id: uuid.UUID, error: dict[str, Any] | None = None) -> None:
        self.job_id = job_id
        self.error = error
        super().__init__(f"job {job_id} was cancelled")


# -- raised by tasks, or for them, to steer what happens next ----------------------


class Retry(Exception):
    """Raise in a task to ask for another attempt, after `delay` seconds (else the backoff's)."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        if delay is not None and delay < 0:
            raise ValueError(f"Retry delay must not be negative, got {delay}")
        self.delay = delay
        self.reason = reason
        super().__init__(reason or (f"retry in {delay} s" if delay is not None else "retry"))


class Permanent(Exception):
    """Raise in a task to fail the job for good: no more attempts, straight to dead letters."""


class SoftTimeout(Exception):
    """Raised inside an `async def` task when its soft time limit passes: time to wrap up."""


class HardTimeout(Exception):
    """The attempt ran past the task's hard time limit and was stopped (or abandoned)."""


class WorkerCrashed(Exception):
    """The process running the attempt died (a crash, os._exit, a signal)."""


class WorkerLost(Exception):
    """The worker running the attempt lost its lease on the job (it died, or could not reach
    the database for longer than the lease). The attempt spends the crash budget, not the
    task's retries."""


class CancelledByRequest(Exception):
    """The job was cancelled while it ran."""
