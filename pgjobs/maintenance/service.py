"""Runs the maintenance services on the worker that leads."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs.db import driver as _db
from pgjobs.maintenance import pruner, rescuer, scheduler, upkeep
from pgjobs.maintenance.leader import LOCK_KEY_HIGH, LOCK_KEY_LOW, Leader
from pgjobs.maintenance.periodic import CronEnqueuer
from pgjobs.observe import horizon, pipeline

log = logging.getLogger("pgjobs.maintenance")


class Maintenance:
    """Elects a leader among the workers; the leader releases due jobs, enqueues cron slots,
    rescues lost jobs, prunes old ones, warns of a held xmin horizon (horizon_max_age:
    seconds, else $PGJOBS_HORIZON_MAX_AGE or the App's), and vacuums and analyzes the pgjobs
    tables that autovacuum leaves alone, and reclaims what a released horizon left
    (vacuum=False: never). Its transitions go to `events` (the worker's pipeline; by
    default the App's).

    `url` is where the leader's lock and the upkeep's connection keep their session; None
    behind a transaction pooler with no direct URL (`pooler`): the workers then take
    rounds in turn (see pgjobs.maintenance.leader) and upkeep does not run: VACUUM cannot
    run inside a round's transaction, and outside one nothing would keep two workers'
    rounds from running at once."""

    def __init__(
        self,
        url: str | None,
        pool: AsyncConnectionPool[Any],
        *,
        worker_id: str,
        lease_seconds: float,
        max_lost: int = 3,
        tick: float = 1.0,
        rescue_interval: float | None = None,
        connect_timeout: float = 10.0,
        app: Any = None,
        keep_succeeded: float | None = None,
        keep_failed: float | None = None,
        prune_interval: float = 60.0,
        vacuum: bool = True,
        upkeep_interval: float = upkeep.INTERVAL,
        horizon_max_age: float | None = None,
        pooler: str | None = None,
        events: pipeline.Pipeline | None = None,
    ) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.max_lost = max_lost
        self.tick = tick
        self.rescue_interval = rescue_interval or max(tick, lease_seconds / 4)
        self.leader = Leader(url, connect_timeout, pooler)
        self.cron = CronEnqueuer(app, app.periodics if app is not None else {})
        # The rescuer's and the scheduler's transitions go to the log and the hooks
        # through the worker's own pipeline (`events`): maintenance runs in the
        # worker process, and its hooks on the worker's hook thread and loop.
        self.events = events if events is not None else pipeline.of(app)
        self.keep_succeeded = keep_succeeded
        self.keep_failed = keep_failed
        self.prune_interval = prune_interval
        self._prune_every = prune_interval  # CATCH_UP while the pruner is behind
        if horizon_max_age is None:
            horizon_max_age = getattr(app, "horizon_max_age", None)
        self.horizon = horizon.Watch(horizon.max_age_setting(horizon_max_age))
        self.upkeep = (
            upkeep.Upkeep(url, connect_timeout, upkeep_interval, self.horizon.max_age, pooler)
            if vacuum and url is not None
            else None
        )
        if url is None:
            log.info(
                "worker %s: no direct URL (listen_url) behind a transaction pooler: maintenance "
                "runs in rounds the workers take in turn%s",
                worker_id,
                ", and no worker vacuums the tables where autovacuum is off" if vacuum else "",
            )
        self._last_rescue = self._last_prune = self._last_horizon = 0.0

    @property
    def is_leader(self) -> bool:
        return self.leader.is_leader

    @property
    def leader_pid(self) -> int | None:
        """The backend pid holding the maintenance lock while this worker leads, else None."""
        return self.leader.backend_pid if self.leader.is_leader else None

    async def run(self) -> None:
        """Loop until cancelled: try to lead; while leading, run the services on schedule."""
        unreachable = False
        last_depose = time.monotonic()
        announced: int | None = None
        was_leading = False
        failures = 0
        try:
            while True:
                leading = False
                if not self.leader.per_round:
                    leading = await self.leader.try_lead()
                    if leading != was_leading:
                        was_leading = leading
                        log.info(
                            "worker %s %s",
                            self.worker_id,
                            "leads maintenance" if leading else "does not lead maintenance",
                        )
                try:
                    if self.leader_pid != announced:
                        await self._announce(self.leader_pid)
                        announced = self.leader_pid
                    if self.leader.per_round:
                        # A round is one transaction: its transitions reach the
                        # hooks once it has committed.
                        with pipeline.after_commit():
                            async with self.pool.connection() as conn, conn.transaction():
                                leading = await self.leader.try_round(conn)
                                if leading:
                                    await self._duties(conn)
                    elif leading:
                        async with self.pool.connection() as conn:
                            await self._duties(conn)
                    if not leading:
                        if self.upkeep is not None:
                            await self.upkeep.stop()  # a round under way is the leader's alone
                        if time.monotonic() - last_depose >= self.rescue_interval:
                            last_depose = time.monotonic()
                            await self.depose_stale_leader()
                    failures = 0
                except (psycopg.Error, OSError) as exc:
                    failures += 1
                    unreachable = isinstance(exc, (psycopg.OperationalError, OSError))
                    log.warning("maintenance failed (%s); trying again", exc)
                pause = self.tick
                if failures:
                    # A failing duty is retried at the tick, backing off to a
                    # minute, not in a loop that floods the log and the server.
                    # An unreachable database is tried at the tick, so that due
                    # jobs are released and lost ones rescued as soon as it is back.
                    pause = self.tick if unreachable else min(60.0, self.tick * 2 ** (failures - 1))
                elif leading:
                    # Wake for the next cron slot on time, not up to a tick late.
                    pause = min(pause, self.cron.seconds_until_due())
                await asyncio.sleep(max(pause, 0.01))
        finally:
            if self.upkeep is not None:
                await self.upkeep.stop()
            await self.leader.close()

    async def _duties(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The leader's duties that are due, on `conn`."""
        await scheduler.run_once(conn, events=self.events)
        if self.cron.seconds_until_due() == 0:
            await self.cron.run_once(conn)
        if time.monotonic() - self._last_rescue >= self.rescue_interval:
            self._last_rescue = time.monotonic()
            await rescuer.run_once(
                conn,
                worker_id=self.worker_id,
                lease_seconds=self.lease_seconds,
                max_lost=self.max_lost,
                events=self.events,
            )
        if time.monotonic() - self._last_prune >= self._prune_every:
            self._last_prune = time.monotonic()
            pruned = await pruner.run_once(conn, self.keep_succeeded, self.keep_failed)
            # Stopped by its budget: more is due, and waiting a whole interval would let
            # a busy queue's table grow by what it ends meanwhile.
            behind = pruner.behind(pruned)
            self._prune_every = pruner.CATCH_UP if behind else self.prune_interval
        if time.monotonic() - self._last_horizon >= self.horizon.interval:
            self._last_horizon = time.monotonic()
            look = await self.horizon.run_once(conn)
            if look.released and self.upkeep is not None:
                self.upkeep.reclaim_soon()
        if self.upkeep is not None:
            await self.upkeep.tick(conn, horizon_held=self.horizon.is_held)

    async def _announce(self, leader_pid: int | None) -> None:
        async with self.pool.connection() as conn:
            await _db.arun(announce_op(self.worker_id, leader_pid), conn)

    async def depose_stale_leader(self) -> int:
        """End the lock session of a leader whose heartbeat lapsed; returns how many were ended."""
        async with self.pool.connection() as conn:
            rows = await _db.arun(depose_op(), conn)
        for r in rows:
            log.warning(
                "worker %s: the leader %s missed its lease; ended its lock session",
                self.worker_id,
                r["id"],
            )
        return len(rows)


def announce_op(worker_id: str, leader_pid: int | None) -> _db.Op:
    """Record on the worker's row the backend pid of its leader's lock (None: it does not lead)."""
    yield "set_leader", {"worker_id": worker_id, "leader_pid": leader_pid}, "none"


def depose_op() -> _db.Op:
    """End the lock sessions of leaders whose heartbeat lapsed: the rows of those ended."""
    return (
        yield "depose_stale_leader", {"key_high": LOCK_KEY_HIGH, "key_low": LOCK_KEY_LOW}, "all"
    )
