"""The retry decision: whether a failed attempt runs again, and when."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter.

    Attempt n (1-based) that failed waits a random time in
    [0, min(cap, base * factor ** (n - 1))] seconds before the next attempt.
    Full jitter spreads the retries of many jobs that failed together (an
    outside service that went down) instead of sending them back in waves.
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


def should_retry(attempt: int, max_attempts: int) -> bool:
    """Whether a job whose attempt `attempt` failed may run again."""
    return attempt < max_attempts
