"""The retry decision: whether a failed attempt runs again, and when.

This module is the one place that decides. The worker asks it about every
failed attempt; the rescuer follows the same rule in SQL for attempts lost
with their worker (another attempt while attempts remain).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pgjobs.core.errors import HardTimeout, Permanent, Retry, SoftTimeout, WorkerCrashed

ExceptionTypes = tuple[type[BaseException], ...]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter.

    After failed attempt n (1-based) the job waits a random time in
    [0, min(cap, base * factor ** (n - 1))] seconds. Full jitter spreads the
    retries of many jobs that failed together (an outside service that went
    down) instead of sending them back in waves.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt `attempt` (1-based)."""
        return float(min(self.cap, self.base * self.factor ** max(0, attempt - 1)))

    def delay(self, attempt: int) -> float:
        """A random wait, in seconds, after failed attempt `attempt` (1-based)."""
        return random.uniform(0.0, self.ceiling(attempt))


# Failures of the attempt rather than of the work: retried whatever retry_on
# says, unless fail_on names them.
_ALWAYS_TRANSIENT: ExceptionTypes = (HardTimeout, SoftTimeout, WorkerCrashed)


@dataclass(frozen=True)
class RetryPolicy:
    """A task's retry rules: how many, how long between, and which errors are transient."""

    retries: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: ExceptionTypes | None = None  # None: every Exception is transient
    fail_on: ExceptionTypes = ()

    def next_delay(self, exc: BaseException, attempt: int, max_attempts: int) -> float | None:
        """Seconds until the next attempt after `exc` ended `attempt`; None: fail for good."""
        if attempt >= max_attempts:
            return None
        if isinstance(exc, Permanent) or (self.fail_on and isinstance(exc, self.fail_on)):
            return None
        if isinstance(exc, Retry):
            return exc.delay if exc.delay is not None else self.backoff.delay(attempt)
        if isinstance(exc, _ALWAYS_TRANSIENT):
            return self.backoff.delay(attempt)
        if self.retry_on is not None and not isinstance(exc, self.retry_on):
            return None
        return self.backoff.delay(attempt)
