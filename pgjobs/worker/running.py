"""The attempts a worker runs: started from claimed rows, ended into the completer's Outcomes.

Claimed jobs of tasks this worker does not know are sent back to the queue for a
worker that knows them (defer_jobs), and fail for good past unknown_task_timeout.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from pgjobs.core.jobs import Status
from pgjobs.db import driver as _db
from pgjobs.observe import pipeline
from pgjobs.worker import ops
from pgjobs.worker.control import DB_ERRORS, Control, retry_delay, short
from pgjobs.worker.executor import Attempt, Executor
from pgjobs.worker.outcomes import Outcomes
from pgjobs.worker.progress import Progress

log = logging.getLogger("pgjobs.worker")


class Running:
    """Starts attempts for claimed rows and hands their outcomes to the completer."""

    def __init__(
        self,
        worker_id: str,
        pool: AsyncConnectionPool[Any],
        executor: Executor,
        outcomes: Outcomes,
        progress: Progress,
        control: Control,
        events: pipeline.Pipeline,
        unknown_task_timeout: float,
    ) -> None:
        self.worker_id = worker_id
        self.pool = pool
        self.executor = executor
        self.outcomes = outcomes
        self.progress = progress
        self.control = control
        #: where the worker's transitions go: the log and the App's hooks
        self.events = events
        self.unknown_task_timeout = unknown_task_timeout
        #: the attempts running, each with the asyncio task that runs it
        self.attempts: dict[uuid.UUID, Attempt] = {}
        #: claimed jobs of tasks this worker does not know, on their way back
        self.deferring: dict[uuid.UUID, dict[str, Any]] = {}
        self.deferrals: set[asyncio.Task[None]] = set()
        self._unknown_warned: set[str] = set()
        self.jobs_done = 0

    def tasks(self) -> list[asyncio.Task[None]]:
        """The asyncio tasks of the running attempts."""
        return [a.task for a in self.attempts.values() if a.task is not None]

    def start_all(self, rows: list[dict[str, Any]]) -> None:
        """Start an attempt for each claimed row; send back those of unknown tasks."""
        tasks = self.executor.tasks
        unknown = None
        for row in rows:
            if row["task"] in tasks:
                self._start(row)
            else:
                unknown = unknown or []
                unknown.append(row)
        if unknown:
            rows = [r for r in rows if r["task"] in tasks]
            for row in unknown:
                self.deferring[row["id"]] = row
            deferral = asyncio.create_task(self.defer(unknown))
            self.deferrals.add(deferral)
            deferral.add_done_callback(self.deferrals.discard)
        # Once per batch: a worker whose transitions are not logged pays
        # nothing per job for them.
        if rows:
            self.events.started(rows)

    def _start(self, row: dict[str, Any]) -> None:
        job_id = row["id"]
        attempt = self.executor.prepare(row)
        # Unnamed: a name would cost more than a no-op job's own work.
        attempt.task = asyncio.create_task(self._run_one(attempt))
        self.attempts[job_id] = attempt

    async def _run_one(self, attempt: Attempt) -> None:
        job_id = attempt.job_id
        try:
            outcome = await self.executor.run(attempt)
        except asyncio.CancelledError:
            return  # handed back at shutdown
        finally:
            # The job may run here again already under a new attempt (it was
            # rescued and claimed anew while this one ran on): that one stays.
            if self.attempts.get(job_id) is attempt:
                del self.attempts[job_id]
            if self.control.stopping.is_set():
                self.control.wake.set()
        if attempt.abandoned:
            return
        # Unlocked, the emptiness test is safe: this job's own progress
        # reports all came before its end, and so before this read.
        if self.progress.latest:
            outcome.progress = self.progress.take(job_id)
        self.jobs_done += 1
        # Queued for the completer's next batch, which holds the job's slot until written.
        outcomes = self.outcomes
        outcomes.pending.append(outcome)
        outcomes.ready.set()

    def abandon(self, attempts: Iterable[Attempt], reason: str) -> None:
        """Stop waiting for attempts that the shutdown hands back: their outcome is not recorded."""
        for attempt in list(attempts):
            if attempt.task is None:
                continue
            attempt.abandoned = True
            attempt.task.cancel()
            log.warning("worker %s: job %s abandoned: %s", self.worker_id, attempt.job_id, reason)

    def lose_leases(self, reason: str) -> None:
        """Stop the running attempts whose lease is lost; each gives its job back as it ends.

        Their slots stay taken until they do end, and what each ends with goes
        through the finish statement's fence like any outcome: it applies only
        if the job is still this attempt's.
        """
        lost = [a for a in self.attempts.values() if not a.lease_lost]
        for attempt in lost:
            attempt.lose_lease()
        if lost:
            log.warning(
                "worker %s: stopping %d running jobs: %s; each goes back to the queue",
                self.worker_id,
                len(lost),
                reason,
            )

    def cancel(self, job_id: uuid.UUID) -> None:
        """A cancellation was requested for a job: tell its attempt, if it runs here."""
        attempt = self.attempts.get(job_id)
        if attempt is not None:
            log.info("job %s: cancellation requested", job_id)
            attempt.request_cancel()

    async def defer(self, rows: list[dict[str, Any]]) -> None:
        """Send claimed jobs of unknown tasks back to wait for a worker that knows them."""
        for name in sorted({r["task"] for r in rows} - self._unknown_warned):
            self._unknown_warned.add(name)
            log.warning(
                "worker %s: no task named %r is registered in this worker; its jobs go back "
                "to the queue for a worker that knows it (dead letters after %.0f s)",
                self.worker_id,
                name,
                self.unknown_task_timeout,
            )
        try:
            back = await self._send_back(rows)
            self.events.rows(
                back,
                Status.RUNNING,
                by=pipeline.WORKER,
                error="UnknownTask",
                reason="no task of that name is registered in this worker",
            )
        finally:
            for r in rows:
                self.deferring.pop(r["id"], None)
            self.control.wake.set()

    async def _send_back(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        failures = 0
        while True:
            try:
                async with self.pool.connection() as conn:
                    back: list[dict[str, Any]] = await _db.arun_pooled(
                        ops.defer_op(self.worker_id, rows, self.unknown_task_timeout), conn
                    )
                    return back
            except DB_ERRORS as exc:
                failures += 1
                if failures > 5 or self.control.stopping.is_set():
                    # They stay 'running' under this worker; the rescuer or
                    # the shutdown's hand-back takes them.
                    log.warning(
                        "worker %s: could not send back jobs of unknown tasks (%s)",
                        self.worker_id,
                        short(exc),
                    )
                    return []
                await asyncio.sleep(retry_delay(failures))
