"""The JSON API, /metrics, /healthz and the dashboard, as one FastAPI router."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.resources import files
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from pgjobs.client.app import App
from pgjobs.client.encoding import MAX_DELAY
from pgjobs.core.errors import (
    IllegalTransition,
    InvalidArguments,
    JobNotFound,
    PayloadTooLarge,
    UnknownTask,
)
from pgjobs.core.jobs import DeadLetter, Job, Status
from pgjobs.core.pages import WorkerInfo
from pgjobs.observe import horizon
from pgjobs.observe.health import QueueLevel, evaluate, levels_op
from pgjobs.observe.horizon import Horizon
from pgjobs.web.availability import DatabaseGate, guarded_route
from pgjobs.web.metrics import JobsCollector
from pgjobs.web.security import Guard

# -- request and response shapes -----------------------------------------------------


class EnqueueRequest(BaseModel):
    """A job to enqueue: a registered task and its arguments."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=255, description="A registered task's name.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    queue: str | None = Field(None, min_length=1, max_length=255)
    priority: int | None = Field(None, ge=-32768, le=32767, description="Higher runs first.")
    delay: float | None = Field(None, ge=0, le=MAX_DELAY, description="Seconds before it may run.")
    dedup_key: str | None = Field(None, min_length=1, max_length=1000)
    dedup_window: float | None = Field(
        None, ge=0, le=MAX_DELAY, description="Seconds the key holds after the job ends."
    )


class JobStatusView(BaseModel):
    """The status-endpoint shape: result only when succeeded, error only when failed."""

    job_id: uuid.UUID
    task: str
    queue: str
    status: Status
    attempts: int
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    result: Any = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    is_terminal: bool


class Enqueued(JobStatusView):
    """What POST /api/jobs answers: the job's status and where to poll it."""

    poll_url: str
    deduplicated: bool


class JobSummary(BaseModel):
    """A row of the job list."""

    id: uuid.UUID
    task: str
    queue: str
    status: Status
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime | None
    run_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    cancel_requested: bool
    progress: dict[str, Any] | None
    error_type: str | None
    workflow_id: uuid.UUID | None
    waiting_for: int | None


class JobPage(BaseModel):
    """One page of jobs, newest first; pass next_cursor as `cursor` for the next."""

    jobs: list[JobSummary]
    next_cursor: str | None


class AttemptView(BaseModel):
    """One attempt: the worker, when, and how it ended."""

    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime
    duration: float
    outcome: str
    error: dict[str, Any] | None


class JobDetail(JobSummary):
    """Everything about one job: arguments, outcome, progress and its attempts."""

    args: list[Any]
    kwargs: dict[str, Any]
    result: Any = None
    error: dict[str, Any] | None
    progress: dict[str, Any] | None
    dedup_key: str | None
    is_terminal: bool
    dead_letter: bool
    attempt_log: list[AttemptView]


class QueueView(BaseModel):
    """A queue now: jobs by status, depth, oldest ready job, thresholds, live workers."""

    queue: str
    counts: dict[str, int]
    depth: int
    oldest_pending_age: float | None
    max_depth: int | None
    max_age: float | None
    workers: int | None = Field(
        description="Live workers serving it; null when it has no jobs waiting."
    )
    unserved: bool = Field(description="It has pending jobs and no live worker serves it.")
    healthy: bool = Field(description="Within its thresholds, and not unserved.")


class HolderView(BaseModel):
    """A session, prepared transaction or replication slot holding the xmin horizon back."""

    kind: Literal["session", "prepared transaction", "replication slot"]
    pid: int | None
    name: str = Field(description="application_name, a prepared transaction's gid, a slot's name.")
    state: str | None
    seconds: float | None = Field(description="How long it has held, where Postgres records it.")
    xmin_age: int = Field(description="How many transactions old its snapshot is.")
    held: bool = Field(description="Past the threshold.")
    description: str


class HorizonView(BaseModel):
    """The xmin horizon: whatever keeps VACUUM from removing pgjobs' dead rows."""

    held: bool = Field(description="Some holder is past the threshold.")
    age_seconds: float
    age_xids: int
    max_age: float = Field(description="The threshold, in seconds (PGJOBS_HORIZON_MAX_AGE).")
    message: str | None = Field(description="One line naming the holder, when held.")
    holders: list[HolderView]


class SeriesPoint(BaseModel):
    """Jobs that ended in one time bucket of one queue."""

    queue: str
    bucket: datetime
    succeeded: int
    failed: int
    cancelled: int


class DeadLetterPage(BaseModel):
    """One page of dead letters, newest first."""

    dead_letters: list[DeadLetter]
    next_cursor: str | None


class PurgeRequest(BaseModel):
    """Which dead letters to forget: ids, or filters, or everything."""

    model_config = ConfigDict(extra="forbid")

    ids: list[uuid.UUID] | None = Field(None, max_length=10_000)
    task: str | None = None
    queue: str | None = None
    everything: bool = False


class ReplayRequest(PurgeRequest):
    """Which dead letters to run again: ids, or filters, or everything."""


class Count(BaseModel):
    """How many rows an action touched, and which."""

    count: int
    ids: list[uuid.UUID] | None = None


class TaskView(BaseModel):
    """A task this API may enqueue: its queue, attempts, limits and schedules."""

    name: str
    queue: str
    priority: int
    max_attempts: int
    is_async: bool
    timeout: float | None
    soft_timeout: float | None
    concurrency: int | None
    rate_limit: str | None
    periodic: list[str]
    doc: str | None


class WorkflowStepView(BaseModel):
    """One job of a workflow: what GET /api/jobs/{id}/detail says of it, but its attempts."""

    job_id: uuid.UUID
    task: str
    queue: str
    status: Status
    attempts: int
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    waiting_for: int | None
    result: Any = None
    error: dict[str, Any] | None
    error_type: str | None
    error_message: str | None
    progress: dict[str, Any] | None
    max_attempts: int
    cancel_requested: bool


class WorkflowView(BaseModel):
    """A chain, group or chord: its shape (with each step's job id), status and steps."""

    id: uuid.UUID
    kind: str
    name: str | None
    created_at: datetime
    status: Literal["running", "succeeded", "failed", "cancelled"]
    is_terminal: bool
    finished_at: datetime | None
    result: Any = None
    canvas: dict[str, Any]
    steps: list[WorkflowStepView]


class WorkflowRow(BaseModel):
    """A row of the workflow list: how far it got."""

    id: uuid.UUID
    kind: str
    name: str | None
    created_at: datetime
    status: Literal["running", "succeeded", "failed", "cancelled"]
    steps: int
    ended: int
    failed: int
    finished_at: datetime | None


class WorkflowPage(BaseModel):
    """Workflows, newest first; pass next_cursor as `cursor` for the next page."""

    workflows: list[WorkflowRow]
    next_cursor: str | None


class WorkflowCancelled(BaseModel):
    """What cancelling a workflow did."""

    cancelled: int  # waiting steps cancelled now
    asked: int  # running steps asked to stop


class EventView(BaseModel):
    """A published event and its subscriber tasks, or a job transition and its hooks."""

    event: str
    kind: Literal["event", "hook"]
    subscribers: list[str]


class Health(BaseModel):
    """Whether the API reaches its database."""

    status: Literal["ok", "unavailable"]
    database: str


class Problem(BaseModel):
    """An error: `detail` is a message, or a list of {loc, msg, type} for bad input."""

    detail: Any


def _doc(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "The body could not be parsed as JSON.",
        401: "A bearer token is needed, or the one given is not valid.",
        403: "A browser sent this write from another origin; or the API has no token and the "
        "request did not come straight from this machine.",
        404: "No such job, dead letter or task.",
        409: "The job is not in a status this action applies to.",
        422: "The request does not fit: `detail` names the field.",
        503: "The database does not answer, or has no pgjobs schema yet.",
    }
    return {code: {"model": Problem, "description": texts[code]} for code in codes}


# -- helpers ---------------------------------------------------------------------------


def status_view(job: Job) -> dict[str, Any]:
    """The seed's status shape for one job."""
    return job.status_view()


def _summary(job: Job) -> dict[str, Any]:
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


def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(404, str(exc))


def _invalid(exc: InvalidArguments, body: EnqueueRequest | None = None) -> HTTPException:
    loc: list[str] = ["body"]
    if exc.field is not None:
        if body is not None and exc.field in body.kwargs:
            loc += ["kwargs", exc.field]
        elif exc.field in EnqueueRequest.model_fields:
            loc.append(exc.field)
        else:
            loc += ["args", exc.field]
    kind = "payload_too_large" if isinstance(exc, PayloadTooLarge) else "invalid_arguments"
    return _unprocessable(loc, str(exc), kind)


def _unprocessable(loc: list[str], msg: str, kind: str = "value_error") -> HTTPException:
    # The shape FastAPI gives its own validation errors, so clients parse one shape.
    return HTTPException(422, [{"loc": loc, "msg": msg, "type": kind}])


Limit = Annotated[int, Query(ge=1, le=1000)]


def router(
    app: App,
    *,
    token: str | None = None,
    protect_reads: bool = False,
    dashboard: bool = True,
    metrics_lag: float = 2.0,
) -> APIRouter:
    """The pgjobs web API for `app`, to mount in a FastAPI application.

    `token`: writes need `Authorization: Bearer <token>` (reads too with
    `protect_reads`); without a token the API answers only direct requests
    from this machine to a loopback name (see pgjobs.web.security).
    While the database is away, or has no pgjobs schema, it answers 503 at
    once (see pgjobs.web.availability).
    """
    gate = DatabaseGate(app)
    api = APIRouter(
        route_class=guarded_route(Guard(token, protect_reads), gate),
        responses=_doc(401, 403, 503),
    )
    # The page holds no data and a probe sends no token: with a token both stay open.
    public = Guard(token, public=True)
    front = APIRouter(route_class=guarded_route(public))

    def unhealthy(exc: Exception) -> JSONResponse:
        # With protected reads, an anonymous probe learns nothing about the database.
        why = "unreachable" if protect_reads else (str(exc).splitlines() or ["error"])[0]
        return JSONResponse({"status": "unavailable", "database": why}, status_code=503)

    health = APIRouter(route_class=guarded_route(public, gate, unhealthy))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(app, lag=metrics_lag))

    @api.post(
        "/api/jobs",
        status_code=202,
        response_model=Enqueued,
        tags=["jobs"],
        responses=_doc(400, 404, 422),
    )
    async def enqueue(body: EnqueueRequest, request: Request, response: Response) -> Any:
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
            raise _not_found(exc) from None
        except InvalidArguments as exc:
            raise _invalid(exc, body) from None
        poll = str(request.url_for("job_status", job_id=str(job.id)).path)
        response.headers["Location"] = poll
        return {**status_view(job), "poll_url": poll, "deduplicated": job.deduplicated}

    @api.get("/api/jobs/{job_id}", response_model=JobStatusView, tags=["jobs"], responses=_doc(404))
    async def job_status(job_id: uuid.UUID) -> Any:
        """A job's status: poll it until is_terminal."""
        try:
            return status_view(await app.aget_job(job_id))
        except JobNotFound as exc:
            raise _not_found(exc) from None

    @api.get(
        "/api/jobs/{job_id}/detail", response_model=JobDetail, tags=["jobs"], responses=_doc(404)
    )
    async def job_detail(job_id: uuid.UUID) -> Any:
        """Everything about a job: arguments, result, error with traceback, attempts."""
        try:
            job = await app.aget_job(job_id)
            attempts = await app.aattempts(job_id)
        except JobNotFound as exc:
            raise _not_found(exc) from None
        dead = False
        if job.status is Status.FAILED:
            try:
                await app.aget_dead_letter(job_id)
                dead = True
            except JobNotFound:
                dead = False
        return {
            **_summary(job),
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

    @api.get("/api/jobs", response_model=JobPage, tags=["jobs"])
    async def list_jobs(
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
            raise _unprocessable(["query", exc.field or "query"], str(exc)) from None
        return {"jobs": [_summary(j) for j in page.jobs], "next_cursor": page.next_cursor}

    @api.post(
        "/api/jobs/{job_id}/cancel",
        response_model=JobStatusView,
        tags=["jobs"],
        responses=_doc(404, 409),
    )
    async def cancel(job_id: uuid.UUID) -> Any:
        """Cancel a job: a waiting one now, a running one once its worker stops it."""
        try:
            job = await app.acancel(job_id)
        except JobNotFound as exc:
            raise _not_found(exc) from None
        if job.is_terminal and job.status is not Status.CANCELLED:
            raise HTTPException(409, f"job {job_id} already {job.status.value}: nothing to cancel")
        return status_view(job)

    @api.post(
        "/api/jobs/{job_id}/replay",
        response_model=JobStatusView,
        tags=["jobs"],
        responses=_doc(404, 409),
    )
    async def replay(job_id: uuid.UUID) -> Any:
        """Run a failed or cancelled job again (it leaves the dead letters)."""
        try:
            job = await app.aget_job(job_id)
            if job.task not in app.tasks:
                raise HTTPException(
                    409, f"task {job.task!r} is not registered with this API: it will not replay it"
                )
            return status_view(await app.areplay(job_id))
        except JobNotFound as exc:
            raise _not_found(exc) from None
        except IllegalTransition as exc:
            raise HTTPException(409, str(exc)) from None

    @api.get("/api/workflows", response_model=WorkflowPage, tags=["workflows"])
    async def list_workflows(limit: Limit = 50, cursor: uuid.UUID | None = None) -> Any:
        """Workflows, newest first, with their status and how many steps ended."""
        rows, next_cursor = await app.aworkflows(limit=limit, cursor=cursor)
        return {"workflows": [r.__dict__ for r in rows], "next_cursor": next_cursor}

    @api.get(
        "/api/workflows/{workflow_id}",
        response_model=WorkflowView,
        tags=["workflows"],
        responses=_doc(404),
    )
    async def workflow(workflow_id: uuid.UUID) -> Any:
        """A workflow: its shape, status, result once it succeeded, and each step."""
        try:
            info = await app.aget_workflow(workflow_id)
        except JobNotFound as exc:
            raise _not_found(exc) from None
        return {
            "id": info.id,
            "kind": info.kind,
            "name": info.name,
            "created_at": info.created_at,
            "status": info.status,
            "is_terminal": info.is_terminal,
            "finished_at": info.finished_at,
            "result": info.result() if info.status == "succeeded" else None,
            "canvas": info.canvas,
            "steps": [
                {
                    **s.model_dump(),
                    "job_id": s.id,
                    "error_type": (s.error or {}).get("type"),
                    "error_message": (s.error or {}).get("message"),
                }
                for s in info.steps
            ],
        }

    @api.post(
        "/api/workflows/{workflow_id}/cancel",
        response_model=WorkflowCancelled,
        tags=["workflows"],
        responses=_doc(404),
    )
    async def cancel_workflow(workflow_id: uuid.UUID) -> Any:
        """Cancel every step that has not ended; running ones are asked to stop."""
        try:
            cancelled, asked = await app.acancel_workflow(workflow_id)
        except JobNotFound as exc:
            raise _not_found(exc) from None
        return {"cancelled": cancelled, "asked": asked}

    @api.get("/api/events", response_model=list[EventView], tags=["workflows"])
    async def events() -> Any:
        """Published events and their subscriber tasks; "job.*" rows list transition hooks."""
        out = [
            {"event": name, "kind": "event", "subscribers": [t.name for t in tasks]}
            for name, tasks in sorted(app.subscribers.items())
        ]
        out += [
            {
                "event": name,
                "kind": "hook",
                "subscribers": [getattr(h, "__qualname__", repr(h)) for h in hooks],
            }
            for name, hooks in sorted(app.hooks.items())
        ]
        return out

    @api.get("/api/queues", response_model=list[QueueView], tags=["queues"])
    async def queues() -> Any:
        """Every queue: jobs by status, depth, age of the oldest ready job, thresholds, and
        whether a live worker serves it."""
        stats = await app.aqueues()
        served: dict[str, QueueLevel] = await app.database.arun(levels_op())
        levels = {
            q.queue: QueueLevel(q.queue, q.depth, q.counts.get("pending", 0), q.oldest_pending_age)
            for q in stats
        }
        health = evaluate(levels, app.thresholds)
        over = {b.queue for b in health.breaches}
        out = []
        for q in stats:
            limit = health.thresholds.get(q.queue)
            level = served.get(q.queue)
            unserved = level is not None and level.unserved
            out.append(
                {
                    "queue": q.queue,
                    "counts": q.counts,
                    "depth": q.depth,
                    "oldest_pending_age": q.oldest_pending_age,
                    "max_depth": limit.max_depth if limit else None,
                    "max_age": limit.max_age if limit else None,
                    "workers": None if level is None else level.workers,
                    "unserved": unserved,
                    "healthy": q.queue not in over and not unserved,
                }
            )
        return out

    @api.get("/api/tasks", response_model=list[TaskView], tags=["queues"])
    async def tasks() -> Any:
        """The tasks registered with this API's App: what POST /api/jobs accepts."""
        schedules: dict[str, list[str]] = {}
        for p in app.periodics.values():
            schedules.setdefault(p.task.name, []).append(
                f"{p.schedule.expression} ({p.schedule.timezone})"
            )
        return [
            {
                "name": t.name,
                "queue": t.defaults.queue,
                "priority": t.defaults.priority,
                "max_attempts": t.defaults.max_attempts,
                "is_async": t.is_async,
                "timeout": t.timeout,
                "soft_timeout": t.soft_timeout,
                "concurrency": t.concurrency,
                "rate_limit": t.rate_limit,
                "periodic": schedules.get(t.name, []),
                "doc": (t.__doc__ or "").strip().splitlines()[0] if t.__doc__ else None,
            }
            for t in sorted(app.tasks.values(), key=lambda t: t.name)
        ]

    @api.get("/api/stats/finished", response_model=list[SeriesPoint], tags=["queues"])
    async def finished(
        window: Annotated[int, Query(ge=60, le=7 * 86400)] = 3600,
        step: Annotated[int, Query(ge=1, le=86400)] = 60,
    ) -> Any:
        """Jobs that ended per queue and time bucket: the throughput charts."""
        if step > window:
            raise _unprocessable(["query", "step"], "step exceeds window")
        return await app.afinished_series(window, step)

    @api.get("/api/workers", response_model=list[WorkerInfo], tags=["workers"])
    async def workers() -> Any:
        """Registered workers, their heartbeat age and how many jobs each runs."""
        return await app.aworkers()

    @api.get("/api/horizon", response_model=HorizonView, tags=["health"])
    async def xmin_horizon() -> Any:
        """Who holds the xmin horizon back, and whether for longer than the threshold."""
        now: Horizon = await app.database.arun(horizon.read_op(app.horizon_max_age))
        held = {h.key for h in now.held}
        return {
            "held": now.is_held,
            "age_seconds": now.age,
            "age_xids": now.xmin_age,
            "max_age": now.max_age,
            "message": now.summary() if now.is_held else None,
            "holders": [
                {**h.__dict__, "held": h.key in held, "description": h.describe()}
                for h in now.holders
            ],
        }

    @api.get("/api/dead-letters", response_model=DeadLetterPage, tags=["dead letters"])
    async def dead_letters(
        task: str | None = None,
        queue: str | None = None,
        limit: Limit = 50,
        cursor: uuid.UUID | None = None,
    ) -> Any:
        """Jobs that failed for good, newest first."""
        try:
            rows = await app.adead_letters(task=task, queue=queue, limit=limit, cursor=cursor)
        except InvalidArguments as exc:
            raise _unprocessable(["query", exc.field or "query"], str(exc)) from None
        return {"dead_letters": list(rows), "next_cursor": rows.next_cursor}

    @api.post(
        "/api/dead-letters/replay",
        response_model=Count,
        tags=["dead letters"],
        responses=_doc(400, 404, 409, 422),
    )
    async def replay_dead_letters(body: ReplayRequest) -> Any:
        """Replay dead letters: these ids (all or none), or those matching the filters."""
        try:
            if body.ids is not None:
                jobs = await app.areplay_many(body.ids)
                return {"count": len(jobs), "ids": [j.id for j in jobs]}
            ids = await app.areplay_dead_letters(
                task=body.task, queue=body.queue, everything=body.everything
            )
        except JobNotFound as exc:
            raise _not_found(exc) from None
        except IllegalTransition as exc:
            raise HTTPException(409, str(exc)) from None
        except InvalidArguments as exc:
            raise _unprocessable(["body", *([exc.field] if exc.field else [])], str(exc)) from None
        return {"count": len(ids), "ids": ids}

    @api.post(
        "/api/dead-letters/purge",
        response_model=Count,
        tags=["dead letters"],
        responses=_doc(400, 422),
    )
    async def purge_dead_letters(body: PurgeRequest) -> Any:
        """Forget dead letters for good (the jobs stay failed, with their history)."""
        try:
            n = await app.apurge_dead_letters(
                body.ids, task=body.task, queue=body.queue, everything=body.everything
            )
        except InvalidArguments as exc:
            raise _unprocessable(["body", *([exc.field] if exc.field else [])], str(exc)) from None
        return {"count": n}

    @health.get("/healthz", response_model=Health, tags=["health"], responses=_doc(503))
    async def healthz() -> Any:
        """200 when the database answers, 503 when it does not; needs no token."""
        try:
            await app.acheck_schema()
        except Exception as exc:
            return unhealthy(exc)
        return {"status": "ok", "database": "ok"}

    @api.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics: depth, oldest ready job, jobs ended, run and wait times, workers."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if dashboard:
        page = files("pgjobs.web").joinpath("static/index.html").read_text(encoding="utf-8")

        @front.get("/", response_class=HTMLResponse, include_in_schema=False)
        def index() -> HTMLResponse:
            """The dashboard: one page, no build step, talks to the API above."""
            return HTMLResponse(
                page,
                headers={
                    "Content-Security-Policy": (
                        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                        "frame-ancestors 'none'"
                    ),
                    "X-Frame-Options": "DENY",
                    "Referrer-Policy": "no-referrer",
                },
            )

    whole = APIRouter()
    whole.include_router(api)
    whole.include_router(front)
    whole.include_router(health)
    return whole


def create_app(app: App, **options: Any) -> FastAPI:
    """A FastAPI application serving router(app, **options) at /."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # The async pool belongs to this server's event loop: close it with the loop.
        await app.aclose()

    web = FastAPI(
        lifespan=lifespan,
        title="pgjobs",
        version=_version(),
        description="Enqueue jobs, follow them, and act on queues and dead letters.",
    )
    web.include_router(router(app, **options))
    return web


def _version() -> str:
    from importlib.metadata import version

    return version("pgjobs")
