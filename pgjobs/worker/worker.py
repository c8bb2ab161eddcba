"""Worker: the supervisor of the small services that run jobs, on one event loop.

producer --claims up to free capacity (SKIP LOCKED)--> running (executor: async / threads /
   ^  woken by the notifier (LISTEN/NOTIFY),            processes)
   |  a recorded outcome, or the poll                       | outcomes
Postgres <-- completer: one fenced statement per batch of outcomes, claiming with it
   ^  <-- lease: the worker's row, renewed by a heartbeat; lost leases stop their jobs
   ^  <-- progress: the latest progress of running jobs, a few times a second
maintenance (the leader only): release due jobs, rescue jobs of dead workers, prune

Each service owns its state and has a run() loop and a run_once() pass that tests may
call directly; the Worker builds them from its WorkerConfig, starts them, watches them
(one that ends on its own stops the worker loudly) and stops them in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from pgjobs.client.app import App
from pgjobs.db import connections
from pgjobs.maintenance import Maintenance
from pgjobs.observe import pipeline
from pgjobs.observe.events import HookRunner
from pgjobs.worker import ops
from pgjobs.worker.completer import WRITERS, Completer
from pgjobs.worker.config import WorkerConfig
from pgjobs.worker.control import Control
from pgjobs.worker.executor import Executor
from pgjobs.worker.lease import RESTART_EXIT_CODE, Lease
from pgjobs.worker.notifier import Notifier
from pgjobs.worker.outcomes import Outcomes
from pgjobs.worker.processes import ProcessPool, find_app_spec
from pgjobs.worker.producer import Producer
from pgjobs.worker.progress import Progress
from pgjobs.worker.running import Running

log = logging.getLogger("pgjobs.worker")

#: Seconds a shutdown may spend past its grace period writing what is left.
FINAL_STEP_TIMEOUT = 5.0


class Worker:
    """Runs the jobs of some queues, `concurrency` at a time, until stopped.

    Takes a WorkerConfig, or its settings as keyword arguments (pgjobs.worker.config
    lists them, with their defaults and bounds): `Worker(app, queues=["emails"],
    concurrency=20)`.
    """

    def __init__(self, app: App, config: WorkerConfig | None = None, **settings: Any) -> None:
        if config is None:
            config = WorkerConfig.make(**settings)
        elif settings:
            raise TypeError("Worker() takes a config or settings, not both")
        self.app = app
        self.config = config
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.queues = config.queues
        self.concurrency = config.concurrency
        self.crashed: BaseException | None = None
        self.control = Control(config.grace_period)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = threading.Event()
        self._started = threading.Event()
        self._signals = 0
        self._force = False  # a second signal: hand running jobs back now
        self._final_deadline = 0.0
        self._make_pools()
        processes = None
        if config.processes:
            processes = ProcessPool(config.processes, config.app_spec or find_app_spec(app))
        self.progress = Progress(self.id, self.pool, lambda: self.running.attempts)
        self.processes = processes
        self.executor = Executor(app.tasks, config.concurrency, self.progress.report, processes)
        # Every transition this worker makes, maintenance's included, goes through
        # one pipeline: the log and the App's hooks (async ones on the worker's loop).
        self.events = pipeline.Pipeline(app.hooks)
        self.maintenance = Maintenance(
            self._session_url,
            self.pool,
            worker_id=self.id,
            lease_seconds=config.lease_ttl,
            max_lost=config.max_lost,
            tick=config.release_interval,
            connect_timeout=app.connect_timeout,
            app=app,
            keep_succeeded=config.keep_succeeded,
            keep_failed=config.keep_failed,
            vacuum=config.vacuum,
            pooler=app.pooler,
            events=self.events,
        )
        self._make_services()

    def _make_pools(self) -> None:
        app = self.app
        # Behind a transaction pooler a connection keeps no session: no settings
        # for the pools (the role's own: README, PgBouncer and other poolers), and
        # the leader's lock and the upkeep's connection take the direct URL, or,
        # with none, maintenance runs in rounds (pgjobs.maintenance.leader).
        pooled = app.pooler is not None
        self._session_url = app.listen_url if pooled else app.url
        self.pool: AsyncConnectionPool[Any] = connections.worker_pool(
            app.url,
            pooler=app.pooler,
            connect_timeout=app.connect_timeout,
            min_size=2,
            max_size=6,
            configure=None if pooled else ops.session_settings,
            name=f"pgjobs-worker-{self.id}",
        )
        # The busy worker's statement has connections of its own, on which
        # Postgres reuses one plan for it (see ops.reuse_plans). Opened when a
        # backlog first needs them; closed again after a minute without one.
        self.busy_pool: AsyncConnectionPool[Any] = connections.worker_pool(
            app.url,
            pooler=app.pooler,
            connect_timeout=app.connect_timeout,
            min_size=0,
            max_size=WRITERS,
            configure=None if pooled else ops.reuse_plans,
            max_idle=60,
            name=f"pgjobs-worker-{self.id}-busy",
        )

    def _make_services(self) -> None:
        app, config, control = self.app, self.config, self.control
        limited = sorted(name for name, t in app.tasks.items() if t.limited)
        self.outcomes = Outcomes()
        self.running = Running(
            self.id,
            self.pool,
            self.executor,
            self.outcomes,
            self.progress,
            control,
            self.events,
            config.unknown_task_timeout,
        )
        self.lease = Lease(
            self.id,
            self.pool,
            self.running,
            control,
            self.events,
            queues=config.queues,
            concurrency=config.concurrency,
            lease_ttl=config.lease_ttl,
            heartbeat_interval=config.heartbeat_interval,
            max_stuck_threads=config.max_stuck_threads,
            limits=[_limit(app, name) for name in limited],
            leader_pid=lambda: self.maintenance.leader_pid,
            on_rejoin=lambda: self.producer.reconcile_soon(),
        )
        self.producer = Producer(
            self.id,
            config,
            self.pool,
            self.running,
            self.outcomes,
            self.lease,
            control,
            self.events,
            limited,
        )
        self.completer = Completer(
            self.id,
            self.pool,
            self.busy_pool,
            self.outcomes,
            self.producer,
            self.running,
            self.lease,
            control,
            self.events,
            config.burst,
            config.max_batch,
        )
        # LISTEN through a transaction pooler would listen on whichever server
        # connection ran it: there, only a direct URL (listen_url) listens.
        listen_url = app.listen_url or (app.url if app.pooler is None else None)
        self.notifier = Notifier(
            self.id,
            listen_url,
            app.connect_timeout,
            app.pooler,
            config.queues,
            config.poll_interval,
            on_connect=self._on_listening,
            on_job=control.wake.set,
            on_cancel=self.running.cancel,
        )

    # -- public control ------------------------------------------------------------

    @property
    def exit_code(self) -> int:
        """What the process should exit with: non-zero asks its supervisor for a restart."""
        return RESTART_EXIT_CODE if self.lease.too_many_stuck else 0

    @property
    def jobs_done(self) -> int:
        """Attempts run to an outcome by this worker."""
        return self.running.jobs_done

    @property
    def abandoned_threads(self) -> int:
        """Threads still running attempts this worker gave up on (past a hard limit or stop)."""
        return self.executor.abandoned_threads

    def run(self, *, install_signal_handlers: bool | None = None) -> None:
        """Run until stopped (SIGTERM, SIGINT, stop(), or an empty queue with burst=True)."""
        asyncio.run(self.arun(install_signal_handlers=install_signal_handlers))

    def stop(self) -> None:
        """Ask the worker to stop: no new claims; running jobs get the grace period. Thread-safe."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.control.request_stop)

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the worker has registered and listens (for tests and embedding)."""
        return self._started.wait(timeout)

    # -- the run -------------------------------------------------------------------

    async def arun(self, *, install_signal_handlers: bool | None = None) -> None:
        """Async twin of run()."""
        self._loop = loop = asyncio.get_running_loop()
        # The hook sink, None while the App has no hooks: only a worker whose App
        # has hooks pays for events.
        hooks = self.events.bind(loop)
        if self._stop_requested.is_set():
            self.control.request_stop()
        if install_signal_handlers is None:
            install_signal_handlers = threading.current_thread() is threading.main_thread()
        signals = (signal.SIGTERM, signal.SIGINT) if install_signal_handlers else ()
        helpers: list[asyncio.Task[None]] = []
        try:
            await self.pool.open(wait=False)
            await self.busy_pool.open(wait=False)
            if self.processes is not None:
                await self.processes.start()
            for sig in signals:
                loop.add_signal_handler(sig, self._on_signal, sig)
            await self.lease.register_at_start()
            helpers = self._start_helpers()
            await self._announce()
            producer = asyncio.create_task(self.producer.run(), name="producer")
            try:
                await self._produce_until_stopped(producer)
            finally:
                producer.cancel()
                await self._shutdown(helpers)
        finally:
            await self._close(hooks, signals)
        if self.crashed is not None:
            raise RuntimeError(f"worker {self.id} stopped on an internal error") from self.crashed

    def _start_helpers(self) -> list[asyncio.Task[None]]:
        helpers = [
            asyncio.create_task(self.completer.run(), name="completer"),
            asyncio.create_task(self.lease.run(), name="heartbeat"),
            asyncio.create_task(self.progress.run(), name="progress"),
            asyncio.create_task(self.maintenance.run(), name="maintenance"),
        ]
        if not self.config.burst:
            helpers.append(asyncio.create_task(self.notifier.run(), name="listener"))
        for helper in helpers:
            helper.add_done_callback(self._helper_ended)
        return helpers

    async def _announce(self) -> None:
        """Say "started", once notifications can reach the worker."""
        config = self.config
        if not config.burst:
            await self.control.wait_for(self.notifier.listening, self.app.connect_timeout)
        # Jobs of a task enqueued to a queue no worker serves wait, silently:
        # say so once, before "started", where whoever starts a worker looks.
        from pgjobs.observe.health import unserved_tasks

        unserved = unserved_tasks(self.app.tasks.values(), config.queues)
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
            ",".join(config.queues),
            config.concurrency,
            f" processes={config.processes}" if config.processes else "",
            " burst" if config.burst else "",
        )
        self._started.set()

    async def _produce_until_stopped(self, producer: asyncio.Task[None]) -> None:
        """Let the producer run until it ends, or until a stop's grace period is over."""
        stopping = asyncio.ensure_future(self.control.stopping.wait())
        try:
            await asyncio.wait({producer, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not producer.done():
            # It sees the stop between statements. One in flight on a dead network
            # would hold the shutdown until TCP gives up (30 s of tcp_user_timeout),
            # so it gets the grace period, as running jobs do.
            left = (self.control.stop_deadline or 0.0) - time.monotonic()
            await asyncio.wait({producer}, timeout=max(0.0, left))
        for _ in range(2):
            if producer.done():
                break
            # The first cancel makes psycopg ask the server to cancel the query (a
            # dead network never answers); a second one makes it close the connection.
            # A claim that committed unseen leaves jobs the rescuer gives back.
            producer.cancel()
            await asyncio.wait({producer}, timeout=0.2)
        if producer.done() and not producer.cancelled():
            producer.result()  # an internal error of the producer stops the worker loudly

    def _helper_ended(self, helper: asyncio.Task[None]) -> None:
        # The helpers loop forever and handle database errors themselves; one
        # that ends on its own hit a bug. Stop the worker loudly rather than
        # run on without, say, a completer.
        if helper.cancelled() or self.control.stopping.is_set():
            return
        exc = helper.exception()
        log.critical("worker %s: %s stopped unexpectedly: %r", self.id, helper.get_name(), exc)
        self.crashed = exc
        self.control.request_stop()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "worker %s got %s: no new jobs; waiting up to %.0f s for %d running",
                self.id,
                sig.name,
                self.config.grace_period,
                len(self.running.attempts),
            )
        else:
            log.warning("worker %s got %s again: handing running jobs back now", self.id, sig.name)
            self._force = True
        self.control.request_stop()

    def _on_listening(self) -> None:
        # Jobs may have arrived while nobody listened: look once.
        self.producer.reconcile_soon()
        self.control.wake.set()

    # -- shutdown ------------------------------------------------------------------

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        control, running = self.control, self.running
        if control.stop_deadline is None:  # a burst that ran dry
            control.stop_deadline = time.monotonic() + self.config.grace_period
        await self._wait_running(control.stop_deadline)
        # Past the grace period, what is left to say to the database (outcomes,
        # hand-back, goodbye) shares one short budget.
        self._final_deadline = time.monotonic() + FINAL_STEP_TIMEOUT
        attempts = list(running.attempts.values())
        left = [(a.job_id, a.row["attempt"]) for a in attempts]
        if self.executor.processes is not None:
            self.executor.processes.stop_replacing()
        running.abandon(attempts, "the worker is stopping; the job goes back to the queue")
        if running.deferrals:
            await asyncio.wait(running.deferrals, timeout=self._final_left())
        await asyncio.gather(*running.tasks(), return_exceptions=True)
        await self.completer.flush(self._final_deadline)
        await self.lease.goodbye(self.app.url, self.app.pooler, left, self._final_deadline)
        for h in helpers:
            h.cancel()
        if helpers:
            await asyncio.wait(helpers, timeout=self._final_left())
        log.info("worker %s stopped after %d jobs", self.id, self.jobs_done)

    async def _wait_running(self, deadline: float) -> None:
        # Up to the grace period, or until a second signal says not to wait.
        while self.running.attempts and not self._force:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.wait(self.running.tasks(), timeout=min(left, 0.1))

    def _final_left(self) -> float:
        return max(0.1, self._final_deadline - time.monotonic())

    async def _close(self, hooks: HookRunner | None, signals: tuple[signal.Signals, ...]) -> None:
        """Release what the run holds: threads, pools, hooks, child processes, signals."""
        self.executor.shutdown()
        await self.busy_pool.close(timeout=self._final_left())
        await self.pool.close(timeout=self._final_left())
        if hooks is not None:
            # Off the loop: an async hook runs on it while the hook thread waits.
            await asyncio.to_thread(hooks.close, max(1.0, self.config.grace_period))
        if self.processes is not None:
            await self.processes.close()
        assert self._loop is not None
        for sig in signals:
            self._loop.remove_signal_handler(sig)


def _limit(app: App, name: str) -> dict[str, Any]:
    """The limits of a limited task, as register_op writes them."""
    task = app.tasks[name]
    return {
        "task": name,
        "max_running": task.concurrency,
        "rate_count": task.rate.count if task.rate else None,
        "rate_period": task.rate.period if task.rate else None,
    }
