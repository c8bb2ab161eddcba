"""/api/jobs: enqueue a job of a registered task, follow it, list, cancel and replay jobs."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import HTTPException, Request, Response

from pgjobs.core.errors import (
    IllegalTransition,
    InvalidArguments,
    JobNotFound,
    PayloadTooLarge,
    UnknownTask,
)
from pgjobs.core.jobs import Job, Status
from pgjobs.web.context import CurrentApp
from pgjobs.web.routing import Routes, not_found, unprocessable
from pgjobs.web.schemas import (
    Enqueued,
    EnqueueRequest,
    JobDetail,
    JobPage,
    JobStatusView,
    Limit,
    documented,
)

routes = Routes()


@routes.post(
    "/api/jobs",
    status_code=202,
    response_model=Enqueued,
    tags=["jobs"],
    responses=documented(400, 404, 422),
)
async def enqueue(
    body: EnqueueRequest, request: Request, response: Response, app: CurrentApp
) -> Any:
    """Enqueue a job of a registered task; answers at once with its id and poll URL."""
    try:
        job = await app.aenqueue(
            body.task,
            body.args,
            body.kwargs,
            queue=body.queue,
            priority=body.priority,
            delay=body.delay,
            dedup_key=body.dedup_key,
            dedup_window=body.dedup_window,
        )
    except UnknownTask as exc:
        raise not_found(exc) from None
    except InvalidArguments as exc:
        raise _invalid(exc, body) from None
    # The status endpoint beside this one (POST .../api/jobs -> GET .../api/jobs/{id}),
    # under whatever prefix this router is mounted at: url_for() would name the first
    # route of that name in the host application, another router's if it mounts two.
    poll = f"{request.url.path.rstrip('/')}/{job.id}"
    response.headers["Location"] = poll
    return {**job.status_view(), "poll_url": poll, "deduplicated": job.deduplicated}


def _invalid(exc: InvalidArguments, body: EnqueueRequest) -> HTTPException:
    # Where the task's checks found the fault: a keyword, an option, or a positional argument.
    loc: list[str] = ["body"]
    if exc.field is not None:
        if exc.field in body.kwargs:
            loc += ["kwargs", exc.field]
        elif exc.field in EnqueueRequest.model_fields:
            loc.append(exc.field)
        else:
            loc += ["args", exc.field]
    kind = "payload_too_large" if isinstance(exc, PayloadTooLarge) else "invalid_arguments"
    return unprocessable(loc, str(exc), kind)


@routes.get(
    "/api/jobs/{job_id}", response_model=JobStatusView, tags=["jobs"], responses=documented(404)
)
async def job_status(job_id: uuid.UUID, app: CurrentApp) -> Any:
    """A job's status: poll it until is_terminal."""
    try:
        return (await app.aget_job(job_id)).status_view()
    except JobNotFound as exc:
        raise not_found(exc) from None


@routes.get(
    "/api/jobs/{job_id}/detail", response_model=JobDetail, tags=["jobs"], responses=documented(404)
)
async def job_detail(job_id: uuid.UUID, app: CurrentApp) -> Any:
    """Everything about a job: arguments, result, error with traceback, attempts."""
    try:
        job = await app.aget_job(job_id)
        attempts = await app.aattempts(job_id)
    except JobNotFound as exc:
        raise not_found(exc) from None
    dead = False
    if job.status is Status.FAILED:
        try:
            await app.aget_dead_letter(job_id)
            dead = True
        except JobNotFound:
            dead = False
    return {
        **summary(job),
        "args": job.args,
        "kwargs": job.kwargs,
        "result": job.result,
        "error": job.error,
        "progress": job.progress,
        "dedup_key": job.dedup_key,
        "is_terminal": job.is_terminal,
        "dead_letter": dead,
        "attempt_log": [
            {**a.__dict__, "duration": (a.finished_at - a.started_at).total_seconds()}
            for a in attempts
        ],
    }


@routes.get("/api/jobs", response_model=JobPage, tags=["jobs"])
async def list_jobs(
    app: CurrentApp,
    status: Status | None = None,
    queue: str | None = None,
    task: str | None = None,
    limit: Limit = 50,
    cursor: uuid.UUID | None = None,
) -> Any:
    """Jobs, newest first, filtered by status, queue and task; cursor pagination."""
    try:
        page = await app.ajobs(
            status=status,
            queue=queue,
            task=task,
            limit=limit,
            cursor=None if cursor is None else str(cursor),
        )
    except InvalidArguments as exc:
        raise unprocessable(["query", exc.field or "query"], str(exc)) from None
    return {"jobs": [summary(j) for j in page.jobs], "next_cursor": page.next_cursor}


@routes.post(
    "/api/jobs/{job_id}/cancel",
    response_model=JobStatusView,
    tags=["jobs"],
    responses=documented(404, 409),
)
async def cancel(job_id: uuid.UUID, app: CurrentApp) -> Any:
    """Cancel a job: a waiting one now, a running one once its worker stops it."""
    try:
        job = await app.acancel(job_id)
    except JobNotFound as exc:
        raise not_found(exc) from None
    if job.is_terminal and job.status is not Status.CANCELLED:
        raise HTTPException(409, f"job {job_id} already {job.status.value}: nothing to cancel")
    return job.status_view()


@routes.post(
    "/api/jobs/{job_id}/replay",
    response_model=JobStatusView,
    tags=["jobs"],
    responses=documented(404, 409),
)
async def replay(job_id: uuid.UUID, app: CurrentApp) -> Any:
    """Run a failed or cancelled job again (it leaves the dead letters)."""
    try:
        job = await app.aget_job(job_id)
        if job.task not in app.tasks:
            raise HTTPException(
                409, f"task {job.task!r} is not registered with this API: it will not replay it"
            )
        return (await app.areplay(job_id)).status_view()
    except JobNotFound as exc:
        raise not_found(exc) from None
    except IllegalTransition as exc:
        raise HTTPException(409, str(exc)) from None


def summary(job: Job) -> dict[str, Any]:
    """A job as a row of the job list (JobSummary)."""
    return {
        "id": job.id,
        "task": job.task,
        "queue": job.queue,
        "status": job.status,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "created_at": job.created_at,
        "run_at": job.run_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "worker_id": job.worker_id,
        "cancel_requested": job.cancel_requested,
        "progress": job.progress,
        "error_type": (job.error or {}).get("type"),
        "workflow_id": job.workflow_id,
        "waiting_for": job.waiting_for,
    }
