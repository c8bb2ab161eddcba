"""Worker: fetcher, executor, completer, heartbeat and listener, on one event loop.

fetcher --claims up to free capacity (SKIP LOCKED)--> executor
   ^  woken by LISTEN/NOTIFY, a freed slot, or the poll         | outcomes
Postgres <-- completer: one statement per batch of outcomes <---+
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
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgjobs.app import App
from pgjobs.errors import ConfigurationError
from pgjobs.queries import sql
from pgjobs.worker.executor import Executor, Outcome

log = logging.getLogger("pgjobs.worker")

CHANNEL = "pgjobs"


class Worker:
    """Runs the jobs of some queues, `concurrency` at a time, until stopped."""

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = 10,
        poll_interval: float = 2.0,
        release_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        grace_period: float = 30.0,
        burst: bool = False,
        max_batch: int = 500,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        if not queues or any(not q for q in queues):
            raise ConfigurationError("a worker needs at least one queue name")
        if poll_interval <= 0:
            raise ConfigurationError(f"poll_interval must be positive, got {poll_interval}")
        self.app = app
        self.queues = list(dict.fromkeys(queues))
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.release_interval = release_interval
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.burst = burst
        self.max_batch = max_batch
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.jobs_done = 0
        self.crashed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
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

    # -- the run -------------------------------------------------------------------

    async def arun(self, *, install_signal_handlers: bool | None = None) -> None:
        """Async twin of run()."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._force = False
        self._wake = asyncio.Event()
        self._listening = asyncio.Event()
        self._backlog = False
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._abandoned: set[uuid.UUID] = set()
        self._outcomes: list[Outcome] = []
        self._outcomes_ready = asyncio.Event()
        self._progress: dict[uuid.UUID, str] = {}
        self._progress_lock = threading.Lock()
        if self._stop_requested.is_set():
            self._stopping.set()

        url = self.app.url
        self.pool = AsyncConnectionPool(
            url,
            min_size=2,
            max_size=4,
            kwargs={"autocommit": True, "row_factory": dict_row},
            timeout=self.app.connect_timeout,
            open=False,
            name=f"pgjobs-worker-{self.id}",
        )
        await self.pool.open(wait=False)
        self.executor = Executor(self.app.tasks, self.concurrency, self._report_progress)

        if install_signal_handlers is None:
            install_signal_handlers = threading.current_thread() is threading.main_thread()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal, sig)

        await self._register()
        helpers = [
            asyncio.create_task(self._complete_loop(), name="completer"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._progress_loop(), name="progress"),
            asyncio.create_task(self._release_loop(), name="release"),
        ]
        if not self.burst:
            helpers.append(asyncio.create_task(self._listen_loop(), name="listener"))
        for helper in helpers:
            helper.add_done_callback(self._helper_ended)
        if not self.burst:
            # Report "started" only once notifications can reach the worker.
            await self._wait_for(self._listening, timeout=self.app.connect_timeout)
        log.info(
            "worker %s started: queues=%s concurrency=%d%s",
            self.id,
            ",".join(self.queues),
            self.concurrency,
            " burst" if self.burst else "",
        )
        self._started.set()
        try:
            await self._fetch_loop()
        finally:
            await self._shutdown(helpers)
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
        if self.crashed is not None:
            raise RuntimeError(f"worker {self.id} stopped on an internal error") from self.crashed

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
                len(self._running),
            )
        else:
            log.warning("worker %s got %s again: handing running jobs back now", self.id, sig.name)
            self._force = True
        self._request_stop()

    # -- fetcher -------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            # A slot is free once its outcome is recorded, not when the function
            # returns: so the database never shows more running jobs than the
            # worker's concurrency (per-task limits count on that).
            free = self.concurrency - len(self._running) - len(self._outcomes)
            claimed = 0
            if free > 0:
                try:
                    if self.burst:
                        await self._release_due()
                    rows = await self._claim(free)
                    failures = 0
                except (psycopg.Error, OSError) as exc:
                    failures += 1
                    delay = min(10.0, 0.25 * 2**failures)
                    log.warning(
                        "worker %s: claim failed (%s); retrying in %.1f s",
                        self.id,
                        _short(exc),
                        delay,
                    )
                    await self._sleep(delay)
                    continue
                for row in rows:
                    self._start(row)
                claimed = len(rows)
                # A full claim means more jobs may be waiting: claim again as
                # soon as a slot frees instead of waiting for a notification.
                self._backlog = claimed == free
            else:
                self._backlog = True
            if self.burst and claimed == 0 and not self._running:
                log.info("worker %s: queues are empty, burst done", self.id)
                return
            if self._backlog and len(self._running) + len(self._outcomes) < self.concurrency:
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
        """Wait for a wake-up (notification, freed slot, stop) or `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _claim(self, limit: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql("claim_jobs"),
                {"queues": self.queues, "limit": min(limit, self.max_batch), "worker_id": self.id},
            )
            return await cur.fetchall()  # type: ignore[return-value]

    def _start(self, row: dict[str, Any]) -> None:
        job_id = row["id"]
        log.debug("job %s %s pending -> running (attempt %d)", job_id, row["task"], row["attempt"])
        self._running[job_id] = asyncio.create_task(self._run_one(row), name=f"job-{job_id}")

    async def _run_one(self, row: dict[str, Any]) -> None:
        job_id = row["id"]
        try:
            outcome = await self.executor.run(row)
        except asyncio.CancelledError:
            return  # handed back at shutdown
        finally:
            self._running.pop(job_id, None)
            if self._stopping.is_set():
                self._wake.set()
        if job_id in self._abandoned:
            return
        with self._progress_lock:
            outcome.progress = self._progress.pop(job_id, None)
        self.jobs_done += 1
        self._outcomes.append(outcome)
        self._outcomes_ready.set()

    # -- completer -----------------------------------------------------------------

    async def _complete_loop(self) -> None:
        failures = 0
        while True:
            await self._outcomes_ready.wait()
            self._outcomes_ready.clear()
            while self._outcomes:
                batch = self._outcomes[: self.max_batch]
                try:
                    await self._finish(batch)
                    failures = 0
                except (psycopg.Error, OSError) as exc:
                    # Keep the outcomes and try again: the jobs stay 'running'
                    # under this worker meanwhile, so nothing is lost.
                    failures += 1
                    delay = min(10.0, 0.25 * 2**failures)
                    log.warning(
                        "worker %s: recording %d outcomes failed (%s); retrying in %.1f s",
                        self.id,
                        len(batch),
                        _short(exc),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                del self._outcomes[: len(batch)]
                if self._backlog or self.burst:
                    self._wake.set()

    async def _finish(self, batch: list[Outcome]) -> None:
        params = {
            "worker_id": self.id,
            "ids": [o.job_id for o in batch],
            "attempts": [o.attempt for o in batch],
            "statuses": [o.status.value for o in batch],
            "outcomes": [o.outcome for o in batch],
            "results": [o.result for o in batch],
            "errors": [o.error for o in batch],
            "progress": [o.progress for o in batch],
            "retry_in": [o.retry_in for o in batch],
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql("finish_jobs"), params)
            applied = {r["id"] for r in await cur.fetchall()}  # type: ignore[call-overload]
        for o in batch:
            if o.job_id not in applied:
                log.warning(
                    "job %s: outcome of attempt %d ignored: this worker no longer holds its lease",
                    o.job_id,
                    o.attempt,
                )

    async def _flush_outcomes(self) -> None:
        deadline = time.monotonic() + max(5.0, self.grace_period)
        while self._outcomes and time.monotonic() < deadline:
            self._outcomes_ready.set()
            await asyncio.sleep(0.01)

    # -- progress, heartbeat, release, listener --------------------------------------

    def _report_progress(self, job_id: uuid.UUID, progress: str) -> None:
        # Called from task threads and the loop alike; the progress loop writes
        # the latest value per job, so a task may report as often as it likes.
        with self._progress_lock:
            self._progress[job_id] = progress

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            with self._progress_lock:
                pending = {k: v for k, v in self._progress.items() if k in self._running}
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
            except (psycopg.Error, OSError) as exc:
                log.warning("worker %s: writing progress failed (%s)", self.id, _short(exc))
                continue
            with self._progress_lock:
                for k, v in pending.items():
                    if self._progress.get(k) == v:
                        del self._progress[k]

    async def _register(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                sql("register_worker"),
                {
                    "worker_id": self.id,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "queues": self.queues,
                    "concurrency": self.concurrency,
                },
            )

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(sql("heartbeat"), {"worker_id": self.id})
                    alive = await cur.fetchone()
                if alive is None:
                    await self._register()
            except (psycopg.Error, OSError) as exc:
                log.warning("worker %s: heartbeat failed (%s)", self.id, _short(exc))

    async def _release_due(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql("release_due_jobs"), {"limit": 1000})
            rows = await cur.fetchall()
        return sum(r["released"] for r in rows)  # type: ignore[call-overload]

    async def _release_loop(self) -> None:
        while True:
            await asyncio.sleep(self.release_interval)
            try:
                await self._release_due()
            except (psycopg.Error, OSError) as exc:
                log.warning("worker %s: releasing due jobs failed (%s)", self.id, _short(exc))

    async def _listen_loop(self) -> None:
        url = self.app.listen_url or self.app.url
        wanted = set(self.queues)
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    url, autocommit=True, connect_timeout=max(1, int(self.app.connect_timeout))
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    self._listening.set()
                    # Jobs may have arrived while nobody listened: look once.
                    self._wake.set()
                    async for note in conn.notifies():
                        if note.payload in wanted:
                            self._wake.set()
            except (psycopg.Error, OSError) as exc:
                failures += 1
                delay = min(10.0, 0.25 * 2**failures)
                log.warning(
                    "worker %s: listener lost its connection (%s); reconnecting in %.1f s",
                    self.id,
                    _short(exc),
                    delay,
                )
                await asyncio.sleep(delay)

    # -- shutdown ------------------------------------------------------------------

    async def _wait_running(self, running: list[asyncio.Task[None]]) -> None:
        # Up to the grace period, or until a second signal says not to wait.
        deadline = time.monotonic() + self.grace_period
        pending = set(running)
        while pending and not self._force:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            _, pending = await asyncio.wait(pending, timeout=min(left, 0.1))

    async def _shutdown(self, helpers: Iterable[asyncio.Task[None]]) -> None:
        running = list(self._running.values())
        if running and not self._force:
            await self._wait_running(running)
        left = list(self._running)
        for job_id in left:
            self._abandoned.add(job_id)
            self._running[job_id].cancel()
        await self._flush_outcomes()
        if left:
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(
                        sql("hand_back_jobs"), {"ids": left, "worker_id": self.id}
                    )
                    back = len(await cur.fetchall())
                log.info("worker %s handed %d running jobs back to the queue", self.id, back)
            except (psycopg.Error, OSError) as exc:
                log.error("worker %s: handing jobs back failed (%s)", self.id, _short(exc))
        try:
            async with self.pool.connection() as conn:
                await conn.execute(sql("unregister_worker"), {"worker_id": self.id})
        except (psycopg.Error, OSError) as exc:
            log.warning("worker %s: unregistering failed (%s)", self.id, _short(exc))
        for h in helpers:
            h.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        self.executor.shutdown()
        await self.pool.close()
        log.info("worker %s stopped after %d jobs", self.id, self.jobs_done)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
