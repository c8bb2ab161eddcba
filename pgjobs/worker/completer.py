"""The completer: records the outcomes of finished attempts, in fenced batches, claiming with them.

Outcomes wait in Outcomes (pgjobs.worker.outcomes) until a writer takes a batch; two
writers, each on a connection of its own, may be on their way at once. While jobs are waiting (a
backlog, or a burst) the statement that records a batch also claims the next jobs
(finish_and_claim): one round trip, one plan and one commit per batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from pgjobs.db import driver as _db
from pgjobs.observe import pipeline
from pgjobs.worker import ops
from pgjobs.worker.control import DB_ERRORS, Control, retry_delay, short
from pgjobs.worker.executor import Outcome
from pgjobs.worker.outcomes import Outcomes

if TYPE_CHECKING:
    from pgjobs.worker.lease import Lease
    from pgjobs.worker.producer import Producer
    from pgjobs.worker.running import Running

log = logging.getLogger("pgjobs.worker")

#: Batches of outcomes being written at once (each on its own connection).
WRITERS = 2


class Completer:
    """Writes batches of outcomes, claiming the next jobs with them while jobs wait."""

    def __init__(
        self,
        worker_id: str,
        pool: AsyncConnectionPool[Any],
        busy_pool: AsyncConnectionPool[Any],
        outcomes: Outcomes,
        producer: Producer,
        running: Running,
        lease: Lease,
        control: Control,
        events: pipeline.Pipeline,
        burst: bool,
        max_batch: int,
    ) -> None:
        self.worker_id = worker_id
        self.pool = pool
        # The busy worker's statement has connections of its own, on which
        # Postgres reuses one plan for it (see ops.reuse_plans).
        self.busy_pool = busy_pool
        self.outcomes = outcomes
        self.producer = producer
        self.running = running
        self.lease = lease
        self.control = control
        #: where the worker's transitions go: the log and the App's hooks
        self.events = events
        self.burst = burst
        # At most half the capacity per batch, so there is a second.
        self.batch_size = max(1, min(max_batch, producer.concurrency // 2))
        self.max_batch = max_batch
        self.writers: set[asyncio.Task[None]] = set()
        self.failures = 0  # batches in a row that failed to be written

    async def run(self) -> None:
        """Start writers as outcomes arrive, until cancelled."""
        writers = self.writers
        outcomes = self.outcomes
        try:
            while True:
                await outcomes.ready.wait()
                outcomes.ready.clear()
                # Two batches may be on their way at once, on two connections:
                # while one is written, the jobs claimed with the other run.
                while outcomes.pending and len(writers) < WRITERS:
                    batch = outcomes.take(self.batch_size)
                    writer = asyncio.create_task(self._write(batch), name="writer")
                    writers.add(writer)
        finally:
            for writer in writers:
                writer.cancel()

    async def run_once(self) -> bool:
        """Write the next batch now, claiming with it if jobs wait; False if it failed."""
        if not self.outcomes.pending:
            return True
        return await self._write_one(self.outcomes.take(self.batch_size))

    async def flush(self, deadline: float) -> None:
        """Let the writers record what is left, until `deadline` (time.monotonic())."""
        # Outcomes left unwritten are not lost (the jobs stay 'running' under
        # this worker and are rescued), so a dead database does not hold up
        # the shutdown past the grace period.
        while self.outcomes.unrecorded() and time.monotonic() < deadline:
            self.outcomes.ready.set()
            await asyncio.sleep(0.01)

    async def _write(self, batch: list[Outcome]) -> None:
        try:
            while await self._write_one(batch):
                # Give the jobs this statement claimed one turn: short ones end
                # in it, and their outcomes leave in this writer's next
                # statement before the other writer's reply is handled. So the
                # two writers take turns, and the database works on one batch
                # while this process runs the jobs of the other.
                await asyncio.sleep(0)
                if not self.outcomes.pending:
                    return
                batch = self.outcomes.take(self.batch_size)
        finally:
            # Leave the set before waking the loop, so that it sees this
            # writer's slot free (a done-callback would run only after it looked).
            self.writers.discard(asyncio.current_task())
            self.outcomes.ready.set()

    async def _write_one(self, batch: list[Outcome]) -> bool:
        """Send one batch (claiming with it); False if it failed and went back to the queue."""
        producer = self.producer
        # While jobs are waiting, the statement that records outcomes also
        # claims as many new jobs as it frees slots (plus any already free),
        # in the same round trip.
        claim = 0
        if (producer.backlog or self.burst) and producer.may_claim() and not producer.reconciling:
            claim = max(0, min(self.max_batch, producer.free() + len(batch)))
        # The batch's own slots stay counted (as unrecorded) until the reply:
        # one transaction frees them and fills them again, so the claim holds
        # only what it takes beyond them. Counting both would make the other
        # writer's claim come up empty and cost a separate claim.
        held = max(0, claim - len(batch))
        producer.reserved += held
        producer.claims_in_flight += claim > 0
        try:
            rows = await self.finish(batch, claim)
            self.failures = 0
        except DB_ERRORS as exc:
            producer.reserved -= held
            producer.claims_in_flight -= claim > 0
            claimed, held, claim = claim > 0, 0, 0
            await self._failed(batch, exc, claimed)
            return False
        finally:
            producer.reserved -= held
            producer.claims_in_flight -= claim > 0
            self.outcomes.sent(batch)
        self.running.start_all(rows)
        if claim:
            producer.backlog = len(rows) == claim
        if producer.backlog or self.burst or self.control.stopping.is_set():
            self.control.wake.set()
        return True

    async def _failed(self, batch: list[Outcome], exc: BaseException, claimed: bool) -> None:
        # Keep the outcomes and try again: the jobs stay 'running' under this
        # worker meanwhile, so nothing is lost.
        self.failures += 1
        delay = retry_delay(self.failures)
        log.warning(
            "worker %s: recording %d outcomes failed (%s); retrying in %.1f s",
            self.worker_id,
            len(batch),
            short(exc),
            delay,
        )
        if claimed:
            # A claim may have committed without its reply.
            self.producer.reconcile_soon()
        self.lease.suspect()
        try:
            await asyncio.sleep(delay)
        finally:
            self.outcomes.pending[:0] = batch

    async def finish(self, batch: list[Outcome], claim: int = 0) -> list[dict[str, Any]]:
        """Record a batch of outcomes and, in the same round trip, claim up to `claim` jobs."""
        # The status each outcome got, in the batch's order; None for one
        # that did not apply (this worker no longer held the job's lease).
        statuses: list[str | None] = [o.status.value for o in batch]
        params = {
            "worker_id": self.worker_id,
            "ids": [o.job_id for o in batch],
            "attempts": [o.attempt for o in batch],
            "statuses": statuses,
            "outcomes": [o.outcome for o in batch],
            "results": [o.result for o in batch],
            "errors": unless_all_null([o.error for o in batch]),
            "progress": unless_all_null([o.progress for o in batch]),
            "retry_in": unless_all_null([o.retry_in for o in batch]),
        }
        producer = self.producer
        if claim and not producer.limited_tasks:
            # The busy path, one statement: only the outcomes that did not apply
            # as sent come back, beside the jobs claimed.
            rows: list[Any] = []  # rows.FinishAndClaim, of kind "claimed"
            other: dict[uuid.UUID, str | None] = {}
            plan = producer.frontier.claim()
            async with self.busy_pool.connection() as conn:
                got = await ops.finish_and_claim(
                    conn, {**params, **producer.claim_params(claim, plan.params)}
                )
            for r in got:
                if r["kind"] == "finished":
                    other[r["id"]] = r["status"]
                else:
                    rows.append(r)
            producer.frontier.claimed(plan, rows, claim)
            if other:
                statuses = [other.get(o.job_id, s) for o, s in zip(batch, statuses, strict=True)]
            if producer.weighted:
                producer.account(rows, full=len(rows) == claim)
        else:
            rows, applied = await self._finish_then_claim(params, claim)
            statuses = [applied.get(o.job_id) for o in batch]
        if None in statuses:
            _warn_ignored(batch, statuses)
        self.events.outcomes(batch, statuses)
        return rows

    async def _finish_then_claim(
        self, params: dict[str, Any], claim: int
    ) -> tuple[list[dict[str, Any]], dict[uuid.UUID, str]]:
        """Record the outcomes; with a claim, in a pipeline with it (the claims of limited tasks
        are statements of their own). The jobs claimed, and the status of each outcome applied."""
        rows: list[dict[str, Any]] = []
        async with self.pool.connection() as conn:
            if claim:
                plan = self.producer.frontier.claim()
                done, (rows, main) = await ops.finish_pipelined(
                    conn, params, self.producer.claim_op(claim, plan)
                )
                self.producer.claimed(rows, main, claim, plan)
            else:
                done = await _db.arun_pooled(ops.finish_op(params), conn)
        return rows, {r["id"]: r["status"] for r in done}


def _warn_ignored(batch: list[Outcome], statuses: list[str | None]) -> None:
    """Say which outcomes did not apply: this worker no longer held their jobs' lease."""
    for o, status in zip(batch, statuses, strict=True):
        if status is None:
            log.warning(
                "job %s: outcome of attempt %d ignored: this worker no longer holds its lease",
                o.job_id,
                o.attempt,
            )


def unless_all_null(values: list[Any]) -> list[Any]:
    """`values`, or no values when all are None: the statement's unnest() pads with NULLs."""
    # A batch of successes has no errors, progress or retries; an empty list
    # is cheaper to send than 50 NULLs (psycopg packs each one in Python).
    return [] if values.count(None) == len(values) else values
