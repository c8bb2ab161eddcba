"""What the App's reading calls return: pages of jobs and dead letters, queues, workers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

from pgjobs.core.jobs import DeadLetter, Job


@dataclass(frozen=True)
class Page(Sequence[Job]):
    """One page of app.jobs(): the jobs, and the cursor for the next page (None at the end).

    Read it as the list of its jobs (iteration, len(), [i]), as a page of
    app.dead_letters() is read; `jobs` is that list.
    """

    jobs: list[Job]
    next_cursor: str | None

    def __len__(self) -> int:
        return len(self.jobs)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        return self.jobs[index]

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)


class DeadLetterPage(list[DeadLetter]):
    """A page of app.dead_letters(): a list, with the cursor of the next page (None at the end)."""

    next_cursor: str | None = None


@dataclass(frozen=True)
class QueueStats:
    """A queue's depth by status and the age, in seconds, of its oldest ready job."""

    queue: str
    counts: dict[str, int]
    oldest_pending_age: float | None

    @property
    def depth(self) -> int:
        """Jobs waiting to run: pending, scheduled and retrying."""
        return sum(self.counts.get(s, 0) for s in ("pending", "scheduled", "retrying"))


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job: which worker ran it, when, and how it ended."""

    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime
    outcome: str  # succeeded, failed (retried or not), cancelled, lost (its worker died)
    error: dict[str, Any] | None


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker: where it runs, what it serves, and when it last said so."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float  # seconds since its last heartbeat
    running: int  # jobs it runs now
    stuck: int = 0  # threads still running past a hard time limit: their slots are taken
    busy: int = 0  # slots taken: running + stuck
