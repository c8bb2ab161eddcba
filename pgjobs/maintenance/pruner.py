"""The pruner: ended jobs leave the database once their retention has passed."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg

from pgjobs.db import driver as _db

log = logging.getLogger("pgjobs.maintenance")

#: Rows per DELETE at first: small enough that no statement holds many locks or runs
#: long, large enough that a big backlog drains in few round trips.
BATCH = 1000
#: Each full batch doubles the next, up to this: on a busy worker every batch waits its
#: turn on the event loop (tens of milliseconds when it runs hundreds of jobs a second),
#: and a thousand rows a turn would fall behind the jobs its workers end.
MAX_BATCH = 16_000
#: A run stops after this many seconds of batches and leaves the rest to the next run. After
#: a run that deleted a batch or more, the leader starts the next within CATCH_UP seconds
#: instead of its prune interval: its other duties (releasing due jobs, rescuing) wait while
#: it prunes, and workers ending 15,000 jobs a second need as many pruned a second to keep
#: their table's size.
BUDGET = 1.0
#: Seconds to the next run after one that its budget stopped: the leader's next round of
#: duties, after the rest of this one.
CATCH_UP = 0.1
#: Expired dedup keys deleted per run, at most.
KEYS_BATCH = 50_000


def prune_op(keep_succeeded: float | None, keep_failed: float | None, batch: int) -> _db.Op:
    """One batch of ended jobs past their retention deleted: how many."""
    params = {"keep_succeeded": keep_succeeded, "keep_failed": keep_failed, "batch": batch}
    row = yield "prune_jobs", params, "one"
    return int(row["pruned"]) if row else 0


def prune_keys_op(batch: int) -> _db.Op:
    """Up to `batch` expired dedup keys deleted."""
    yield "prune_dedup_keys", {"batch": batch}, "none"


async def run_once(
    conn: psycopg.AsyncConnection[Any],
    keep_succeeded: float | None,
    keep_failed: float | None,
    batch: int = BATCH,
) -> int:
    """Delete succeeded jobs older than keep_succeeded and failed or cancelled ones older
    than keep_failed (None: keep them), with their attempts, keys and dead letters, a batch
    at a time until one comes back short or BUDGET seconds have passed.

    Returns how many jobs were deleted (see behind()). Each batch that comes back full
    doubles the next, up to MAX_BATCH.
    """
    if keep_succeeded is None and keep_failed is None:
        return 0
    total = 0
    deadline = time.monotonic() + BUDGET
    size = batch
    while True:
        pruned: int = await _db.arun(prune_op(keep_succeeded, keep_failed, size), conn)
        total += pruned
        if pruned < size or time.monotonic() >= deadline:
            break
        size = min(2 * size, max(batch, MAX_BATCH))
        await asyncio.sleep(0)  # let the worker's other duties in between batches
    await _db.arun(prune_keys_op(KEYS_BATCH), conn)
    if total:
        log.info("pruned %d ended jobs past their retention", total)
    return total


def behind(pruned: int, batch: int = BATCH) -> bool:
    """Whether a run that deleted `pruned` jobs says the next should come soon: it deleted a
    batch or more, so its budget may have ended it, or jobs end faster than a batch an
    interval, and waiting the interval would let the table grow by what ends meanwhile."""
    return pruned >= batch
