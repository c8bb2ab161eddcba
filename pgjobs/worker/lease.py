"""The lease: the worker's row in pgjobs.workers, renewed by a heartbeat, and what losing it means.

Claims are fenced by the row: a worker without one claims nothing (the claim
statements check it). The leader's rescuer takes a worker whose heartbeat is older
than its lease for dead: it deletes the row and gives the jobs back to the queue,
with their next attempt numbered anew. The worker then stops the attempts it still
runs (lose_leases: each ends without its outcome being applied) and registers again.
A worker cut off from the database past its lease does the same on its own, since
the rescuer may have handed its jobs to others meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgjobs.core.jobs import Status
from pgjobs.db import connections
from pgjobs.db import driver as _db
from pgjobs.observe import pipeline
from pgjobs.worker import ops
from pgjobs.worker.control import DB_ERRORS, Control, retry_delay, short
from pgjobs.worker.running import Running

log = logging.getLogger("pgjobs.worker")

#: The exit status of a worker that stopped to be restarted (too many stuck threads).
RESTART_EXIT_CODE = 75

#: Seconds between tries of the goodbye's connection, while its deadline allows another.
GOODBYE_RETRY = 0.25


class Lease:
    """Registers the worker, renews its lease, and acts when it is lost."""

    def __init__(
        self,
        worker_id: str,
        pool: AsyncConnectionPool[Any],
        running: Running,
        control: Control,
        events: pipeline.Pipeline,
        *,
        queues: Sequence[str],
        concurrency: int,
        lease_ttl: float,
        heartbeat_interval: float,
        max_stuck_threads: int,
        limits: Sequence[Mapping[str, Any]],
        leader_pid: Callable[[], int | None],
        on_rejoin: Callable[[], None],
    ) -> None:
        self.worker_id = worker_id
        self.pool = pool
        self.running = running
        self.control = control
        #: where the worker's transitions go: the log and the App's hooks
        self.events = events
        self.queues = list(queues)
        self.concurrency = concurrency
        self.lease_ttl = lease_ttl
        self.heartbeat_interval = heartbeat_interval
        self.max_stuck_threads = max_stuck_threads
        # The limits of the App's limited tasks, written with each registration.
        self.limits = list(limits)
        self.leader_pid = leader_pid
        # Called once registered again after the row was gone: the producer then
        # compares what the database says the worker runs with what it runs.
        self.on_rejoin = on_rejoin
        #: False while the rescuer has taken this worker for dead and it has not
        #: registered again: it claims nothing meanwhile.
        self.registered = False
        #: look at the row before the next claim: set after a database error, when
        #: the rescuer may have taken the worker for dead
        self.check = False
        self.lapsed = False  # the lease ran out with no heartbeat: leases were lost
        #: set once too many threads are stuck: the worker stops claiming and restarts
        self.too_many_stuck = False
        self.last_heartbeat = time.monotonic()

    def suspect(self) -> None:
        """A statement failed: look at the row before the next claim."""
        self.check = True

    async def register(self) -> None:
        async with self.pool.connection() as conn:
            op = ops.register_op(
                self.worker_id,
                os.getpid(),
                self.queues,
                self.concurrency,
                self.lease_ttl,
                self.limits,
            )
            await _db.arun_pooled(op, conn)
        self.last_heartbeat = time.monotonic()
        self.registered = True
        self.lapsed = False

    async def register_at_start(self) -> None:
        """Register, waiting for the database if it cannot be reached yet.

        A worker started during an outage (a deploy while the database restarts,
        a supervisor that starts everything at once) waits for it, saying so,
        instead of exiting.
        """
        failures = 0
        while True:
            try:
                await self.register()
                if failures:
                    log.info("worker %s: the database answers again", self.worker_id)
                return
            except DB_ERRORS as exc:
                if self.control.stopping.is_set():
                    raise
                failures += 1
                delay = retry_delay(failures)
                log.warning(
                    "worker %s: cannot register with the database (%s); retrying in %.1f s",
                    self.worker_id,
                    short(exc),
                    delay,
                )
                await self.control.sleep(delay)
                if self.control.stopping.is_set():
                    raise

    async def run(self) -> None:
        """Renew the lease every heartbeat interval, until cancelled."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            with contextlib.suppress(*DB_ERRORS):  # logged; the next heartbeat tries again
                await self.run_once()
            self.check_stuck()

    async def run_once(self) -> None:
        """Renew the lease; if the rescuer took this worker for dead, stop its runs and register
        again. Raises the database's error after logging it."""
        self.check = False
        try:
            async with self.pool.connection() as conn:
                op = ops.heartbeat_op(
                    self.worker_id, self.leader_pid(), self.running.executor.abandoned_threads
                )
                alive = await _db.arun_pooled(op, conn)
        except DB_ERRORS as exc:
            self._failed(exc)
            raise
        if alive is None:
            # The rescuer took this worker for dead and gave its jobs back to
            # the queue, where others may claim them: running them on would
            # run them twice at once. Its claims are refused until it has
            # registered again.
            self.registered = False
            self.running.lose_leases("the rescuer took this worker for dead")
            log.warning("worker %s: its row was gone; registering again", self.worker_id)
            await self.register()
            self.on_rejoin()
        else:
            self.last_heartbeat = time.monotonic()
            self.lapsed = False

    def _failed(self, exc: BaseException) -> None:
        self.check = True
        silent = time.monotonic() - self.last_heartbeat
        log.warning(
            "worker %s: heartbeat failed (%s); last one %.0f s ago",
            self.worker_id,
            short(exc),
            silent,
        )
        if silent > self.lease_ttl and not self.lapsed:
            # Past the lease the rescuer may hand these jobs to others.
            self.lapsed = True
            self.running.lose_leases(f"no heartbeat for {silent:.0f} s, past the lease")

    def check_stuck(self) -> None:
        """Stop claiming, and restart, when too many threads are stuck past a hard limit."""
        stuck = self.running.executor.abandoned_threads
        if stuck <= self.max_stuck_threads or self.too_many_stuck:
            return
        self.too_many_stuck = True
        log.error(
            "worker %s: %d threads are stuck past their hard time limit (more than %d): it "
            "claims no more jobs and restarts (exit status %d) once its running jobs are done "
            "or handed back; run tasks that ignore their limits with --processes",
            self.worker_id,
            stuck,
            self.max_stuck_threads,
            RESTART_EXIT_CODE,
        )
        self.control.request_stop()

    async def goodbye(
        self, url: str, pooler: str | None, hand_back: list[ops.Run], deadline: float
    ) -> None:
        """Hand back what still ran and unregister, by `deadline` (time.monotonic()).

        On a connection of its own rather than the pool's: a pooled connection
        may be stuck in a query on a dead network, and cancelling that query
        waits for the server; a new connection just fails to connect in time.
        A refusal that comes at once (the server is full, or restarting) is
        tried again until the deadline: a worker that leaves its row behind
        looks alive to the dashboard until the rescuer takes it for dead.
        """

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        while True:
            try:
                conn = await asyncio.wait_for(
                    connections.session(
                        url,
                        pooler=pooler,
                        connect_timeout=max(2, int(left())),
                        row_factory=dict_row,
                    ),
                    left(),
                )
                break
            except (*DB_ERRORS, TimeoutError) as exc:
                if deadline - time.monotonic() > GOODBYE_RETRY:
                    await asyncio.sleep(GOODBYE_RETRY)
                    continue
                log.error(
                    "worker %s: cannot reach the database to say goodbye (%s)%s",
                    self.worker_id,
                    short(exc),
                    "; its running jobs go back when their lease runs out" if hand_back else "",
                )
                return
        async with conn:
            try:
                if hand_back:
                    op = ops.hand_back_op(self.worker_id, hand_back, "handed_back")
                    back = await _db.arun(op, conn)
                    self.events.rows(
                        back, Status.RUNNING, by=pipeline.WORKER, reason="the worker is stopping"
                    )
                    log.info(
                        "worker %s handed %d running jobs back to the queue",
                        self.worker_id,
                        len(back),
                    )
                await _db.arun(ops.unregister_op(self.worker_id), conn)
            except DB_ERRORS as exc:
                log.error("worker %s: saying goodbye failed (%s)", self.worker_id, short(exc))
