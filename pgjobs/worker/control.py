"""What the worker's services share: the stop and wake-up signals, and how they wait and retry."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psycopg

#: The errors a service survives: the database or the network failed, the worker did not.
DB_ERRORS = (psycopg.Error, OSError)
#: The longest wait between tries after a database error: work resumes within
#: about this long of the database coming back.
MAX_RETRY_DELAY = 1.0


def retry_delay(failures: int) -> float:
    """Seconds to wait after `failures` failures in a row: doubling, capped at MAX_RETRY_DELAY."""
    return min(MAX_RETRY_DELAY, 0.1 * 2.0 ** min(failures, 10))


def short(exc: BaseException) -> str:
    """An exception in one line, for a log message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class Control:
    """The worker's stop request and the producer's wake-up, shared by every service.

    `stopping` is set once a stop is asked for (no new claims from then on); `wake`
    ends the producer's wait early (a notification, a recorded outcome, a stop).
    """

    def __init__(self, grace_period: float) -> None:
        self.grace_period = grace_period
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        #: when running jobs stop being waited for; None until a stop is asked for
        self.stop_deadline: float | None = None

    def request_stop(self) -> None:
        """No new claims; running jobs get the grace period from now."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.grace_period
        self.stopping.set()
        self.wake.set()

    async def sleep(self, seconds: float) -> None:
        """Wait for a wake-up (notification, recorded outcome, stop) or `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    async def wait_for(self, event: asyncio.Event, timeout: float) -> None:
        """Wait for `event`, a stop request, or `timeout` seconds, whichever comes first."""
        waiters = [
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self.stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
