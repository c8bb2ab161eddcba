"""The producer: claims jobs up to the worker's free capacity and starts them.

It claims when woken (a notification, a recorded outcome, a stop) or every
poll_interval, and at once again after a full claim, which says more jobs may be
waiting; while they do, the completer claims with each batch of outcomes instead.
Between claims it reconciles: what the database says this worker runs against what
it does run, to give back jobs whose claim reply was lost and to act on
cancellations whose notification was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs.core.jobs import Status
from pgjobs.db import driver as _db
from pgjobs.db.driver import Op
from pgjobs.maintenance import scheduler
from pgjobs.observe import horizon, pipeline
from pgjobs.worker import ops
from pgjobs.worker.config import WorkerConfig
from pgjobs.worker.control import DB_ERRORS, Control, retry_delay, short
from pgjobs.worker.frontier import Claim, Frontier
from pgjobs.worker.lease import Lease
from pgjobs.worker.outcomes import Outcomes
from pgjobs.worker.running import Running

log = logging.getLogger("pgjobs.worker")


class Producer:
    """The fetch loop: claims, reconciles, and keeps count of the slots claims hold."""

    def __init__(
        self,
        worker_id: str,
        config: WorkerConfig,
        pool: AsyncConnectionPool[Any],
        running: Running,
        outcomes: Outcomes,
        lease: Lease,
        control: Control,
        events: pipeline.Pipeline,
        limited_tasks: Sequence[str],
    ) -> None:
        self.worker_id = worker_id
        self.pool = pool
        self.running = running
        self.outcomes = outcomes
        self.lease = lease
        self.control = control
        #: where the worker's transitions go: the log and the App's hooks
        self.events = events
        self.concurrency = config.concurrency
        self.queues = config.queues
        self.weights = config.weights
        self.queue_order = config.queue_order
        self.weighted = config.queue_order == "weighted"
        self.max_batch = config.max_batch
        self.burst = config.burst
        self.poll_interval = config.poll_interval
        self.heartbeat_interval = config.heartbeat_interval
        #: tasks with a concurrency or rate limit: claimed first, each within its limit
        self.limited_tasks = list(limited_tasks)
        #: jobs each weighted queue got beyond its share, for the next claim's shares
        self.shares: dict[str, float] = {}
        #: where claims read each queue from: a frontier past the jobs already claimed
        self.frontier = Frontier()
        self.horizon_unread = False  # the last look at the horizon failed (said once)
        self.said_held = False  # what the log last said of the frontier's mode
        #: a sweep running beside the claims while the horizon is held
        self.sweeping: asyncio.Task[None] | None = None
        #: slots promised to claims on their way to the database, beyond the slots
        #: their own statements free (see Completer._write_one)
        self.reserved = 0
        self.claims_in_flight = 0
        #: a reconcile is reading the worker's jobs: writers claim nothing meanwhile
        self.reconciling = False
        #: the last claim was full: more jobs may be waiting
        self.backlog = False
        self.reconcile_due = 0.0  # time.monotonic() of the next reconcile
        self.failures = 0  # passes in a row that failed

    # -- capacity ---------------------------------------------------------------------

    def free(self) -> int:
        """Slots free for a claim now."""
        # A slot is free once its outcome is recorded, not when the function
        # returns (see Outcomes). Threads left running past a hard limit, and
        # jobs of unknown tasks on their way back, still hold theirs.
        running = self.running
        busy = (
            len(running.attempts)
            + self.outcomes.unrecorded()
            + running.executor.abandoned_threads
            + len(running.deferring)
        )
        return self.concurrency - busy - self.reserved

    def may_claim(self) -> bool:
        lease = self.lease
        return lease.registered and not lease.too_many_stuck and not self.control.stopping.is_set()

    def reconcile_soon(self) -> None:
        """Reconcile before the next claim (a claim's reply may have been lost)."""
        self.reconcile_due = 0.0

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and start jobs until a stop is asked for (or, in a burst, none is left)."""
        control = self.control
        while not control.stopping.is_set():
            control.wake.clear()
            try:
                claimed = await self.run_once()
                self.failures = 0
            except DB_ERRORS as exc:
                await self._failed(exc)
                continue
            # Jobs may wait behind a frontier until a sweep has looked.
            owed = self.frontier.owed or self.sweeping is not None
            if self.burst and claimed == 0 and not owed and self._idle():
                log.info("worker %s: queues are empty, burst done", self.worker_id)
                return
            if self.backlog and self.free() > 0:
                continue
            wait = self.poll_interval
            if self.frontier.owed and self.free() > 0 and self.may_claim():
                wait = min(wait, self.frontier.sweep_in())
            await control.sleep(wait)
        if self.sweeping is not None:  # its jobs start, or its reply is lost
            await asyncio.wait([self.sweeping])

    async def run_once(self) -> int:
        """One pass: look at the lease if in doubt, reconcile when due, claim what fits and start
        it. The number of jobs claimed; raises the database's error."""
        if self.lease.check:
            await self.lease.run_once()
        if time.monotonic() >= self.reconcile_due:
            await self.reconcile()
        if self.burst and self.free() > 0:
            await self.release_due()
        if time.monotonic() >= self.frontier.look_due:
            await self.look_at_horizon()
        # Counted after the awaits above: a writer may have claimed meanwhile,
        # and a stale count would claim past the worker's concurrency.
        free = self.free()
        claimed = 0
        if free > 0 and self.may_claim() and self.sweeping is None and self.frontier.sweep_due():
            # Half the free slots (at least one) for the sweep, in a task of its own.
            share = max(1, free // 2)
            self.reserved += share  # from now, not from when the task first runs
            self.sweeping = asyncio.create_task(self._sweep(share), name="pgjobs-sweep")
            free = self.free()
        if free > 0 and self.may_claim():
            rows = await self.claim(free)
            self.running.start_all(rows)
            claimed = len(rows)
        # A full claim means more jobs may be waiting: claim again as soon as
        # a slot frees instead of waiting for a notification.
        self.backlog = free <= 0 or claimed == free
        return claimed

    async def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        delay = retry_delay(self.failures)
        log.warning(
            "worker %s: claim failed (%s); retrying in %.1f s", self.worker_id, short(exc), delay
        )
        # The claim may have committed without its reply reaching us: look
        # before the next claim, and give back what we do not run. Past a long
        # outage the rescuer may have taken this worker for dead: look at its
        # row first.
        self.reconcile_soon()
        self.lease.suspect()
        await self.control.sleep(delay)

    def _idle(self) -> bool:
        running = self.running
        return not running.attempts and not self.outcomes.unrecorded() and not running.deferring

    async def look_at_horizon(self) -> None:
        """Read how old the xmin horizon is: held, claims read from frontiers (see frontier)."""
        try:
            async with self.pool.connection() as conn:
                now = await _db.arun_pooled(horizon.read_op(horizon.DEFAULT_MAX_AGE), conn)
        except psycopg.OperationalError:
            raise  # the connection: the claim loop's retry handles it
        except psycopg.Error as exc:
            # A server that will not say (a permission, a view it lacks): claim from the front,
            # as without a hold, and ask again later.
            if not self.horizon_unread:
                log.warning(
                    "worker %s: cannot read the xmin horizon (%s); claims read every queue "
                    "from the front",
                    self.worker_id,
                    short(exc),
                )
            self.horizon_unread = True
            self.frontier.looked(0)
            return
        self.horizon_unread = False
        self.frontier.looked(now.xmin_age)
        # Said at the look after each change (the end of a hold is the end of its draining,
        # which a sweep decides between two looks).
        if self.frontier.held != self.said_held:
            self.said_held = self.frontier.held
            log.info(
                "worker %s: the xmin horizon is %d transactions old: claims read %s",
                self.worker_id,
                now.xmin_age,
                "past the jobs claimed, with a sweep now and then"
                if self.frontier.held
                else "every queue from the front",
            )

    async def release_due(self) -> int:
        """Release scheduled jobs now due (a burst worker does not wait for the leader)."""
        async with self.pool.connection() as conn:
            return await scheduler.run_once(conn, limit=1000, events=self.events)

    # -- claims -----------------------------------------------------------------------

    async def _sweep(self, limit: int) -> None:
        """A sweep while the horizon is held, beside the claims from the frontiers. Its
        `limit` slots were reserved when it was started (run_once)."""
        try:
            rows = await self._claim(limit, self.frontier.sweep())
            self.running.start_all(rows)
        except DB_ERRORS as exc:
            # Like a failed claim: its reply may be what was lost, so look before the next.
            log.warning("worker %s: sweep failed (%s)", self.worker_id, short(exc))
            self.reconcile_soon()
        finally:
            self.reserved -= limit
            self.sweeping = None
            self.control.wake.set()

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        """Claim up to `limit` jobs (at most max_batch); their slots are held meanwhile."""
        self.reserved += limit
        try:
            return await self._claim(limit, self.frontier.claim())
        finally:
            self.reserved -= limit

    async def _claim(self, limit: int, claim: Claim) -> list[dict[str, Any]]:
        """Claim up to `limit` jobs into slots the caller holds, reading from `claim`."""
        self.claims_in_flight += 1
        n = min(limit, self.max_batch)
        try:
            async with self.pool.connection() as conn:
                rows, main = await _db.arun_pooled(self.claim_op(n, claim), conn)
        finally:
            self.claims_in_flight -= 1
        self.claimed(rows, main, n, claim)
        return rows  # type: ignore[no-any-return]

    def claim_op(self, limit: int, claim: Claim) -> Op:
        """The claim of up to `limit` jobs, as an Op: (rows, rows of claim_jobs). `claim`:
        where it reads each queue from (Frontier.claim)."""
        return ops.claim_op(
            self.worker_id,
            self.limited_tasks,
            self.queues,
            limit,
            lambda n: self.claim_params(n, claim.params),
        )

    def claim_params(self, limit: int, front: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters of claim_jobs (and of finish_and_claim's claim)."""
        return {
            "queues": self.queues,
            "weights": self.weights,
            "offsets": [self.shares.get(q, 0.0) for q in self.queues],
            "order": self.queue_order,
            "limit": limit,
            "worker_id": self.worker_id,
            **front,
        }

    def claimed(self, rows: list[Any], main: list[Any], limit: int, claim: Claim) -> None:
        """Count a claim of up to `limit` jobs: `main` of its `rows` came from claim_jobs."""
        self.frontier.claimed(claim, main, limit - (len(rows) - len(main)))
        if self.weighted:
            self.account(main, full=len(main) == limit - (len(rows) - len(main)))

    def account(self, rows: list[dict[str, Any]], full: bool) -> None:
        """Remember how much each weighted queue got, for the next claim's shares."""
        for r in rows:
            self.shares[r["queue"]] = self.shares.get(r["queue"], 0.0) + 1
        shares = {
            q: self.shares.get(q, 0.0) / w for q, w in zip(self.queues, self.weights, strict=True)
        }
        if not full:
            # A short claim means the queues that gave nothing are empty: an
            # idle queue earns no credit to flood the worker with later.
            got = {r["queue"] for r in rows}
            floor = min((shares[q] for q in got), default=0.0)
            shares = {q: (v if q in got else floor) for q, v in shares.items()}
        low = min(shares.values())
        self.shares = {
            q: (shares[q] - low) * w for q, w in zip(self.queues, self.weights, strict=True)
        }

    # -- reconcile --------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Compare what the database says this worker runs with what it does run.

        Jobs claimed by a statement whose reply was lost go back to the queue;
        cancellations whose notification was lost are acted on. No claim may
        be in flight meanwhile: its jobs, committed but not yet started here,
        would look lost. The fetch loop runs this between its own claims;
        writers claim nothing while it runs, and it waits while they do.
        """
        if self.claims_in_flight:
            self.reconcile_due = time.monotonic() + 0.05  # a writer's claim is on its way
            return
        self.reconcile_due = time.monotonic() + self.heartbeat_interval
        self.reconciling = True
        try:
            async with self.pool.connection() as conn:
                rows = await _db.arun_pooled(ops.running_jobs_op(self.worker_id), conn)
        finally:
            self.reconciling = False
        recorded = self.outcomes.runs()
        attempts, deferring = self.running.attempts, self.running.deferring
        orphans: list[ops.Run] = []
        for r in rows:
            attempt = attempts.get(r["id"])
            if attempt is not None and attempt.row["attempt"] == r["attempt"]:
                if r["cancel_requested"]:
                    attempt.request_cancel()
            elif r["id"] not in deferring and (r["id"], r["attempt"]) not in recorded:
                orphans.append((r["id"], r["attempt"]))
        if orphans:
            await self._give_back(orphans)

    async def _give_back(self, orphans: list[ops.Run]) -> None:
        # A job finished by a writer while the rows above were on their way
        # is among them too: the statement's fence leaves it alone, so only
        # what it really gave back is reported.
        async with self.pool.connection() as conn:
            op = ops.hand_back_op(self.worker_id, orphans, "unstarted")
            back = await _db.arun_pooled(op, conn)
        if back:
            self.events.rows(
                back, Status.RUNNING, by=pipeline.WORKER, reason="its claim reply was lost"
            )
            log.warning(
                "worker %s: gave back %d claimed jobs whose claim reply was lost",
                self.worker_id,
                len(back),
            )
