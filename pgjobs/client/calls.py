"""The App's calls on the jobs that are there: read, list, cancel, dead letters, workflows.

Each is a thin delegation: an operation of pgjobs.client.admin or .workflows, run on the
App's Database. The App inherits them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pgjobs.client import admin
from pgjobs.client.admin import as_id
from pgjobs.client.workflows import (
    WorkflowInfo,
    WorkflowSummary,
    cancel_workflow_op,
    get_workflow_op,
    list_workflows_op,
)
from pgjobs.core.jobs import DeadLetter, Job, Status
from pgjobs.core.pages import Attempt, DeadLetterPage, Page, QueueStats, WorkerInfo
from pgjobs.db.connections import Database
from pgjobs.observe import pipeline


class JobCalls:
    """get_job(), jobs(), cancel(), dead_letters(), replay(), workflows() and their twins."""

    #: The pools the calls run on (the App's).
    database: Database

    def get_job(self, job_id: uuid.UUID | str) -> Job:
        """The job with that id, as it is now.

        Raises JobNotFound (a LookupError) when no job has that id: it never
        existed, or retention has pruned it since it ended; and when `job_id`
        is not a UUID at all.
        """
        return self.database.run(admin.get_op(self, as_id(job_id)))  # type: ignore[no-any-return]

    async def aget_job(self, job_id: uuid.UUID | str) -> Job:
        """Async twin of get_job(): raises JobNotFound the same way."""
        return await self.database.arun(admin.get_op(self, as_id(job_id)))  # type: ignore[no-any-return]

    def job_status(self, job_id: uuid.UUID) -> tuple[str, Any, Any]:
        """A job's status, result and error, as they are now (what Job.wait() polls)."""
        return self.database.run(admin.status_op(job_id))  # type: ignore[no-any-return]

    async def ajob_status(self, job_id: uuid.UUID) -> tuple[str, Any, Any]:
        """Async twin of job_status()."""
        return await self.database.arun(admin.status_op(job_id))  # type: ignore[no-any-return]

    def jobs(
        self,
        *,
        status: Status | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Jobs, newest first, filtered; pass the page's next_cursor to get the next page."""
        return self.database.run(admin.list_op(self, status, queue, task, limit, cursor))  # type: ignore[no-any-return]

    async def ajobs(
        self,
        *,
        status: Status | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Async twin of jobs()."""
        return await self.database.arun(admin.list_op(self, status, queue, task, limit, cursor))  # type: ignore[no-any-return]

    def queues(self) -> list[QueueStats]:
        """Every queue with its depth by status and the age of its oldest ready job."""
        return self.database.run(admin.queues_op())  # type: ignore[no-any-return]

    async def aqueues(self) -> list[QueueStats]:
        """Async twin of queues()."""
        return await self.database.arun(admin.queues_op())  # type: ignore[no-any-return]

    def attempts(self, job_id: uuid.UUID | str) -> list[Attempt]:
        """A job's attempts in order: who ran each, when, and how it ended."""
        return self.database.run(admin.attempts_op(as_id(job_id)))  # type: ignore[no-any-return]

    async def aattempts(self, job_id: uuid.UUID | str) -> list[Attempt]:
        """Async twin of attempts()."""
        return await self.database.arun(admin.attempts_op(as_id(job_id)))  # type: ignore[no-any-return]

    def workers(self) -> list[WorkerInfo]:
        """The workers registered now, with their heartbeat age and running jobs."""
        return self.database.run(admin.workers_op())  # type: ignore[no-any-return]

    async def aworkers(self) -> list[WorkerInfo]:
        """Async twin of workers()."""
        return await self.database.arun(admin.workers_op())  # type: ignore[no-any-return]

    def finished_series(self, window: float = 3600, step: float = 60) -> list[dict[str, Any]]:
        """Jobs ended per queue and bucket of `step` seconds over the last `window` seconds."""
        return self.database.run(admin.series_op(window, step))  # type: ignore[no-any-return]

    async def afinished_series(
        self, window: float = 3600, step: float = 60
    ) -> list[dict[str, Any]]:
        """Async twin of finished_series()."""
        return await self.database.arun(admin.series_op(window, step))  # type: ignore[no-any-return]

    def cancel(self, job_id: uuid.UUID | str) -> Job:
        """Cancel a job: a waiting one ends `cancelled` now, a running one once its worker stops it.

        Returns the job as it is now; for a running job `cancel_requested` is
        True until its worker has stopped it, wherever that worker runs.
        """
        return self.database.run(admin.cancel_op(self, as_id(job_id)))  # type: ignore[no-any-return]

    async def acancel(self, job_id: uuid.UUID | str) -> Job:
        """Async twin of cancel()."""
        return await self.database.arun(admin.cancel_op(self, as_id(job_id)))  # type: ignore[no-any-return]

    # -- dead letters and replay -----------------------------------------------------

    def dead_letters(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        limit: int = 50,
        cursor: uuid.UUID | str | None = None,
    ) -> DeadLetterPage:
        """Jobs that failed for good, newest first; pass its next_cursor as cursor for more."""
        op = admin.dead_letters_op(task, queue, since, before, limit, cursor)
        return self.database.run(op)  # type: ignore[no-any-return]

    async def adead_letters(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        limit: int = 50,
        cursor: uuid.UUID | str | None = None,
    ) -> DeadLetterPage:
        """Async twin of dead_letters()."""
        op = admin.dead_letters_op(task, queue, since, before, limit, cursor)
        return await self.database.arun(op)  # type: ignore[no-any-return]

    def get_dead_letter(self, job_id: uuid.UUID | str) -> DeadLetter:
        """The dead letter of one job; raises JobNotFound when it has none."""
        return self.database.run(admin.dead_letter_op(as_id(job_id)))  # type: ignore[no-any-return]

    async def aget_dead_letter(self, job_id: uuid.UUID | str) -> DeadLetter:
        """Async twin of get_dead_letter()."""
        return await self.database.arun(admin.dead_letter_op(as_id(job_id)))  # type: ignore[no-any-return]

    def replay(self, job_id: uuid.UUID | str) -> Job:
        """Run a failed or cancelled job again, with as many attempts as it first had.

        It leaves the dead letters and keeps its history: attempt numbers go on
        from where they stopped. Raises IllegalTransition for a job in another status.
        """
        return self.replay_many([job_id])[0]

    async def areplay(self, job_id: uuid.UUID | str) -> Job:
        """Async twin of replay()."""
        return (await self.areplay_many([job_id]))[0]

    def replay_many(self, job_ids: Sequence[uuid.UUID | str]) -> list[Job]:
        """replay() for several jobs at once: all of them, or (on any error) none."""
        ids = [as_id(i) for i in job_ids]
        with pipeline.after_commit(pipeline.of(self)):
            return self.database.run(admin.replay_op(self, ids), atomic=True)  # type: ignore[no-any-return]

    async def areplay_many(self, job_ids: Sequence[uuid.UUID | str]) -> list[Job]:
        """Async twin of replay_many()."""
        ids = [as_id(i) for i in job_ids]
        with pipeline.after_commit(pipeline.of(self)):
            return await self.database.arun(admin.replay_op(self, ids), atomic=True)  # type: ignore[no-any-return]

    def replay_dead_letters(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        everything: bool = False,
    ) -> list[uuid.UUID]:
        """Replay the dead letters matching the filters (all: everything=True); returns the ids."""
        op = admin.bulk_replay_op(task, queue, since, before, everything)
        with pipeline.after_commit(pipeline.of(self)):
            return self.database.run(op, atomic=True)  # type: ignore[no-any-return]

    async def areplay_dead_letters(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        everything: bool = False,
    ) -> list[uuid.UUID]:
        """Async twin of replay_dead_letters()."""
        op = admin.bulk_replay_op(task, queue, since, before, everything)
        with pipeline.after_commit(pipeline.of(self)):
            return await self.database.arun(op, atomic=True)  # type: ignore[no-any-return]

    def purge_dead_letters(
        self,
        job_ids: Sequence[uuid.UUID | str] | None = None,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        everything: bool = False,
    ) -> int:
        """Forget dead letters for good: these ids, those matching the filters, or everything=True.

        The jobs stay `failed` with their history. Returns how many were purged.
        """
        op = admin.purge_op(job_ids, task, queue, since, before, everything)
        return self.database.run(op)  # type: ignore[no-any-return]

    async def apurge_dead_letters(
        self,
        job_ids: Sequence[uuid.UUID | str] | None = None,
        *,
        task: str | None = None,
        queue: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        everything: bool = False,
    ) -> int:
        """Async twin of purge_dead_letters()."""
        op = admin.purge_op(job_ids, task, queue, since, before, everything)
        return await self.database.arun(op)  # type: ignore[no-any-return]

    # -- workflows -----------------------------------------------------------------

    def get_workflow(self, workflow_id: uuid.UUID | str) -> WorkflowInfo:
        """A workflow as it is now: its shape, status, and its steps, each a Job (WorkflowStep)."""
        return self.database.run(get_workflow_op(as_id(workflow_id), self))  # type: ignore[no-any-return]

    async def aget_workflow(self, workflow_id: uuid.UUID | str) -> WorkflowInfo:
        """Async twin of get_workflow()."""
        op = get_workflow_op(as_id(workflow_id), self)
        return await self.database.arun(op)  # type: ignore[no-any-return]

    def workflows(
        self, *, limit: int = 50, cursor: uuid.UUID | str | None = None
    ) -> tuple[list[WorkflowSummary], str | None]:
        """Workflows, newest first, with how far each got; and the next page's cursor."""
        op = list_workflows_op(limit, None if cursor is None else as_id(cursor))
        return self.database.run(op)  # type: ignore[no-any-return]

    async def aworkflows(
        self, *, limit: int = 50, cursor: uuid.UUID | str | None = None
    ) -> tuple[list[WorkflowSummary], str | None]:
        """Async twin of workflows()."""
        op = list_workflows_op(limit, None if cursor is None else as_id(cursor))
        return await self.database.arun(op)  # type: ignore[no-any-return]

    def cancel_workflow(self, workflow_id: uuid.UUID | str) -> tuple[int, int]:
        """Cancel every step that has not ended: (cancelled now, running ones asked to stop)."""
        with pipeline.after_commit(pipeline.of(self)):
            return self.database.run(cancel_workflow_op(as_id(workflow_id)), atomic=True)  # type: ignore[no-any-return]

    async def acancel_workflow(self, workflow_id: uuid.UUID | str) -> tuple[int, int]:
        """Async twin of cancel_workflow()."""
        with pipeline.after_commit(pipeline.of(self)):
            op = cancel_workflow_op(as_id(workflow_id))
            return await self.database.arun(op, atomic=True)  # type: ignore[no-any-return]
