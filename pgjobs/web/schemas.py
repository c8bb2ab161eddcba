"""The web API's request and response shapes: the models its OpenAPI schema names."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from pgjobs.client.encoding import MAX_DELAY
from pgjobs.core.jobs import DeadLetter, Status


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


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` entry that documents these error statuses of an operation."""
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


#: A page size: the `limit` query parameter of every list.
Limit = Annotated[int, Query(ge=1, le=1000)]
