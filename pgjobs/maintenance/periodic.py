"""The cron enqueuer: one job per slot of each periodic task, decided in the database."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgjobs.client.tasks import Periodic
from pgjobs.db import driver

log = logging.getLogger("pgjobs.maintenance")


class CronEnqueuer:
    """Enqueues the due slots of an App's periodic tasks; run by the leader."""

    def __init__(self, app: Any, periodics: Mapping[str, Periodic]) -> None:
        self.app = app
        self.periodics = dict(periodics)
        self._next_due = 0.0  # time.monotonic() of the earliest next slot

    def seconds_until_due(self) -> float:
        """How long until some slot is due (0 if one may be due now)."""
        return max(0.0, self._next_due - time.monotonic())

    async def run_once(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Enqueue the jobs of every slot that is due; returns how many were enqueued."""
        if not self.periodics:
            self._next_due = float("inf")
            return 0
        state = await driver.arun(_read_op(self.periodics), conn)
        now: datetime = state["now"]
        enqueued = 0
        next_slot: datetime | None = None
        for p in self.periodics.values():
            last = state["last"][p.name]
            latest = p.schedule.latest_at_or_before(now)
            if latest is not None and latest > last:
                if p.catch_up == "all":
                    # Every missed slot gets its job, oldest first, a bounded
                    # number per run; the next run goes on from there.
                    chosen = p.schedule.slots_between(last, now, limit=p.max_catch_up)
                else:
                    chosen = [latest]  # missed slots are folded into this one
                async with conn.transaction():
                    made: int = await driver.arun(_advance_op(self.app, p, last, chosen), conn)
                if made:
                    enqueued += made
                    log.info(
                        "periodic %s: enqueued %d job(s), last for slot %s",
                        p.name,
                        made,
                        chosen[-1].isoformat(),
                    )
                    if chosen[-1] < latest:
                        self._next_due = 0.0
                        return enqueued  # more to catch up: run again at once
            following = p.schedule.next_after(now)
            next_slot = following if next_slot is None else min(next_slot, following)
        if next_slot is not None:
            wait = (next_slot - now).total_seconds()
            self._next_due = time.monotonic() + max(0.0, wait)
        return enqueued


def _read_op(periodics: Mapping[str, Periodic]) -> driver.Op:
    clock = yield "db_now", {}, "one"
    now: datetime = clock["now"]
    last: dict[str, datetime] = {}
    rows = yield "get_periodic", {"names": list(periodics)}, "all"
    for r in rows:
        last[r["name"]] = r["last_slot"]
    for p in periodics.values():
        if p.name in last:
            continue
        # First sight: slots start now, not at some past slot.
        since = p.schedule.latest_at_or_before(now) or now - timedelta(seconds=1)
        row = yield (
            "ensure_periodic",
            {
                "name": p.name,
                "schedule": p.schedule.expression,
                "timezone": p.schedule.timezone,
                "since": since,
            },
            "one",
        )
        if row is None:  # another worker made it first
            again = yield "get_periodic", {"names": [p.name]}, "all"
            last[p.name] = again[0]["last_slot"]
        else:
            last[p.name] = row["last_slot"]
    return {"now": now, "last": last}


def _advance_op(app: Any, p: Periodic, expected: datetime, chosen: list[datetime]) -> driver.Op:
    from pgjobs.client.enqueue import insert_op

    jobs = [p.job_for(s) for s in chosen]
    row = yield (
        "advance_periodic",
        {"name": p.name, "expected": expected, "slot": chosen[-1], "job_id": jobs[-1].id},
        "one",
    )
    if row is None:
        return 0  # another worker moved this periodic on: its slots are taken
    yield from insert_op(app, jobs)
    return len(jobs)
