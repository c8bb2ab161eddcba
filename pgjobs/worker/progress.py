"""Progress reports of running jobs (JobContext.set_progress), written a few times a second.

A task may report as often as it likes: only the latest value per job is kept,
and written with the others in one statement every INTERVAL seconds. A job's last
value that was not written yet goes with its outcome instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Container
from typing import Any

from psycopg_pool import AsyncConnectionPool

from pgjobs.db import driver as _db
from pgjobs.worker import ops
from pgjobs.worker.control import DB_ERRORS, short

log = logging.getLogger("pgjobs.worker")

#: Seconds between two writes of the reports.
INTERVAL = 0.2


class Progress:
    """The latest progress of each running job, and the loop that writes it."""

    def __init__(
        self,
        worker_id: str,
        pool: AsyncConnectionPool[Any],
        running: Callable[[], Container[uuid.UUID]],
    ) -> None:
        self.worker_id = worker_id
        self.pool = pool
        # The jobs running now: a report of one that ended is not written.
        self.running = running
        #: the latest value reported per job, not yet written
        self.latest: dict[uuid.UUID, str] = {}
        self._lock = threading.Lock()

    def report(self, job_id: uuid.UUID, progress: str) -> None:
        """Keep a job's latest report. Thread-safe: task threads and the loop call it."""
        with self._lock:
            self.latest[job_id] = progress

    def take(self, job_id: uuid.UUID) -> str | None:
        """A job's latest report not yet written, which then goes with its outcome."""
        with self._lock:
            return self.latest.pop(job_id, None)

    async def run(self) -> None:
        """Write the reports every INTERVAL seconds, until cancelled."""
        while True:
            await asyncio.sleep(INTERVAL)
            await self.run_once()

    async def run_once(self) -> int:
        """Write the latest reports of the running jobs; how many were written."""
        running = self.running()
        with self._lock:
            pending = {k: v for k, v in self.latest.items() if k in running}
        if not pending:
            return 0
        try:
            async with self.pool.connection() as conn:
                await _db.arun_pooled(ops.set_progress_op(self.worker_id, pending), conn)
        except DB_ERRORS as exc:
            log.warning("worker %s: writing progress failed (%s)", self.worker_id, short(exc))
            return 0
        with self._lock:
            for k, v in pending.items():
                if self.latest.get(k) == v:
                    del self.latest[k]
        return len(pending)
