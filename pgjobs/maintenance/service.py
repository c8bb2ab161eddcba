"""Runs the maintenance services on the worker that leads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs.maintenance import rescuer, scheduler
from pgjobs.maintenance.leader import Leader

log = logging.getLogger("pgjobs.maintenance")


class Maintenance:
    """Elects a leader among the workers; the leader releases due jobs and rescues lost ones."""

    def __init__(
        self,
        url: str,
        pool: AsyncConnectionPool[Any],
        *,
        worker_id: str,
        lease_seconds: float,
        tick: float = 1.0,
        rescue_interval: float | None = None,
        connect_timeout: float = 10.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.tick = tick
        self.rescue_interval = rescue_interval or max(tick, lease_seconds / 4)
        self.leader = Leader(url, connect_timeout)
        self.on_change = on_change

    @property
    def is_leader(self) -> bool:
        return self.leader.is_leader

    async def run(self) -> None:
        """Loop until cancelled: try to lead; while leading, run the services on schedule."""
        last_rescue = 0.0
        was_leader = False
        try:
            while True:
                leading = await self.leader.try_lead()
                if leading != was_leader:
                    was_leader = leading
                    log.info(
                        "worker %s %s",
                        self.worker_id,
                        "leads maintenance" if leading else "no longer leads",
                    )
                    if self.on_change is not None:
                        self.on_change(leading)
                if leading:
                    try:
                        async with self.pool.connection() as conn:
                            await scheduler.run_once(conn)
                            if time.monotonic() - last_rescue >= self.rescue_interval:
                                last_rescue = time.monotonic()
                                await rescuer.run_once(conn, self.lease_seconds)
                    except (psycopg.Error, OSError) as exc:
                        log.warning("maintenance failed (%s); trying again", exc)
                await asyncio.sleep(self.tick)
        finally:
            await self.leader.close()
