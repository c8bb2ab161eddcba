"""Worker: fetcher, executor, completer, heartbeat, listener and maintenance on one loop.

fetcher --claims up to free capacity (SKIP LOCKED)--> executor (async / threads / processes)
   ^  woken by LISTEN/NOTIFY, a recorded outcome, or the poll      | outcomes
Postgres <-- completer: one fenced statement per batch of outcomes <+
   ^
maintenance (the leader only): release due jobs, rescue jobs of dead workers
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgjobs import _db, pipeline
from pgjobs._db import ADAPTERS, KEEPALIVE, acheck_idle
from pgjobs.app import App
from pgjobs.errors import ConfigurationError
from pgjobs.events import HookRunner
from pgjobs.jobs import Status
from pgjobs.maintenance import Maintenance, scheduler
from pgjobs.queries import sql
from pgjobs.worker.executor import Attempt, Executor, Outcome
from pgjobs.worker.processes import ProcessPool, find_app_spec

log = logging.getLogger("pgjobs.worker")

CHANNEL = "pgjobs"
CANCEL_CHANNEL = "pgjobs_cancel"
DB_ERRORS = (psycopg.Error, OSError)
#: Seconds a shutdown may spend past its grace period writing what is left.
FINAL_STEP_TIMEOUT = 5.0
#: Batches of outcomes being written at once (each on its own connection).
WRITERS = 2


class Worker:
    """Runs the jobs of some queues, `concurrency` at a time, until stopped."""

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | Mapping[str, float] = ("default",),
        queue_order: str | None = None,
        concurrency: int = 10,
        processes: int | None = None,
        app_spec: str | None = None,
        poll_interval: float = 2.0,
        release_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        lease_ttl: float = 30.0,
        grace_period: float = 30.0,
        burst: bool = False,
        max_batch: int = 500,
        keep_succeeded: float | timedelta | None = timedelta(days=1),
        keep_failed: float | timedelta | None = timedelta(days=30),
        vacuum: bool = True,
        max_lost: int = 3,
        unknown_task_timeout: float = 3600.0,
        max_stuck_threads: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        if poll_interval <= 0:
            raise ConfigurationError(f"poll_interval must be positive, got {poll_interval}")
        if lease_ttl < 2 * heartbeat_interval:
            raise ConfigurationError(
                f"lease_ttl ({lease_ttl} s) must be at least twice heartbeat_interval "
                f"({heartbeat_interval} s), or a slow heartbeat would look like a dead worker"
            )
        if processes is not None and processes < 1:
            raise ConfigurationError(f"processes must be at least 1, got {processes}")
        if max_lost < 1:
            raise ConfigurationError(f"max_lost must be at least 1, got {max_lost}")
        if unknown_task_timeout < 0:
            raise ConfigurationError(
                f"unknown_task_timeout must not be negative, got {unknown_task_timeout}"
            )
        if max_stuck_threads is not None and max_stuck_threads < 0:
            raise ConfigurationError(
                f"max_stuck_threads must not be negative, got {max_stuck_threads}"
            )
        self.app = app
        self.queues, self.weights, self.queue_order = _queue_plan(queues, queue_order)
        self.keep_succeeded = _seconds(keep_succeeded)
        self.keep_failed = _seconds(keep_failed)
        self.vacuum = vacuum
        self.max_lost = max_lost
        self.unknown_task_timeout = unknown_task_timeout
        self.limited_tasks = sorted(name for name, t in app.tasks.items() if t.limited)
        self.processes = processes
        # Child processes run one attempt each: capacity is the number of children.
        self.concurrency = max(concurrency, processes or 0)
        self.app_spec = app_spec
        self.poll_interval = poll_interval
        self.release_interval = release_interval
        self.heartbeat_interval = heartbeat_interval
        self.lease_ttl = lease_ttl
        self.grace_period = grace_period
        self.burst = burst
        # Threads stuck past a hard time limit that a worker tolerates before it
        # stops claiming and restarts itself (see _check_stuck).
        self.max_stuck_threads = (
            max(1, self.concurrency // 2) if max_stuck_threads is None else max_stuck_threads
        )
        #: what the process should exit with: non-zero asks its supervisor for a restart
        self.exit_code = 0
        self.max_batch = max_batch
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.jobs_done = 0
        self.crashed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Only a worker whose App has hooks pays for events: checked once per batch.
        self._hooks: HookRunner | None = None
        self._stop_requested = threading.Event()
        self._started = threading.Event()
        self._signals = 0

    # -- public control ------------------------------------------------------------

    def run(self, *, install_signal_handlers: bool | None = None) -> None:
        """Run until stopped (SIGTERM, SIGINT, stop(), or an empty queue with burst=True)."""
        asyncio.run(self.arun(install_signal_handlers=install_signal_handlers))

    def stop(self) -> None:
        """Ask the worker to stop: no new claims; running jobs get the grace period. Thread-safe."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._request_stop)

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the worker has registered and listens (for tests and embedding)."""
        return self._started.wait(timeout)

    @property
    def abandoned_threads(self) -> int:
        """Threads still running attempts this worker gave up on (past a hard limit or stop)."""
        executor = getattr(self, "executor", None)
        return 0 if executor is None else executor.abandoned_threads

    # -- the run -------------------------------------------------------------------

    async def arun(self, *, install_signal_handlers: bool | None = None) -> None:
        """Async twin of run()."""
        self._loop = asyncio.get_running_loop()
        # Every transition this worker makes, maintenance's included, goes through
        # one pipeline: the log and the App's hooks (async ones on this loop).
        self._events = pipeline.Pipeline(self.app.hooks)
        self._hooks = self._events.bind(self._loop)
        self._stopping = asyncio.Event()
        self._stop_deadline: float | None = None
        self._final_deadline = 0.0
        self._force = False
        self._wake = asyncio.Event()
        self._listening = asyncio.Event()
        self._backlog = False
        # The attempts running, each with the asyncio task that runs it.
        self._attempts: dict[uuid.UUID, Attempt] = {}
        # Claimed jobs of tasks this worker does not know, on their way back.
        self._deferring: dict[uuid.UUID, dict[str, Any]] = {}
        self._unknown_warned: set[str] = set()
        self._deferrals: set[asyncio.Task[None]] = set()
        # False while the rescuer has taken this worker for dead and it has not
        # registered again: it claims nothing meanwhile (the claim statements
        # check the row too).
        self._registered = False
        # Look at the worker's row before the next claim: set after a database
        # error, when the rescuer may have taken the worker for dead.
        self._check_registration = False
        self._lease_lapsed = False
        self._too_many_stuck = False
        self._outcomes: list[Outcome] = []  # not yet sent to the database
        self._sending: list[list[Outcome]] = []  # batches on their way
        self._writers: set[asyncio.Task[None]] = set()
        self._finish_failures = 0
        self._outcomes_ready = asyncio.Event()
        self._progress: dict[uuid.UUID, str] = {}
        self._progress_lock = threading.Lock()
        self._last_heartbeat = time.monotonic()
        self._reconcile_due = 0.0
        self._claimed: dict[str, float] = {}
        # Slots promised to claims on their way to the database, beyond the
        # slots their own statements free (see _write), and how many such
        # claims there are.
        self._reserved = 0
        self._claims_in_flight = 0
        self._reconciling = False
        if self._stop_requested.is_set():
            self._stopping.set()

        url = self.app.url
        # Behind a transaction pooler a connection keeps no session: no settings
        # for the pools (the role's own: README, PgBouncer and other poolers), and
        # the leader's lock and the upkeep's connection take the direct URL, or,
        # with none, maintenance runs in rounds (pgjobs.maintenance.leader).
        pooled = self.app.pooler is not None
        session_url = self.app.listen_url if pooled else url
        common: dict[str, Any] = {
            "kwargs": {
                "autocommit": True,
                "row_factory": dict_row,
                "context": ADAPTERS,
                **KEEPALIVE,
                **_db.connection_kwargs(self.app.pooler),
            },
            "timeout": self.app.connect_timeout,
            "check": acheck_idle,
            "open": False,
        }
        self.pool: AsyncConnectionPool[Any] = _db.AsyncPool(
            url,
            min_size=2,
            max_size=6,
            configure=None if pooled else session_settings,
            name=f"pgjobs-worker-{self.id}",
            **common,
        )
        # The busy worker's statement has connections of its own, on which
        # Postgres reuses one plan for it (see reuse_plans). Opened when a
        # backlog first needs them; closed again after a minute without one.
        self.busy_pool: AsyncConnectionPool[Any] = _db.AsyncPool(
            url,
            min_size=0,
            max_size=WRITERS,
            configure=None if pooled else reuse_plans,
            max_idle=60,
            connection_class=_db.AsyncPoolConnection,
            name=f"pgjobs-worker-{self.id}-busy",
            **common,
        )
        await self.pool.open(wait=False)
        await self.busy_pool.open(wait=False)
        process_pool = None
        if self.processes:
            spec = self.app_spec or find_app_spec(self.app)
            process_pool = ProcessPool(self.processes, spec)
            await process_pool.start()
        self.executor = Executor(
            self.app.tasks, self.concurrency, self._report_progress, process_pool
        )
        self.maintenance = Maintenance(
            session_url,
            self.pool,
            worker_id=self.id,
            lease_seconds=self.lease_ttl,
            max_lost=self.max_lost,
            tick=self.release_interval,
            connect_timeout=self.app.connect_timeout,
            app=self.app,
            keep_succeeded=self.keep_succeeded,
            keep_failed=self.keep_failed,
            vacuum=self.vacuum,
            pooler=self.app.pooler,
            events=self._events,
        )

        if install_signal_handlers is None:
            install_signal_handlers = threading.current_thread() is threading.main_thread()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal, sig)

        await self._register_at_start()
        helpers = [
            asyncio.create_task(self._complete_loop(), name="completer"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._progress_loop(), name="progress"),
            asyncio.create_task(self.maintenance.run(), name="maintenance"),
        ]
        if not self.burst:
            helpers.append(asyncio.create_task(self._listen_loop(), name="listener"))
        for helper in helpers:
            helper.add_done_callback(self._helper_ended)
        if not self.burst:
            # Report "started" only once notifications can reach the worker.
            await self._wait_for(self._listening, timeout=self.app.connect_timeout)
        # Jobs of a task enqueued to a queue no worker serves wait, silently:
        # say so once, before "started", where whoever starts a worker looks.
        from pgjobs.health import unserved_tasks

        unserved = unserved_tasks(self.app.tasks.values(), self.queues)
        if unserved:
            log.warning(
                "worker %s serves none of the queues of these registered tasks: %s; "
                "their jobs wait for a worker with those queues in --queues",
                self.id,
                "; ".join(f"{q} ({', '.join(names)})" for q, names in unserved.items()),
            )
        log.info(
            "worker %s started: queues=%s concurrency=%d%s%s",
            self.id,
            ",".join(self.queues),
            self.concurrency,
            f" processes={self.processes}" if self.processes else "",
            " burst" if self.burst else "",
        )
        self._started.set()
        fetcher = asyncio.create_task(self._fetch_loop(), name="fetcher")
        try:
            await self._fetch_until_stopped(fetcher)
        finally:
            fetcher.cancel()
            await self._shutdown(helpers)
            if self._hooks is not None:
                # Off the loop: an async hook runs on it while the hook thread waits.
                await asyncio.to_thread(self._hooks.close, max(1.0, self.grace_period))
            if process_pool is not None:
                await process_pool.close()
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
        if self.crashed is not None:
            raise RuntimeError(f"worker {self.id} stopped on an internal error") from self.crashed

    async def _fetch_until_stopped(self, fetcher: asyncio.Task[None]) -> None:
        """Let the fetch loop run until it ends, or until a stop's grace period is over."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetcher, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not fetcher.done():
            # It sees the stop between statements. One in flight on a dead network
            # would hold the shutdown until TCP gives up (30 s of tcp_user_timeout),
            # so it gets the grace period, as running jobs do.
            left = (self._stop_deadline or 0.0) - time.monotonic()
            await asyncio.wait({fetcher}, timeout=max(0.0, left))
        for _ in range(2):
            if fetcher.done():
                break
            # The first cancel makes psycopg ask the server to cancel the query (a
            # dead network never answers); a second one makes it close the connection.
            # A claim that committed unseen leaves jobs the rescuer gives back.
            fetcher.cancel()
            await asyncio.wait({fetcher}, timeout=0.2)
        if fetcher.done() and not fetcher.cancelled():
            fetcher.result()  # an internal error of the fetch loop stops the worker loudly

    def _helper_ended(self, helper: asyncio.Task[None]) -> None:
        # The helpers loop forever and handle database errors themselves; one
        # that ends on its own hit a bug. Stop the worker loudly rather than
        # run on without, say, a completer.
        if helper.cancelled() or self._stopping.is_set():
            return
        exc = helper.exception()
        log.critical("worker %s: %s stopped unexpectedly: %r", self.id, helper.get_name(), exc)
        self.crashed = exc
        self._request_stop()

    def _request_stop(self) -> None:
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.grace_period
        self._stopping.set()
        self._wake.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "worker %s got %s: no new jobs; waiting up to %.0f s for %d running",
                self.id,
                sig.name,
                self.grace_period,
                len(self._attempts),
            )
        else:
            log.warning("worker %s got %s again: handing running jobs back now", self.id, sig.name)
            self._force = True
        self._request_stop()

    # -- fetcher -------------------------------------------------------------------

    def _free(self) -> int:
        # A slot is free once its outcome is recorded, not when the function
        # returns: so the database never shows more running jobs than the
        # worker's concurrency (per-task limits count on that). Threads left
        # running past a hard limit still hold theirs.
        busy = (
            len(self._attempts)
            + self._unrecorded()
            + self.executor.abandoned_threads
            + len(self._deferring)
        )
        return self.concurrency - busy - self._reserved

    def _may_claim(self) -> bool:
        return self._registered and not self._too_many_stuck and not self._stopping.is_set()

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            free = self._free()
            claimed = 0
            try:
                if self._check_registration:
                    await self._heartbeat_once()
                if time.monotonic() >= self._reconcile_due:
                    await self._reconcile()
                if free > 0 and self.burst:
                    await self._release_due()
                # Counted again after the awaits above: a writer may have
                # claimed meanwhile, and a stale count would claim past the
                # worker's concurrency.
                free = self._free()
                if free > 0 and self._may_claim():
                    rows = await self._claim(free)
                    self._start_all(rows)
                    claimed = len(rows)
                failures = 0
            except DB_ERRORS as exc:
                failures += 1
                delay = _retry_delay(failures)
                log.warning(
                    "worker %s: claim failed (%s); retrying in %.1f s", self.id, _short(exc), delay
                )
                # The claim may have committed without its reply reaching us:
                # look before the next claim, and give back what we do not run.
                # Past a long outage the rescuer may have taken this worker for
                # dead: look at its row first.
                self._reconcile_due = 0.0
                self._check_registration = True
                await self._sleep(delay)
                continue
            # A full claim means more jobs may be waiting: claim again as soon as
            # a slot frees instead of waiting for a notification.
            self._backlog = free <= 0 or claimed == free
            if (
                self.burst
                and claimed == 0
                and not self._attempts
                and not self._unrecorded()
                and not self._deferring
            ):
                log.info("worker %s: queues are empty, burst done", self.id)
                return
            if self._backlog and self._free() > 0:
                continue
            await self._sleep(self.poll_interval)

    async def _wait_for(self, event: asyncio.Event, timeout: float) -> None:
        """Wait for `event`, a stop request, or `timeout` seconds, whichever comes first."""
        waiters = [
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _sleep(self, seconds: float) -> None:
        """Wait for a wake-up (notification, recorded outcome, stop) or `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _claim(self, limit: int) -> list[dict[str, Any]]:
        self._reserved += limit
        self._claims_in_flight += 1
        try:
            async with self.pool.connection() as conn:
                return await self._claim_on(conn, min(limit, self.max_batch))
        finally:
            self._reserved -= limit
            self._claims_in_flight -= 1

    async def _claim_on(
        self, conn: psycopg.AsyncConnection[Any], limit: int
    ) -> list[dict[str, Any]]:
        """Claim up to `limit` jobs on `conn` (which may be in a pipeline with a finish)."""
        rows: list[dict[str, Any]] = []
        if self.limited_tasks:
            # Jobs of limited tasks first, each within its limit; the
            # rest of the free capacity goes to everything else.
            cur = await conn.execute(
                sql("claim_limited"),
                {
                    "tasks": self.limited_tasks,
                    "queues": self.queues,
                    "worker_id": self.id,
                    "limit": limit,
                },
            )
            rows = await cur.fetchall()
        if len(rows) < limit:
            cur = await conn.execute(sql("claim_jobs"), self._claim_params(limit - len(rows)))
            main: list[dict[str, Any]] = await cur.fetchall()
            if self.queue_order == "weighted":
                self._account(main, full=len(main) == limit - len(rows))
            rows += main
        return rows

    def _claim_params(self, limit: int) -> dict[str, Any]:
        return {
            "queues": self.queues,
            "weights": self.weights,
            "offsets": [self._claimed.get(q, 0.0) for q in self.queues],
            "order": self.queue_order,
            "limit": limit,
            "worker_id": self.id,
        }

    def _account(self, rows: list[dict[str, Any]], full: bool) -> None:
        """Remember how much each weighted queue got, for the next claim's shares."""
        for r in rows:
            self._claimed[r["queue"]] = self._claimed.get(r["queue"], 0.0) + 1
        shares = {
            q: self._claimed.get(q, 0.0) / w for q, w in zip(self.queues, self.weights, strict=True)
        }
        if not full:
            # A short claim means the queues that gave nothing are empty: an
            # idle queue earns no credit to flood the worker with later.
            got = {r["queue"] for r in rows}
            floor = min((shares[q] for q in got), default=0.0)
            shares = {q: (v if q in got else floor) for q, v in shares.items()}
        low = min(shares.values())
        self._claimed = {
            q: (shares[q] - low) * w for q, w in zip(self.queues, self.weights, strict=True)
        }

    async def _reconcile(self) -> None:
        """Compare what the database says this worker runs with what it does run.

        Jobs claimed by a statement whose reply was lost go back to the queue;
        cancellations whose notification was lost are acted on. No claim may
        be in flight meanwhile: its jobs, committed but not yet started here,
        would look lost. The fetch loop runs this between its own claims;
        writers claim nothing while it runs, and it waits while they do.
        """
        if self._claims_in_flight:
            self._reconcile_due = time.monotonic() + 0.05  # a writer's claim is on its way
            return
        self._reconcile_due = time.monotonic() + self.heartbeat_interval
        self._reconciling = True
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(sql("running_jobs_of_worker"), {"worker_id": self.id})
                rows: list[dict[str, Any]] = await cur.fetchall()
        finally:
            self._reconciling = False
        recorded = {(o.job_id, o.attempt) for o in self._outcomes}
        recorded.update((o.job_id, o.attempt) for batch in self._sending for o in batch)
        orphans: list[tuple[uuid.UUID, int]] = []
        for r in rows:
            attempt = self._attempts.get(r["id"])
            if attempt is not None and attempt.row["attempt"] == r["attempt"]:
                if r["cancel_requested"]:
                    attempt.request_cancel()
            elif r["id"] not in self._deferring and (r["id"], r["attempt"]) not in recorded:
                orphans.append((r["id"], r["attempt"]))
        if orphans:
            # A job finished by a writer while the rows above were on their
            # way is among them too: the statement's fence leaves it alone, so
            # only what it really gave back is reported.
            back = await self._hand_back(orphans, "unstarted")
            if back:
                self._events.rows(
                    back, Status.RUNNING, by=pipeline.WORKER, reason="its claim reply was lost"
                )
                log.warning(
                    "worker %s: gave back %d claimed jobs whose claim reply was lost",
                    self.id,
                    len(back),
                )

    async def _hand_back(
        self, runs: list[tuple[uuid.UUID, int]], outcome: str
    ) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql("hand_back_jobs"), self._hand_back_params(runs, outcome))
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    def _hand_back_params(self, runs: list[tuple[uuid.UUID, int]], outcome: str) -> dict[str, Any]:
        return {
            "ids": [r[0] for r in runs],
            "attempts": [r[1] for r in runs],
            "worker_id": self.id,
            "outcome": outcome,
        }

    def _start_all(self, rows: list[dict[str, Any]]) -> None:
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
                self._deferring[row["id"]] = row
            deferral = asyncio.create_task(self._defer(unknown))
            self._deferrals.add(deferral)
            deferral.add_done_callback(self._deferrals.discard)
        # Once per batch: a worker whose transitions are not logged pays
        # nothing per job for them.
        if rows:
            self._events.started(rows)

    def _start(self, row: dict[str, Any]) -> None:
        job_id = row["id"]
        attempt = self.executor.prepare(row)
        # Unnamed: a name would cost more than a no-op job's own work.
        attempt.task = asyncio.create_task(self._run_one(attempt))
        self._attempts[job_id] = attempt

    async def _run_one(self, attempt: Attempt) -> None:
        job_id = attempt.job_id
        try:
            outcome = await self.executor.run(attempt)
        except asyncio.CancelledError:
            return  # handed back at shutdown
        finally:
            # The job may run here again already under a new attempt (it was
            # rescued and claimed anew while this one ran on): that one stays.
            if self._attempts.get(job_id) is attempt:
                del self._attempts[job_id]
            if self._stopping.is_set():
                self._wake.set()
        if attempt.abandoned:
            return
        # Unlocked, the emptiness test is safe: this job's own progress
        # reports all came before its end, and so before this read.
        if self._progress:
            with self._progress_lock:
                outcome.progress = self._progress.pop(job_id, None)
        self.jobs_done += 1
        self._outcomes.append(outcome)
        self._outcomes_ready.set()

    def _abandon(self, attempts: Iterable[Attempt], reason: str) -> None:
        """Stop waiting for attempts that the shutdown hands back: their outcome is not recorded."""
        for attempt in list(attempts):
            if attempt.task is None:
                continue
            attempt.abandoned = True
            attempt.task.cancel()
            log.warning("worker %s: job %s abandoned: %s", self.id, attempt.job_id, reason)

    def _lose_leases(self, reason: str) -> None:
        """Stop the running attempts whose lease is lost; each gives its job back as it ends.

        Their slots stay taken until they do end, and what each ends with goes
        through the finish statement's fence like any outcome: it applies only
        if the job is still this attempt's.
        """
        lost = [a for a in self._attempts.values() if not a.lease_lost]
        for attempt in lost:
            attempt.lose_lease()
        if lost:
            log.warning(
                "worker %s: stopping %d running jobs: %s; each goes back to the queue",
                self.id,
                len(lost),
                reason,
            )

    async def _defer(self, rows: list[dict[str, Any]]) -> None:
        """Send claimed jobs of unknown tasks back to wait for a worker that knows them."""
        for name in sorted({r["task"] for r in rows} - self._unknown_warned):
            self._unknown_warned.add(name)
            log.warning(
                "worker %s: no task named %r is registered in this worker; its jobs go back "
                "to the queue for a worker that knows it (dead letters after %.0f s)",
                self.id,
                name,
                self.unknown_task_timeout,
            )
        failures = 0
        try:
            while True:
                try:
                    async with self.pool.connection() as conn:
                        cur = await conn.execute(
                            sql("defer_jobs"),
                            {
                                "ids": [r["id"] for r in rows],
                                "attempts": [r["attempt"] for r in rows],
                                "worker_id": self.id,
                                "give_up_after": self.unknown_task_timeout,
                                "message": "no worker that claimed the job knows its task",
                            },
                        )
                        back = await cur.fetchall()
                    break
                except DB_ERRORS as exc:
                    failures += 1
                    if failures > 5 or self._stopping.is_set():
                        # They stay 'running' under this worker; the rescuer
                        # or the shutdown's hand-back takes them.
                        log.warning(
                            "worker %s: could not send back jobs of unknown tasks (%s)",
                            self.id,
                            _short(exc),
                        )
                        return
                    await asyncio.sleep(_retry_delay(failures))
            self._events.rows(
                back,
                Status.RUNNING,
                by=pipeline.WORKER,
                error="UnknownTask",
                reason="no task of that name is registered in this worker",
            )
        finally:
            for r in rows:
                self._deferring.pop(r["id"], None)
            self._wake.set()

    def _on_cancel_request(self, job_id: uuid.UUID) -> None:
        attempt = self._attempts.get(job_id)
        if attempt is not None:
            log.info("job %s: cancellation requested", job_id)
            attempt.request_cancel()

    # -- completer -----------------------------------------------------------------

    def _unrecorded(self) -> int:
        """Outcomes not yet in the database: their jobs still hold their slots."""
        return len(self._outcomes) + sum(len(b) for b in self._sending)

    async def _complete_loop(self) -> None:
        writers = self._writers
        try:
            while True:
                await self._outcomes_ready.wait()
                self._outcomes_ready.clear()
                # Two batches may be on their way at once, on two connections:
                # while one is written, the jobs claimed with the other run.
                while self._outcomes and len(writers) < WRITERS:
                    writer = asyncio.create_task(self._write(self._next_batch()), name="writer")
                    writers.add(writer)
        finally:
            for writer in writers:
                writer.cancel()

    def _next_batch(self) -> list[Outcome]:
        """Take the next batch of outcomes to send."""
        # At most half the capacity per batch, so there is a second.
        size = max(1, min(self.max_batch, self.concurrency // 2))
        batch = self._outcomes[:size]
        del self._outcomes[:size]
        self._sending.append(batch)
        return batch

    async def _write(self, batch: list[Outcome]) -> None:
        try:
            while await self._write_one(batch):
                # Give the jobs this statement claimed one turn: short ones end
                # in it, and their outcomes leave in this writer's next
                # statement before the other writer's reply is handled. So the
                # two writers take turns, and the database works on one batch
                # while this process runs the jobs of the other.
                await asyncio.sleep(0)
                if not self._outcomes:
                    return
                batch = self._next_batch()
        finally:
            # Leave the set before waking the completer, so that it sees this
            # writer's slot free (a done-callback would run only after it looked).
            self._writers.discard(asyncio.current_task())
            self._outcomes_ready.set()

    async def _write_one(self, batch: list[Outcome]) -> bool:
        """Send one batch (claiming with it); False if it failed and went back to the queue."""
        # While jobs are waiting, the statement that records outcomes also
        # claims as many new jobs as it frees slots (plus any already free),
        # in the same round trip.
        claim = 0
        if (self._backlog or self.burst) and self._may_claim() and not self._reconciling:
            claim = max(0, min(self.max_batch, self._free() + len(batch)))
        # The batch's own slots stay counted (as unrecorded) until the reply:
        # one transaction frees them and fills them again, so the claim holds
        # only what it takes beyond them. Counting both would make the other
        # writer's claim come up empty and cost a separate claim.
        held = max(0, claim - len(batch))
        self._reserved += held
        self._claims_in_flight += claim > 0
        try:
            rows = await self._finish(batch, claim)
            self._finish_failures = 0
        except DB_ERRORS as exc:
            # Keep the outcomes and try again: the jobs stay 'running' under
            # this worker meanwhile, so nothing is lost.
            self._finish_failures += 1
            delay = _retry_delay(self._finish_failures)
            log.warning(
                "worker %s: recording %d outcomes failed (%s); retrying in %.1f s",
                self.id,
                len(batch),
                _short(exc),
                delay,
            )
            if claim:
                # A claim may have committed without its reply.
                self._reconcile_due = 0.0
            self._check_registration = True
            self._reserved -= held
            self._claims_in_flight -= claim > 0
            held = claim = 0
            try:
                await asyncio.sleep(delay)
            finally:
                self._outcomes[:0] = batch
            return False
        finally:
            self._reserved -= held
            self._claims_in_flight -= claim > 0
            self._sending.remove(batch)
        self._start_all(rows)
        if claim:
            self._backlog = len(rows) == claim
        if self._backlog or self.burst or self._stopping.is_set():
            self._wake.set()
        return True

    async def _finish(self, batch: list[Outcome], claim: int = 0) -> list[dict[str, Any]]:
        """Record a batch of outcomes and, in the same round trip, claim up to `claim` jobs."""
        sent: list[str | None] = [o.status.value for o in batch]
        params = {
            "worker_id": self.id,
            "ids": [o.job_id for o in batch],
            "attempts": [o.attempt for o in batch],
            "statuses": sent,
            "outcomes": [o.outcome for o in batch],
            "results": [o.result for o in batch],
            "errors": _unless_all_null([o.error for o in batch]),
            "progress": _unless_all_null([o.progress for o in batch]),
            "retry_in": _unless_all_null([o.retry_in for o in batch]),
        }
        rows: list[dict[str, Any]] = []
        # The status each outcome got, in the batch's order; None for one
        # that did not apply (this worker no longer held the job's lease).
        statuses: list[str | None]
        if claim and not self.limited_tasks:
            # Only the outcomes that did not apply as sent come back.
            other: dict[uuid.UUID, str | None] = {}
            async with self.busy_pool.connection() as conn:
                got = await finish_and_claim(conn, {**params, **self._claim_params(claim)})
            for r in got:
                if r["kind"] == "finished":
                    other[r["id"]] = r["status"]
                else:
                    rows.append(r)
            if other:
                sent = [other.get(o.job_id, s) for o, s in zip(batch, sent, strict=True)]
            statuses = sent
            if self.queue_order == "weighted":
                self._account(rows, full=len(rows) == claim)
        else:
            async with self.pool.connection() as conn:
                if claim:
                    async with conn.pipeline():
                        cur = await conn.execute(sql("finish_jobs"), params)
                        rows = await self._claim_on(conn, claim)
                        applied = {r["id"]: r["status"] for r in await cur.fetchall()}
                else:
                    cur = await conn.execute(sql("finish_jobs"), params)
                    applied = {r["id"]: r["status"] for r in await cur.fetchall()}
            statuses = [applied.get(o.job_id) for o in batch]
        if None in statuses:
            for o, status in zip(batch, statuses, strict=True):
                if status is None:
                    log.warning(
                        "job %s: outcome of attempt %d ignored: this worker no longer holds "
                        "its lease",
                        o.job_id,
                        o.attempt,
                    )
        self._events.outcomes(batch, statuses)
        return rows

    async def _flush_outcomes(self) -> None:
        # Outcomes left unwritten are not lost (the jobs stay 'running' under
        # this worker and are rescued), so a dead database does not hold up
        # the shutdown past the grace period.
        while self._unrecorded() and time.monotonic() < self._final_deadline:
            self._outcomes_ready.set()
            await asyncio.sleep(0.01)

    # -- progress, heartbeat, listener ------------------------------------------------

    def _report_progress(self, job_id: uuid.UUID, progress: str) -> None:
        # Called from task threads and the loop alike; the progress loop writes
        # the latest value per job, so a task may report as often as it likes.
        with self._progress_lock:
            self._progress[job_id] = progress

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            with self._progress_lock:
                pending = {k: v for k, v in self._progress.items() if k in self._attempts}
            if not pending:
                continue
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(
                        sql("set_progress"),
                        {
                            "worker_id": self.id,
                            "ids": list(pending),
                            "progress": list(pending.values()),
                        },
                    )
            except DB_ERRORS as exc:
                log.warning("worker %s: writing progress failed (%s)", self.id, _short(exc))
                continue
            with self._progress_lock:
                for k, v in pending.items():
                    if self._progress.get(k) == v:
                        del self._progress[k]

    async def _register(self) -> None:
        async with self.pool.connection() as conn:
            for name in self.limited_tasks:
                task = self.app.tasks[name]
                await conn.execute(
                    sql("set_task_limit"),
                    {
                        "task": name,
                        "max_running": task.concurrency,
                        "rate_count": task.rate.count if task.rate else None,
                        "rate_period": task.rate.period if task.rate else None,
                    },
                )
            await conn.execute(
                sql("register_worker"),
                {
                    "worker_id": self.id,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "queues": self.queues,
                    "concurrency": self.concurrency,
                    "lease_seconds": self.lease_ttl,
                },
            )
        self._last_heartbeat = time.monotonic()
        self._registered = True
        self._lease_lapsed = False

    async def _register_at_start(self) -> None:
        """Register, waiting for the database if it cannot be reached yet.

        A worker started during an outage (a deploy while the database restarts,
        a supervisor that starts everything at once) waits for it, saying so,
        instead of exiting.
        """
        failures = 0
        while True:
            try:
                await self._register()
                if failures:
                    log.info("worker %s: the database answers again", self.id)
                return
            except DB_ERRORS as exc:
                if self._stopping.is_set():
                    raise
                failures += 1
                delay = _retry_delay(failures)
                log.warning(
                    "worker %s: cannot register with the database (%s); retrying in %.1f s",
                    self.id,
                    _short(exc),
                    delay,
                )
                await self._sleep(delay)
                if self._stopping.is_set():
                    raise

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            with contextlib.suppress(*DB_ERRORS):
                await self._heartbeat_once()
            self._check_stuck()

    async def _heartbeat_once(self) -> None:
        """Renew the lease; if the rescuer took this worker for dead, stop its runs and register
        again. Raises the database's error after logging it."""
        self._check_registration = False
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    sql("heartbeat"),
                    {
                        "worker_id": self.id,
                        "leader_pid": self.maintenance.leader_pid,
                        "stuck_threads": self.executor.abandoned_threads,
                    },
                )
                alive = await cur.fetchone()
        except DB_ERRORS as exc:
            self._check_registration = True
            silent = time.monotonic() - self._last_heartbeat
            log.warning(
                "worker %s: heartbeat failed (%s); last one %.0f s ago",
                self.id,
                _short(exc),
                silent,
            )
            if silent > self.lease_ttl and not self._lease_lapsed:
                # Past the lease the rescuer may hand these jobs to others.
                self._lease_lapsed = True
                self._lose_leases(f"no heartbeat for {silent:.0f} s, past the lease")
            raise
        if alive is None:
            # The rescuer took this worker for dead and gave its jobs back to
            # the queue, where others may claim them: running them on would
            # run them twice at once. Its claims are refused until it has
            # registered again.
            self._registered = False
            self._lose_leases("the rescuer took this worker for dead")
            log.warning("worker %s: its row was gone; registering again", self.id)
            await self._register()
            self._reconcile_due = 0.0
        else:
            self._last_heartbeat = time.monotonic()
            self._lease_lapsed = False

    def _check_stuck(self) -> None:
        """Stop claiming, and restart, when too many threads are stuck past a hard limit."""
        stuck = self.executor.abandoned_threads
        if stuck <= self.max_stuck_threads or self._too_many_stuck:
            return
        self._too_many_stuck = True
        log.error(
            "worker %s: %d threads are stuck past their hard time limit (more than %d): it "
            "claims no more jobs and restarts (exit status %d) once its running jobs are done "
            "or handed back; run tasks that ignore their limits with --processes",
            self.id,
            stuck,
            self.max_stuck_threads,
            RESTART_EXIT_CODE,
        )
        self.exit_code = RESTART_EXIT_CODE
        self._request_stop()

    async def _release_due(self) -> int:
        async with self.pool.connection() as conn:
            return await scheduler.run_once(conn, limit=1000, events=self._events)

    async def _listen_loop(self) -> None:
        url = self.app.listen_url or self.app.url
        if self.app.pooler is not None and self.app.listen_url is None:
            # LISTEN through a transaction pooler would listen on whichever server
            # connection ran it, for whoever gets that connection next. Without a
            # direct URL the worker polls (--poll-interval); cancellations are
            # seen at the next reconcile (every heartbeat interval).
            log.info(
                "worker %s: no listen_url behind a transaction pooler: it polls every %.1f s",
                self.id,
                self.poll_interval,
            )
            self._listening.set()
            await asyncio.Event().wait()  # until cancelled, as a listener would run
        wanted = set(self.queues)
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    url,
                    autocommit=True,
                    connect_timeout=max(1, int(self.app.connect_timeout)),
                    **KEEPALIVE,
                    **_db.connection_kwargs(self.app.pooler),
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    failures = 0
                    self._listening.set()
                    # Jobs may have arrived while nobody listened: look once.
                    self._reconcile_due = 0.0
                    self._wake.set()
                    async for note in conn.notifies():
                        if note.channel == CANCEL_CHANNEL:
                            with contextlib.suppress(ValueError):
                                self._on_cancel_request(uuid.UUID(note.payload))
                        elif note.payload in wanted:
                            self._wake.set()
            except DB_ERRORS as exc:
                failures += 1
                delay = _retry_delay(failures)
                log.warning(
                    "worker %s: listener lost its connection (%s); reconnecting in %.1f s",
                    self.id,
                    _short(exc),
                    delay,
                )
                await asyncio.sleep(delay)

    # -- shutdown ------------------------------------------------------------------

    async def _wait_running(self) -> None:
        # Up to the grace period, or until a second signal says not to wait.
        assert self._stop_deadline is not None
        while self._attempts and not self._force:
            left = self._stop_deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.wait(self._running_tasks(), timeout=min(left, 0.1))

    def _running_tasks(self) -> list[asyncio.Task[None]]:
        return [a.task for a in self._attempts.values() if a.task is not None]

    def _final_left(self) -> float:
        return max(0.1, self._final_deadline - time.monotonic())

    async def _goodbye(self, hand_back: list[tuple[uuid.UUID, int]]) -> None:
        """Hand back what still ran and unregister, within the shutdown's budget.

        On a connection of its own rather than the pool's: a pooled connection
        may be stuck in a query on a dead network, and cancelling that query
        waits for the server; a new connection just fails to connect in time.
        """
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(
                    self.app.url,
                    autocommit=True,
                    connect_timeout=max(2, int(self._final_left())),
                    row_factory=dict_row,
                    **KEEPALIVE,
                    **_db.connection_kwargs(self.app.pooler),
                ),
                self._final_left(),
            )
        except (*DB_ERRORS, TimeoutError) as exc:
            log.error(
                "worker %s: cannot reach the database to say goodbye (%s)%s",
                self.id,
                _short(exc),
                "; its running jobs go back when their lease runs out" if hand_back else "",
            )
            return
        async with conn:
            try:
                if hand_back:
                    cur = await conn.execute(
                        sql("hand_back_jobs"), self._hand_back_params(hand_back, "handed_back")
                    )
                    back = await cur.fetchall()
                    self._events.rows(
                        back, Status.RUNNING, by=pipeline.WORKER, reason="the worker is stopping"
                    )
                    log.info(
                        "worker %s handed %d running jobs back to the queue", self.id, len(back)
                    )
                await conn.execute(sql("unregister_worker"), {"worker_id": self.id})
            except DB_ERRORS as exc:
                log.error("worker %s: saying goodbye failed (%s)", self.id, _short(exc))

    async def _shutdown(self, helpers: Iterable[asyncio.Task[None]]) -> None:
        if self._stop_deadline is None:  # a burst that ran dry
            self._stop_deadline = time.monotonic() + self.grace_period
        if self._attempts and not self._force:
            await self._wait_running()
        # Past the grace period, what is left to say to the database (outcomes,
        # hand-back, goodbye) shares one short budget.
        self._final_deadline = time.monotonic() + FINAL_STEP_TIMEOUT
        running = list(self._attempts.values())
        left = [(a.job_id, a.row["attempt"]) for a in running]
        if self.executor.processes is not None:
            self.executor.processes.stop_replacing()
        self._abandon(running, "the worker is stopping; the job goes back to the queue")
        if self._deferrals:
            await asyncio.wait(self._deferrals, timeout=self._final_left())
        await asyncio.gather(*self._running_tasks(), return_exceptions=True)
        await self._flush_outcomes()
        await self._goodbye(left)
        for h in helpers:
            h.cancel()
        await asyncio.wait(list(helpers), timeout=self._final_left())
        self.executor.shutdown()
        await self.busy_pool.close(timeout=self._final_left())
        await self.pool.close(timeout=self._final_left())
        log.info("worker %s stopped after %d jobs", self.id, self.jobs_done)


QUEUE_ORDERS = ("priority", "strict", "weighted")
#: The exit status of a worker that stopped to be restarted (too many stuck threads).
RESTART_EXIT_CODE = 75
#: The longest wait between tries after a database error: work resumes within
#: about this long of the database coming back.
MAX_RETRY_DELAY = 1.0


def _retry_delay(failures: int) -> float:
    return min(MAX_RETRY_DELAY, 0.1 * 2.0 ** min(failures, 10))


async def session_settings(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set up a worker connection (see the statement for why)."""
    await conn.execute(sql("session_settings"))


async def reuse_plans(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set up a connection that runs finish_and_claim alone, on one plan reused for every batch."""
    await conn.execute(sql("generic_plan"))


async def finish_and_claim(
    conn: _db.AsyncPoolConnection, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Record a batch of outcomes and claim the next jobs: one statement, one round trip."""
    # On the connection's kept cursor: a new one per batch would find out
    # again how to dump each parameter, half of what dumping a batch costs.
    cur = conn.ops_cursor()
    # Prepared at once: its plan is reused for every batch (reuse_plans). Not on a
    # connection that prepares nothing (behind a transaction pooler).
    prepare = None if conn.prepare_threshold is None else True
    await cur.execute(sql("finish_and_claim"), params, prepare=prepare)
    return await cur.fetchall()


def _queue_plan(
    queues: Sequence[str] | Mapping[str, float], order: str | None
) -> tuple[list[str], list[float], str]:
    """Queue names, their weights and the order to claim them in, checked."""
    if isinstance(queues, Mapping):
        weights = dict(queues)
        order = order or "weighted"
    else:
        weights = dict.fromkeys(queues, 1.0)
        order = order or "priority"
    if not weights or any(not q for q in weights):
        raise ConfigurationError("a worker needs at least one queue name")
    if order not in QUEUE_ORDERS:
        raise ConfigurationError(
            f"queue_order must be one of {', '.join(QUEUE_ORDERS)}, got {order!r}"
        )
    for name, weight in weights.items():
        if not weight > 0:
            raise ConfigurationError(f"queue {name!r}: weight must be positive, got {weight}")
    return list(weights), [float(w) for w in weights.values()], order


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ConfigurationError(f"a retention must not be negative, got {seconds} s")
    return seconds


def _unless_all_null(values: list[Any]) -> list[Any]:
    """`values`, or no values when all are None: the statement's unnest() pads with NULLs."""
    # A batch of successes has no errors, progress or retries; an empty list
    # is cheaper to send than 50 NULLs (psycopg packs each one in Python).
    return [] if values.count(None) == len(values) else values


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
