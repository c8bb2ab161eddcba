"""The notifier: LISTEN for new jobs and cancellations, and wake the worker for them.

A job's insert notifies its queue's name on CHANNEL (sql/schema); a cancellation
request notifies the job's id on CANCEL_CHANNEL. Notifications are a hint, not a
promise: the producer also polls, and looks again each time the listener
(re)connects, since jobs may have arrived while nobody listened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Collection

from pgjobs.db import connections
from pgjobs.worker.control import DB_ERRORS, retry_delay, short

log = logging.getLogger("pgjobs.worker")

CHANNEL = "pgjobs"
CANCEL_CHANNEL = "pgjobs_cancel"


class Notifier:
    """One LISTEN connection, reconnected with a capped back-off while the database is away."""

    def __init__(
        self,
        worker_id: str,
        url: str | None,
        connect_timeout: float,
        pooler: str | None,
        queues: Collection[str],
        poll_interval: float,
        *,
        on_connect: Callable[[], None],
        on_job: Callable[[], None],
        on_cancel: Callable[[uuid.UUID], None],
    ) -> None:
        self.worker_id = worker_id
        # None behind a transaction pooler with no direct URL: nothing to listen on.
        self.url = url
        self.connect_timeout = connect_timeout
        self.pooler = pooler
        self.queues = frozenset(queues)
        self.poll_interval = poll_interval
        self.on_connect = on_connect
        self.on_job = on_job
        self.on_cancel = on_cancel
        #: set once notifications can reach the worker (or it is known that none will)
        self.listening = asyncio.Event()
        self.failures = 0  # connections in a row that failed

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after each failure."""
        if self.url is None:
            # LISTEN through a transaction pooler would listen on whichever server
            # connection ran it, for whoever gets that connection next. Without a
            # direct URL the worker polls (--poll-interval); cancellations are
            # seen at the next reconcile (every heartbeat interval).
            log.info(
                "worker %s: no listen_url behind a transaction pooler: it polls every %.1f s",
                self.worker_id,
                self.poll_interval,
            )
            self.listening.set()
            await asyncio.Event().wait()  # until cancelled, as a listener would run
        while True:
            try:
                await self.run_once()
            except DB_ERRORS as exc:
                self.failures += 1
                delay = retry_delay(self.failures)
                log.warning(
                    "worker %s: listener lost its connection (%s); reconnecting in %.1f s",
                    self.worker_id,
                    short(exc),
                    delay,
                )
                await asyncio.sleep(delay)

    async def run_once(self) -> None:
        """Connect, listen, and hand each notification on until the connection ends."""
        assert self.url is not None
        conn = await connections.session(
            self.url, pooler=self.pooler, connect_timeout=max(1, int(self.connect_timeout))
        )
        async with conn:
            # Not named statements in sql/: LISTEN takes a channel name, an identifier,
            # and no parameter, so it cannot be prepared (nor explained).
            await conn.execute(f"LISTEN {CHANNEL}")
            await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
            self.failures = 0
            self.listening.set()
            self.on_connect()
            async for note in conn.notifies():
                self.handle(note.channel, note.payload)

    def handle(self, channel: str, payload: str) -> None:
        """Act on one notification: a job in one of our queues, or a cancellation."""
        if channel == CANCEL_CHANNEL:
            with contextlib.suppress(ValueError):
                self.on_cancel(uuid.UUID(payload))
        elif payload in self.queues:
            self.on_job()
