"""Workflows: chain, group and chord, stored as jobs and the edges between them.

A workflow is compiled here into jobs and edges and inserted in one
transaction (the caller's, with conn=). From then on the database runs it: a
job that waits for others is `blocked`; when they end, a trigger releases it
with their results in front of its arguments (sql/schema/0005_workflows.sql).
No worker holds workflow state, so a crash can lose no step and no callback.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pgjobs.client.encoding import NewJob, Options, Target, prepare
from pgjobs.client.host import Host
from pgjobs.core.errors import InvalidArguments, JobCancelled, JobFailed, JobNotFound, WaitTimeout
from pgjobs.core.jobs import TERMINAL, Job, JobSource, Status, new_job_id
from pgjobs.db import driver
from pgjobs.observe import pipeline


class StepTask(Target, Protocol):
    """What a workflow step needs of its task (pgjobs.client.tasks.Task has it)."""

    @property
    def defaults(self) -> Options: ...


class Canvas:
    """Something a workflow is made of: a step, a chain, a group or a chord."""

    def enqueue(self, *, conn: Any = None, name: str | None = None) -> Workflow:
        """Insert the whole workflow in one transaction (conn=: the caller's) and return it."""
        app, plan = self._plan(name)
        app.database.run(insert_plan_op(plan), conn, atomic=True)
        return Workflow(plan.id, app)

    async def aenqueue(self, *, conn: Any = None, name: str | None = None) -> Workflow:
        """Async twin of enqueue()."""
        app, plan = self._plan(name)
        await app.database.arun(insert_plan_op(plan), conn, atomic=True)
        return Workflow(plan.id, app)

    def _plan(self, name: str | None) -> tuple[Host, _Plan]:
        app = self._app()
        plan = _Plan(new_job_id(), self._kind(), name)
        _, _, plan.canvas = self._compile(plan, [], None, "cancel")
        return app, plan

    def _kind(self) -> str:
        return "chain"

    def _app(self) -> Host:
        raise NotImplementedError

    def _compile(
        self, plan: _Plan, after: list[uuid.UUID], given: Any, on_failure: str
    ) -> tuple[list[uuid.UUID], Any, dict[str, Any]]:
        """Add this part's jobs; return its last jobs, how its result is made, and its shape."""
        raise NotImplementedError


@dataclass(frozen=True)
class Call(Canvas):
    """One step: a task and its own arguments. Made by task.s(...) or task.options(...).s(...).

    In a workflow, a step after others gets their result as its first argument.
    """

    task: StepTask
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: Options | None = None

    def _kind(self) -> str:
        return "chain"

    def _app(self) -> Host:
        return self.task.app

    def _compile(
        self, plan: _Plan, after: list[uuid.UUID], given: Any, on_failure: str
    ) -> tuple[list[uuid.UUID], Any, dict[str, Any]]:
        opts = self.options or self.task.defaults
        if opts.dedup_key is not None:
            raise InvalidArguments(
                f"task {self.task.name!r}: a workflow step cannot have a dedup key",
                field="dedup_key",
            )
        if after and (opts.delay is not None or opts.run_at is not None):
            raise InvalidArguments(
                f"task {self.task.name!r}: only the first steps of a workflow can be delayed; "
                "a later step starts when the steps before it end",
                field="delay",
            )
        new = prepare(
            self.task.app,
            self.task.name,
            self.task.signature,
            self.args,
            self.kwargs,
            opts,
            self.task.limited,
            after_input=bool(after),
        )
        if after:
            new.status = Status.BLOCKED.value
        plan.jobs.append(_Step(new, after, given, on_failure))
        out = {"job": str(new.id)}
        return [new.id], out, {"task": self.task.name, "job_id": str(new.id)}


def _parts(kind: str, items: tuple[Any, ...]) -> tuple[Canvas, ...]:
    if len(items) == 1 and isinstance(items[0], (list, tuple)):
        items = tuple(items[0])
    if not items:
        raise InvalidArguments(f"a {kind} needs at least one step")
    for item in items:
        if not isinstance(item, Canvas):
            raise InvalidArguments(
                f"a {kind} is made of task.s(...) steps, chains, groups and chords, "
                f"not {type(item).__name__}"
            )
    return items


class chain(Canvas):
    """Steps one after the other: each gets the previous one's result as its first argument.

    A step that fails for good stops the chain: the steps after it end `cancelled`.
    """

    def __init__(self, *steps: Canvas) -> None:
        self.steps = _parts("chain", steps)

    def _app(self) -> Host:
        return self.steps[0]._app()

    def _compile(
        self, plan: _Plan, after: list[uuid.UUID], given: Any, on_failure: str
    ) -> tuple[list[uuid.UUID], Any, dict[str, Any]]:
        shapes = []
        for i, step in enumerate(self.steps):
            after, given, shape = step._compile(
                plan, after, given, on_failure if i == 0 else "cancel"
            )
            shapes.append(shape)
        return after, given, {"chain": shapes}


class group(Canvas):
    """Members that run in parallel; the group's result is the list of theirs, in order."""

    def __init__(self, *members: Canvas) -> None:
        self.members = _parts("group", members)

    def _kind(self) -> str:
        return "group"

    def _app(self) -> Host:
        return self.members[0]._app()

    def _compile(
        self, plan: _Plan, after: list[uuid.UUID], given: Any, on_failure: str
    ) -> tuple[list[uuid.UUID], Any, dict[str, Any]]:
        last: list[uuid.UUID] = []
        outs, shapes = [], []
        for member in self.members:
            tails, out, shape = member._compile(plan, after, given, on_failure)
            last += tails
            outs.append(out)
            shapes.append(shape)
        return last, {"list": outs}, {"group": shapes}


class chord(Canvas):
    """A group, then a callback that runs once with the list of the members' results.

    A member that fails for good fails the chord (the callback ends
    `cancelled`), unless allow_failures=True: then the callback runs once
    every member has ended, and a failed member's place in the list holds
    {"failed": {"job_id", "status", "type", "message"}}.
    """

    def __init__(
        self, header: group | list[Canvas] | tuple[Canvas, ...], callback: Canvas,
        *, allow_failures: bool = False,
    ) -> None:  # fmt: skip
        self.header = header if isinstance(header, group) else group(*header)
        self.callback = _parts("chord", (callback,))[0]
        self.allow_failures = allow_failures

    def _kind(self) -> str:
        return "chord"

    def _app(self) -> Host:
        return self.header._app()

    def _compile(
        self, plan: _Plan, after: list[uuid.UUID], given: Any, on_failure: str
    ) -> tuple[list[uuid.UUID], Any, dict[str, Any]]:
        tails, out, header = self.header._compile(plan, after, given, on_failure)
        policy = "pass" if self.allow_failures else "cancel"
        last, result, callback = self.callback._compile(plan, tails, out, policy)
        body: dict[str, Any] = {"header": header, "callback": callback}
        if self.allow_failures:
            body["allow_failures"] = True
        return last, result, {"chord": body}


@dataclass
class _Step:
    new: NewJob
    after: list[uuid.UUID]
    given: Any  # how its input is made, None for a first step
    on_failure: str


@dataclass
class _Plan:
    id: uuid.UUID
    kind: str
    name: str | None
    jobs: list[_Step] = field(default_factory=list)
    canvas: dict[str, Any] = field(default_factory=dict)


def insert_plan_op(plan: _Plan) -> driver.Op:
    yield (
        "insert_workflow",
        {"id": plan.id, "kind": plan.kind, "name": plan.name, "canvas": json.dumps(plan.canvas)},
        "one",
    )
    steps = plan.jobs
    yield (
        "enqueue_workflow_jobs",
        {
            "workflow_id": plan.id,
            "ids": [s.new.id for s in steps],
            "tasks": [s.new.task for s in steps],
            "queues": [s.new.queue for s in steps],
            "statuses": [s.new.status for s in steps],
            "priorities": [s.new.priority for s in steps],
            "args": [s.new.args_json for s in steps],
            "kwargs": [s.new.kwargs_json for s in steps],
            "max_attempts": [s.new.max_attempts for s in steps],
            "run_ats": [s.new.run_at for s in steps],
            "limited": [s.new.limited for s in steps],
            "waiting_for": [len(s.after) if s.after else None for s in steps],
            "inputs": [json.dumps(s.given) if s.after else None for s in steps],
            "on_failure": [s.on_failure if s.after else None for s in steps],
        },
        "none",
    )
    edges = [(before, s.new.id) for s in steps for before in s.after]
    if edges:
        yield (
            "insert_job_deps",
            {"depends_on": [e[0] for e in edges], "job_ids": [e[1] for e in edges]},
            "none",
        )
    return plan.id


class WorkflowStep(Job):
    """One step of a workflow: its job as it is now, a Job with every field and call of one
    (status, result, error, attempts, started_at, finished_at, refresh(), wait(), ...)."""

    @property
    def job_id(self) -> uuid.UUID:
        """The step's job id: the same as `id`."""
        return self.id


@dataclass(frozen=True)
class WorkflowInfo:
    """A workflow: its shape, its status, and each step's job."""

    id: uuid.UUID
    kind: str
    name: str | None
    created_at: datetime
    status: str  # running, succeeded, failed, cancelled
    canvas: dict[str, Any]
    steps: list[WorkflowStep]
    finished_at: datetime | None = None  # when its last step ended, once none can run

    @property
    def is_terminal(self) -> bool:
        """True once no step can run any more."""
        return self.status != "running"

    def result(self) -> Any:
        """The workflow's result: the last step's (chain), the list (group), the callback's."""
        by_id = {str(s.job_id): s for s in self.steps}
        return _result_of(self.canvas, by_id)


def _result_of(shape: dict[str, Any], by_id: dict[str, WorkflowStep]) -> Any:
    if "job_id" in shape:
        step = by_id.get(shape["job_id"])  # None: pruned by retention
        return None if step is None else step.result
    if "chain" in shape:
        return _result_of(shape["chain"][-1], by_id)
    if "group" in shape:
        return [_result_of(s, by_id) for s in shape["group"]]
    return _result_of(shape["chord"]["callback"], by_id)


def _last_jobs(shape: dict[str, Any]) -> list[str]:
    if "job_id" in shape:
        return [shape["job_id"]]
    if "chain" in shape:
        return _last_jobs(shape["chain"][-1])
    if "group" in shape:
        return [j for s in shape["group"] for j in _last_jobs(s)]
    return _last_jobs(shape["chord"]["callback"])


def _all_jobs(shape: dict[str, Any]) -> list[str]:
    if "job_id" in shape:
        return [shape["job_id"]]
    if "chord" in shape:
        body = shape["chord"]
        return _all_jobs(body["header"]) + _all_jobs(body["callback"])
    kind = "chain" if "chain" in shape else "group"
    return [j for s in shape[kind] for j in _all_jobs(s)]


def _allowed_failures(shape: dict[str, Any]) -> set[str]:
    """The steps whose failure the workflow lets pass: those of a chord's header with
    allow_failures, whose callback runs whatever they do."""
    if "job_id" in shape:
        return set()
    if "chord" in shape:
        body = shape["chord"]
        header = set(_all_jobs(body["header"]) if body.get("allow_failures") else ())
        return header | _allowed_failures(body["header"]) | _allowed_failures(body["callback"])
    kind = "chain" if "chain" in shape else "group"
    return {j for s in shape[kind] for j in _allowed_failures(s)}


def _status(shape: dict[str, Any], statuses: Mapping[str, Status]) -> str:
    """running, succeeded (its last steps did), failed (a step did) or cancelled."""
    if any(s not in TERMINAL for s in statuses.values()):
        return "running"
    # A step missing from `statuses` was pruned by retention, which takes only
    # ended jobs (and succeeded ones first): count it as succeeded.
    if all(statuses.get(j, Status.SUCCEEDED) is Status.SUCCEEDED for j in _last_jobs(shape)):
        return "succeeded"
    # A failure an allow_failures chord let pass did not stop the workflow:
    # whatever did (its callback failing, a cancellation) is what it ended with.
    allowed = _allowed_failures(shape)
    if any(s is Status.FAILED for j, s in statuses.items() if j not in allowed):
        return "failed"
    return "cancelled"


def get_workflow_op(workflow_id: uuid.UUID, app: JobSource | None = None) -> driver.Op:
    """The workflow with that id and its steps (Jobs bound to `app`); raises JobNotFound."""
    row = yield "get_workflow", {"id": workflow_id}, "one"
    if row is None:
        raise JobNotFound(f"no workflow with id {workflow_id}")
    rows = yield "workflow_jobs", {"id": workflow_id}, "all"
    steps = [WorkflowStep.from_row(r, app) for r in rows]
    status = _status(row["canvas"], {str(s.id): s.status for s in steps})
    return WorkflowInfo(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        created_at=row["created_at"],
        status=status,
        finished_at=None
        if status == "running"
        else max((s.finished_at for s in steps if s.finished_at), default=None),
        canvas=row["canvas"],
        steps=steps,
    )


@dataclass(frozen=True)
class WorkflowSummary:
    """A row of app.workflows(): a workflow and how far it got."""

    id: uuid.UUID
    kind: str
    name: str | None
    created_at: datetime
    status: str
    steps: int
    ended: int
    failed: int
    finished_at: datetime | None  # when its last step ended, once none can run


def list_workflows_op(limit: int, cursor: uuid.UUID | None) -> driver.Op:
    """Workflows, newest first, and the cursor of the next page."""
    if not 1 <= limit <= 1000:
        raise InvalidArguments(f"limit must be between 1 and 1000, got {limit}", field="limit")
    rows = yield "list_workflows", {"limit": limit, "cursor": cursor}, "all"
    out = []
    for r in rows[:limit]:
        statuses = {k: Status(v) for k, v in (r["statuses"] or {}).items()}
        status = _status(r["canvas"], statuses)
        out.append(
            WorkflowSummary(
                id=r["id"],
                kind=r["kind"],
                name=r["name"],
                created_at=r["created_at"],
                status=status,
                steps=len(statuses),
                ended=sum(s in TERMINAL for s in statuses.values()),
                failed=sum(s is Status.FAILED for s in statuses.values()),
                finished_at=None if status == "running" else r["finished_at"],
            )
        )
    return out, (str(out[-1].id) if len(rows) > limit else None)


#: What cancel_workflow ends at once: every status a job waits in.
WAITING = [s.value for s in (Status.BLOCKED, Status.SCHEDULED, Status.PENDING, Status.RETRYING)]


def cancel_workflow_op(workflow_id: uuid.UUID) -> driver.Op:
    """Cancel a workflow's waiting jobs and ask its running ones to stop; (cancelled, asked).

    Run it in one transaction inside pipeline.after_commit(): the steps it
    cancels reach the log and the hooks as an administrator's transitions once
    they have committed (a running step's end is its worker's to report).
    """
    row = yield "get_workflow", {"id": workflow_id}, "one"
    if row is None:
        raise JobNotFound(f"no workflow with id {workflow_id}")
    rows = yield "cancel_workflow", {"id": workflow_id, "from_statuses": WAITING}, "all"
    asked = yield "request_cancel_workflow", {"id": workflow_id}, "one"
    pipeline.admin(rows, reason="its workflow was cancelled")
    return len(rows), int(asked["asked"])


class Workflow:
    """A workflow that was enqueued: its id, and ways to follow it."""

    def __init__(self, workflow_id: uuid.UUID, app: Host) -> None:
        self.id = workflow_id
        self._app = app

    def __repr__(self) -> str:
        return f"<Workflow {self.id}>"

    def get(self) -> WorkflowInfo:
        """The workflow as it is now."""
        return self._app.database.run(get_workflow_op(self.id, self._app))  # type: ignore[no-any-return]

    async def aget(self) -> WorkflowInfo:
        """Async twin of get()."""
        op = get_workflow_op(self.id, self._app)
        return await self._app.database.arun(op)  # type: ignore[no-any-return]

    def cancel(self) -> tuple[int, int]:
        """Cancel every step that has not ended; returns (cancelled now, asked to stop)."""
        with pipeline.after_commit(pipeline.of(self._app)):
            return self._app.database.run(cancel_workflow_op(self.id), atomic=True)  # type: ignore[no-any-return]

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the workflow ends; its result, or JobFailed / JobCancelled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            info = self.get()
            if info.is_terminal:
                return _outcome(info)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"workflow {self.id} is still running after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def await_result(self, timeout: float | None = None) -> Any:
        """Async twin of wait()."""
        import asyncio

        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            info = await self.aget()
            if info.is_terminal:
                return _outcome(info)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"workflow {self.id} is still running after {timeout} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


def _outcome(info: WorkflowInfo) -> Any:
    if info.status == "succeeded":
        return info.result()
    # The step that ended the workflow, not a chord member whose failure its
    # allow_failures callback took in (that callback's own failure is the one).
    allowed = _allowed_failures(info.canvas)
    own = [s for s in info.steps if str(s.id) not in allowed]
    failed = [s for s in own if s.status is Status.FAILED]
    if failed:
        raise JobFailed(failed[0].id, failed[0].error)
    cancelled = next(s for s in [*own, *info.steps] if s.status is Status.CANCELLED)
    raise JobCancelled(cancelled.id, cancelled.error)
