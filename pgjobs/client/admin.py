"""The App's calls on jobs that are there: read, list, cancel, dead letters, replay, purge.

Each is an operation (pgjobs.db.driver.Op), written once for sync and async; the App
runs it on its pools.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pgjobs.core.errors import IllegalTransition, InvalidArguments, JobNotFound
from pgjobs.core.jobs import DeadLetter, Job, JobSource, Status, can_transition, sources
from pgjobs.core.pages import Attempt, DeadLetterPage, Page, QueueStats, WorkerInfo
from pgjobs.db import driver
from pgjobs.observe import pipeline


def as_id(job_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(str(job_id))
    except ValueError:
        raise JobNotFound(f"{job_id!r} is not a job id (a UUID)") from None


def get_op(app: JobSource, job_id: uuid.UUID) -> driver.Op:
    row = yield "get_job", {"id": job_id}, "one"
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    return Job.from_row(row, app)


def status_op(job_id: uuid.UUID) -> driver.Op:
    row = yield "get_job_status", {"id": job_id}, "one"
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    return row["status"], row["result"], row["error"]


def list_op(
    app: JobSource,
    status: Status | str | None,
    queue: str | None,
    task: str | None,
    limit: int,
    cursor: str | None,
) -> driver.Op:
    if status is not None:
        try:
            status = Status(status).value
        except ValueError:
            names = ", ".join(s.value for s in Status)
            raise InvalidArguments(f"unknown status {status!r} (one of: {names})") from None
    if not 1 <= limit <= 1000:
        raise InvalidArguments(f"limit must be between 1 and 1000, got {limit}")
    _plain_text(queue=queue, task=task)
    cursor_id = None
    if cursor:
        try:
            cursor_id = uuid.UUID(cursor)
        except ValueError:
            raise InvalidArguments(f"invalid cursor {cursor!r}") from None
    rows = yield (
        "list_jobs",
        {
            "status": status,
            "queue": queue,
            "task": task,
            "cursor": cursor_id,
            "limit": limit,
        },
        "all",
    )
    jobs = [Job.from_row(r, app) for r in rows[:limit]]
    next_cursor = str(jobs[-1].id) if len(rows) > limit else None
    return Page(jobs=jobs, next_cursor=next_cursor)


def queues_op() -> driver.Op:
    rows = yield "queue_stats", {}, "all"
    stats: dict[str, QueueStats] = {}
    for r in rows:
        q = stats.setdefault(r["queue"], QueueStats(r["queue"], {}, None))
        q.counts[r["status"]] = r["jobs"]
        if r["oldest_age"] is not None:
            stats[r["queue"]] = QueueStats(q.queue, q.counts, float(r["oldest_age"]))
    return list(stats.values())


def schema_op() -> driver.Op:
    row = yield "schema_version", {}, "one"
    if not row["migrated"]:
        raise driver.SchemaMissing("the database has no pgjobs schema: run `pgjobs migrate`")


def task_summary_op(ids: Sequence[uuid.UUID]) -> driver.Op:
    """Per-task counts and timings for a set of jobs (the demo's summary table)."""
    rows = yield "task_summary", {"ids": list(ids)}, "all"
    return rows


def attempts_op(job_id: uuid.UUID) -> driver.Op:
    job = yield "get_job_status", {"id": job_id}, "one"
    if job is None:
        raise JobNotFound(f"no job with id {job_id}")
    rows = yield "job_attempts", {"id": job_id}, "all"
    return [Attempt(**r) for r in rows]


def workers_op() -> driver.Op:
    rows = yield "list_workers", {}, "all"
    return [
        WorkerInfo(**{**r, "queues": list(r["queues"]), "heartbeat_age": float(r["heartbeat_age"])})
        for r in rows
    ]


def series_op(window: float, step: float) -> driver.Op:
    if not 1 <= step <= window <= 31 * 86400:
        raise InvalidArguments(
            f"need 1 <= step <= window <= 31 days, got step {step} s, window {window} s"
        )
    rows = yield "finished_series", {"window": window, "step": step}, "all"
    return [dict(r) for r in rows]


def cancel_op(app: JobSource, job_id: uuid.UUID) -> driver.Op:
    # A job that waits ends here; a running one is its worker's to stop, so
    # it is only asked to (the worker hears of it by NOTIFY, or by its poll).
    waiting = [s for s in sources(Status.CANCELLED) if s != Status.RUNNING]
    row = yield "cancel_job", {"id": job_id, "from_statuses": waiting}, "one"
    if row is not None:
        pipeline.of(app).rows([row], by=pipeline.ADMIN)  # committed: autocommit
        return Job.from_row(row, app)
    asked = yield "request_cancel", {"id": job_id}, "one"
    if asked is not None:
        return Job.from_row(asked, app)
    # Neither waiting nor running: it has ended (or just has).
    current = yield "get_job", {"id": job_id}, "one"
    if current is None:
        raise JobNotFound(f"no job with id {job_id}")
    return Job.from_row(current, app)


#: The statuses a job is replayed from: it failed for good or was cancelled.
_REPLAYABLE = [Status.FAILED.value, Status.CANCELLED.value]
assert all(can_transition(s, Status.PENDING) for s in _REPLAYABLE)


def _plain_text(**values: str | None) -> None:
    # Postgres text cannot hold NUL: say which filter has one instead of a DataError.
    for name, value in values.items():
        if value is not None and "\x00" in value:
            raise InvalidArguments(f"{name} must not contain a NUL character", field=name)


def _filters(
    task: str | None, queue: str | None, since: datetime | None, before: datetime | None
) -> dict[str, Any]:
    _plain_text(task=task, queue=queue)
    for label, moment in (("since", since), ("before", before)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidArguments(f"{label} must be timezone-aware (e.g. datetime.now(UTC))")
    return {"task": task, "queue": queue, "since": since, "before": before}


def dead_letters_op(
    task: str | None,
    queue: str | None,
    since: datetime | None,
    before: datetime | None,
    limit: int,
    cursor: uuid.UUID | str | None,
) -> driver.Op:
    if not 1 <= limit <= 1000:
        raise InvalidArguments(f"limit must be between 1 and 1000, got {limit}")
    params = _filters(task, queue, since, before)
    params.update(limit=limit, cursor=None if cursor is None else as_id(cursor))
    rows = yield "list_dead_letters", params, "all"
    # The query reads one row more than the page: whether another page follows.
    page = DeadLetterPage(DeadLetter.from_row(r) for r in rows[:limit])
    page.next_cursor = str(page[-1].job_id) if len(rows) > limit else None
    return page


def dead_letter_op(job_id: uuid.UUID) -> driver.Op:
    row = yield "get_dead_letter", {"id": job_id}, "one"
    if row is None:
        raise JobNotFound(f"no dead letter for job {job_id}")
    return DeadLetter.from_row(row)


def replay_op(app: JobSource, job_ids: list[uuid.UUID]) -> driver.Op:
    params = _filters(None, None, None, None)
    params.update(ids=job_ids, from_statuses=_REPLAYABLE)
    rows = yield "replay_jobs", params, "all"
    replayed = {r["id"] for r in rows}
    jobs = []
    for job_id in job_ids:
        row = yield "get_job", {"id": job_id}, "one"
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        job = Job.from_row(row, app)
        if job_id not in replayed:
            # Raised inside the transaction: none of the others is replayed either.
            raise IllegalTransition(
                f"job {job_id} is {job.status.value}: only failed or cancelled jobs can be replayed"
            )
        jobs.append(job)
    # Reported only now: until here an IllegalTransition would undo every replay.
    pipeline.admin(rows, reason="replayed")
    return jobs


def _require_scope(
    what: str, filters: dict[str, Any], everything: bool, ids: object = None
) -> None:
    if ids is None and not everything and all(v is None for v in filters.values()):
        raise InvalidArguments(
            f"{what} needs a filter (task, queue, since, before) or everything=True"
        )


def bulk_replay_op(
    task: str | None,
    queue: str | None,
    since: datetime | None,
    before: datetime | None,
    everything: bool,
) -> driver.Op:
    params = _filters(task, queue, since, before)
    _require_scope("replaying dead letters", params, everything)
    params.update(ids=None, from_statuses=_REPLAYABLE)
    rows = yield "replay_jobs", params, "all"
    pipeline.admin(rows, reason="replayed")
    return [r["id"] for r in rows]


def purge_op(
    job_ids: Sequence[uuid.UUID | str] | None,
    task: str | None,
    queue: str | None,
    since: datetime | None,
    before: datetime | None,
    everything: bool,
) -> driver.Op:
    params = _filters(task, queue, since, before)
    _require_scope("purging dead letters", params, everything, job_ids)
    params["ids"] = None if job_ids is None else [as_id(i) for i in job_ids]
    rows = yield "purge_dead_letters", params, "all"
    return len(rows)
