"""The pruner: ended jobs leave the database once their retention has passed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from pgjobs.db import driver as _db

log = logging.getLogger("pgjobs.maintenance")

#: Rows per DELETE: small enough that no statement holds many locks or runs
#: long, large enough that a big backlog drains in few round trips.
BATCH = 1000
#: A run stops after this many batches and leaves the rest to the next run.
MAX_BATCHES = 50


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
    than keep_failed (None: keep them), with their attempts, keys and dead letters.

    Returns how many jobs were deleted.
    """
    if keep_succeeded is None and keep_failed is None:
        return 0
    total = 0
    for _ in range(MAX_BATCHES):
        pruned = await _db.arun(prune_op(keep_succeeded, keep_failed, batch), conn)
        total += pruned
        if pruned < batch:
            break
        await asyncio.sleep(0)  # let the worker's other duties in between batches
    await _db.arun(prune_keys_op(batch * MAX_BATCHES), conn)
    if total:
        log.info("pruned %d ended jobs past their retention", total)
    return total
