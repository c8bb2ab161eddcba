"""The rows of the named statements whose columns the Python code reads by name.

One TypedDict per statement, its keys the statement's result columns in order: a type for
the operations that return them (the driver's rows are plain dicts, so this costs nothing
at run time). ROWS names the statement of each; tests/integration/test_migrations.py
prepares every one of them and fails on a column that one side names and the other does
not.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, TypedDict

# --- the worker (sql/queries/worker.sql)


class Claimed(TypedDict):
    """The first columns every claim returns of a job it claimed (in the statements' order)."""

    id: uuid.UUID
    task: str
    queue: str
    args: Any
    kwargs: Any
    attempt: int
    max_attempts: int


class ClaimJobs(Claimed):
    """A job claim_jobs claimed; `waited`: seconds from due to claimed; `due`: its run_at,
    epoch seconds (with `priority`, where its queue's claim frontier moves)."""

    waited: float
    dedup_key: str | None
    priority: int
    due: float


class ClaimLimited(Claimed):
    """A job of a limited task that claim_limited claimed."""

    started_at: datetime.datetime
    dedup_key: str | None
    meta: Any
    waited: float


class FinishJobs(TypedDict):
    """An outcome finish_jobs applied: the status the job got."""

    id: uuid.UUID
    status: str
    notified: bool


class FinishAndClaim(TypedDict):
    """A row of finish_and_claim: `kind` says whether an outcome was applied ('finished':
    id, status, notified) or a job claimed ('claimed': the claim's columns); the other
    kind's columns are NULL."""

    kind: str
    id: uuid.UUID
    task: str | None
    queue: str | None
    args: Any
    kwargs: Any
    attempt: int | None
    max_attempts: int | None
    dedup_key: str | None
    notified: bool | None
    status: str | None
    waited: float | None
    priority: int | None
    due: float | None


class HandBackJobs(TypedDict):
    """A running job handed back to the queue."""

    id: uuid.UUID
    task: str
    queue: str
    status: str
    attempt: int
    duration: float | None
    notified: bool


class Heartbeat(TypedDict):
    """The worker's row, still there."""

    id: str


class DeferJobs(TypedDict):
    """A claimed job sent back to wait for a worker that knows its task."""

    id: uuid.UUID
    task: str
    queue: str
    attempt: int
    status: str
    duration: float | None


class RunningJobsOfWorker(TypedDict):
    """A job the database says the worker runs."""

    id: uuid.UUID
    attempt: int
    cancel_requested: bool


# --- the leader (sql/queries/maintenance.sql, sql/queries.sql)


class LeaderTryLock(TypedDict):
    """Whether the session took the leader's lock, and its backend."""

    locked: bool
    backend_pid: int


class LeaderTryRound(TypedDict):
    """Whether the transaction took the leader's lock."""

    locked: bool


class LeaderCheck(TypedDict):
    """The leader's connection answers."""

    alive: int


class RescueJobs(TypedDict):
    """A running job of a dead worker, rescued: retried or failed."""

    id: uuid.UUID
    task: str
    queue: str
    attempt: int
    status: str
    worker_id: str | None
    error: Any
    duration: float | None
    notified: bool


class ReleaseDueJobs(TypedDict):
    """A scheduled or retrying job that came due and now waits."""

    id: uuid.UUID
    task: str
    queue: str
    attempt: int
    from_status: str
    status: str
    duration: float | None
    notified: bool


# --- reading (sql/queries.sql)


class GetJob(TypedDict):
    """A row of pgjobs.jobs, every column."""

    id: uuid.UUID
    task: str
    queue: str
    status: str
    priority: int
    args: Any
    kwargs: Any
    attempt: int
    max_attempts: int
    run_at: datetime.datetime
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    result: Any
    error: Any
    progress: Any
    worker_id: str | None
    dedup_key: str | None
    meta: Any
    cancel_requested_at: datetime.datetime | None
    attempt_base: int
    limited: bool
    workflow_id: uuid.UUID | None
    waiting_for: int | None
    input: Any
    on_failure: str | None


class QueueLevels(TypedDict):
    """A queue with waiting jobs: how many, the oldest, and its live workers."""

    queue: str
    depth: int
    pending: int
    oldest_pending_age: float | None
    oldest_pending_id: uuid.UUID | None
    workers: int


#: The statement each TypedDict is the row of.
ROWS: dict[str, type] = {
    "claim_jobs": ClaimJobs,
    "claim_limited": ClaimLimited,
    "finish_jobs": FinishJobs,
    "finish_and_claim": FinishAndClaim,
    "hand_back_jobs": HandBackJobs,
    "heartbeat": Heartbeat,
    "defer_jobs": DeferJobs,
    "running_jobs_of_worker": RunningJobsOfWorker,
    "leader_try_lock": LeaderTryLock,
    "leader_try_round": LeaderTryRound,
    "leader_check": LeaderCheck,
    "rescue_jobs": RescueJobs,
    "release_due_jobs": ReleaseDueJobs,
    "get_job": GetJob,
    "queue_levels": QueueLevels,
}
