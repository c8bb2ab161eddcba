"""The worker's operations on the database: its named statements (sql/queries/worker.sql).

Each is an Op (pgjobs.db.driver): the steps to run, driven by `_db.arun` on a connection of
the worker's own or `_db.arun_pooled` on one of its pools, where the connection's kept
cursor saves finding out again how to send each parameter. Two statements of the busy
path are sent by hand, for round trips: finish_and_claim, prepared once per connection,
and finish_jobs in a pipeline with a claim (finish_pipelined).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg

from pgjobs.db import driver as _db
from pgjobs.db import rows
from pgjobs.db.driver import Op, Returns
from pgjobs.db.queries import sql

#: (job id, attempt): one run of a job, as the fenced statements name it.
Run = tuple[uuid.UUID, int]
#: A job claimed, of a limited task or not.
Claimed = rows.ClaimLimited | rows.ClaimJobs


def session_settings_op() -> Op:
    """Set up a worker connection (see the statement for why)."""
    yield ("session_settings", {}, "none")


def generic_plan_op() -> Op:
    """Set up a connection that runs finish_and_claim alone, on one plan for every batch."""
    yield ("generic_plan", {}, "none")


def register_op(
    worker_id: str,
    pid: int,
    queues: Sequence[str],
    concurrency: int,
    lease_seconds: float,
    limits: Sequence[Mapping[str, Any]],
) -> Op:
    """Write the limits of the App's limited tasks, then the worker's row (again, if gone)."""
    for limit in limits:
        yield ("set_task_limit", dict(limit), "none")
    yield (
        "register_worker",
        {
            "worker_id": worker_id,
            "hostname": socket.gethostname(),
            "pid": pid,
            "queues": list(queues),
            "concurrency": concurrency,
            "lease_seconds": lease_seconds,
        },
        "none",
    )


def heartbeat_op(
    worker_id: str, leader_pid: int | None, stuck_threads: int
) -> Returns[rows.Heartbeat | None]:
    """Renew the lease; None if the worker's row is gone (the rescuer took it for dead)."""
    row: rows.Heartbeat | None = yield (
        "heartbeat",
        {"worker_id": worker_id, "leader_pid": leader_pid, "stuck_threads": stuck_threads},
        "one",
    )
    return row


def unregister_op(worker_id: str) -> Op:
    yield ("unregister_worker", {"worker_id": worker_id}, "none")


def running_jobs_op(worker_id: str) -> Returns[list[rows.RunningJobsOfWorker]]:
    """The jobs the database says this worker runs: id, attempt, cancel_requested."""
    found: list[rows.RunningJobsOfWorker] = yield (
        "running_jobs_of_worker",
        {"worker_id": worker_id},
        "all",
    )
    return found


def hand_back_op(
    worker_id: str, runs: Sequence[Run], outcome: str
) -> Returns[list[rows.HandBackJobs]]:
    """Give running jobs back to the queue; the rows of those that went back."""
    back: list[rows.HandBackJobs] = yield (
        "hand_back_jobs",
        {
            "ids": [r[0] for r in runs],
            "attempts": [r[1] for r in runs],
            "worker_id": worker_id,
            "outcome": outcome,
        },
        "all",
    )
    return back


def defer_op(
    worker_id: str, claimed: Sequence[Mapping[str, Any]], give_up_after: float
) -> Returns[list[rows.DeferJobs]]:
    """Send claimed jobs of tasks this worker does not know back to wait for one that does."""
    back: list[rows.DeferJobs] = yield (
        "defer_jobs",
        {
            "ids": [r["id"] for r in claimed],
            "attempts": [r["attempt"] for r in claimed],
            "worker_id": worker_id,
            "give_up_after": give_up_after,
            "message": "no worker that claimed the job knows its task",
        },
        "all",
    )
    return back


def set_progress_op(worker_id: str, progress: Mapping[uuid.UUID, str]) -> Op:
    yield (
        "set_progress",
        {"worker_id": worker_id, "ids": list(progress), "progress": list(progress.values())},
        "none",
    )


def claim_op(
    worker_id: str,
    limited_tasks: Sequence[str],
    queues: Sequence[str],
    limit: int,
    claim_params: Callable[[int], dict[str, Any]],
) -> Returns[tuple[list[Claimed], list[rows.ClaimJobs]]]:
    """Claim up to `limit` jobs: of limited tasks first, each within its limit, then the rest.

    `claim_params(n)` gives claim_jobs' parameters for `n` jobs. Returns the rows
    claimed and how many of them claim_jobs claimed (the weighted order counts them).
    """
    limited: list[rows.ClaimLimited] = []
    if limited_tasks:
        limited = yield (
            "claim_limited",
            {"tasks": limited_tasks, "queues": queues, "worker_id": worker_id, "limit": limit},
            "all",
        )
    main: list[rows.ClaimJobs] = []
    if len(limited) < limit:
        main = yield ("claim_jobs", claim_params(limit - len(limited)), "all")
    return [*limited, *main], main


def finish_op(params: dict[str, Any]) -> Returns[list[rows.FinishJobs]]:
    """Record a batch of outcomes: the status each applied one got, by job id."""
    finished: list[rows.FinishJobs] = yield ("finish_jobs", params, "all")
    return finished


async def finish_pipelined(
    conn: _db.AsyncPoolConnection, params: dict[str, Any], claim: Op
) -> tuple[list[rows.FinishJobs], Any]:
    """Record a batch of outcomes and run `claim` in the same pipeline: the rows finish_jobs
    returned and what `claim` did.

    finish_jobs is sent without waiting for its reply, so that the claim's first
    statement goes with it; the driver would wait for each statement in turn.
    """
    async with conn.pipeline(), conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        await cur.execute(sql("finish_jobs"), params)
        claimed = await _db.arun_pooled(claim, conn)
        # Dict rows, of the columns rows.FinishJobs names (tests check them): the type
        # alone, without a call for it.
        finished: list[rows.FinishJobs] = await cur.fetchall()  # type: ignore[assignment]
    return finished, claimed


async def finish_and_claim(
    conn: _db.AsyncPoolConnection, params: dict[str, Any]
) -> list[rows.FinishAndClaim]:
    """Record a batch of outcomes and claim the next jobs: one statement, one round trip."""
    # On the connection's kept cursor: a new one per batch would find out
    # again how to dump each parameter, half of what dumping a batch costs.
    cur = conn.ops_cursor()
    # Prepared at once: its plan is reused for every batch (generic_plan_op). Not
    # on a connection that prepares nothing (behind a transaction pooler).
    prepare = None if conn.prepare_threshold is None else True
    await cur.execute(sql("finish_and_claim"), params, prepare=prepare)
    # Dict rows, of the columns rows.FinishAndClaim names: the type alone, without a call.
    return await cur.fetchall()  # type: ignore[return-value]


async def session_settings(conn: psycopg.AsyncConnection[Any]) -> None:
    """Pool `configure`: set up a connection of the worker's pool."""
    await _db.arun(session_settings_op(), conn)


async def reuse_plans(conn: psycopg.AsyncConnection[Any]) -> None:
    """Pool `configure`: set up a connection of the busy pool (finish_and_claim alone)."""
    await _db.arun(generic_plan_op(), conn)
