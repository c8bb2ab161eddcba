"""Job statuses, the state machine, and the Job model."""

from __future__ import annotations

import asyncio
import enum
import random
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, Self, overload

from pydantic import BaseModel, ConfigDict, PrivateAttr

from pgjobs.core.errors import IllegalTransition, JobCancelled, JobFailed, WaitTimeout


class Status(enum.StrEnum):
    """Where a job is in its life."""

    BLOCKED = "blocked"  # a workflow step: waits for the jobs before it to end
    SCHEDULED = "scheduled"  # waits for its run_at
    PENDING = "pending"  # ready: a worker may claim it
    RUNNING = "running"  # claimed by a worker, an attempt is under way
    RETRYING = "retrying"  # an attempt failed; the next one waits for its run_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed for good: it is in the dead letters
    CANCELLED = "cancelled"


TERMINAL: frozenset[Status] = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

# The legal transitions, as data. SQL statements take their allowed source
# statuses from here (see sources()), so Python and SQL follow one table.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    # Released (or cancelled, when a step before it fails) by the database
    # itself: see pgjobs.workflow_step() in sql/schema/0005_workflows.sql.
    Status.BLOCKED: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.SCHEDULED: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.PENDING: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset(
        {
            Status.SUCCEEDED,
            Status.FAILED,
            Status.RETRYING,
            Status.CANCELLED,
            Status.PENDING,  # handed back on shutdown, or rescued from a dead worker
        }
    ),
    Status.RETRYING: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset({Status.PENDING}),  # replayed from the dead letters
    # Replayed; a workflow step cancelled because a step before it failed
    # waits again when that step is replayed.
    Status.CANCELLED: frozenset({Status.PENDING, Status.BLOCKED}),
}


def can_transition(source: Status | str, target: Status | str) -> bool:
    """Whether a job may move from `source` to `target`."""
    return Status(target) in TRANSITIONS[Status(source)]


def check_transition(source: Status | str, target: Status | str) -> None:
    """Raise IllegalTransition unless a job may move from `source` to `target`."""
    if not can_transition(source, target):
        raise IllegalTransition(f"a job cannot go from {source!s} to {target!s}")


def sources(target: Status | str) -> list[str]:
    """The statuses a job may move to `target` from, for a SQL `status = ANY(...)`."""
    t = Status(target)
    return sorted(s.value for s, targets in TRANSITIONS.items() if t in targets)


# UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Ids made by
# the client are known before the insert (so a bulk insert needs no RETURNING of
# ids), and they sort by creation time, which keeps the primary key's inserts at
# the right edge of the index and lets list pagination use the id as cursor.
_last_ms = 0
_seq = 0


def new_job_id() -> uuid.UUID:
    """A new, time-ordered job id (UUIDv7)."""
    global _last_ms, _seq
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        # Same millisecond (or a clock step back): count up in the 12-bit
        # rand_a field so ids made by this process stay strictly increasing.
        _seq += 1
        if _seq > _SEQ_MAX:
            _last_ms += 1
            _seq = 0
        ms = _last_ms
    else:
        _last_ms = ms
        _seq = 0
    # random, not os.urandom: ids need uniqueness, not secrecy, and a system
    # call per id costs more than the rest of an enqueue. The random module
    # reseeds itself in a forked child, so processes do not share sequences.
    # The high 64 bits (time, version 7, counter) are made apart: one shift of
    # a large integer instead of four costs a third less per id.
    value = (((ms << 16) | 0x7000 | _seq) << 64) | _VARIANT | random.getrandbits(62)
    # uuid_of(value), inline: a call more is 0.4 % of a one-job enqueue.
    made = _new_object(uuid.UUID)
    _set_attr(made, "int", value)
    _set_attr(made, "is_safe", _UNKNOWN_SAFETY)
    return made


def new_job_ints(n: int) -> list[int]:
    """`n` new job ids as the integers of their UUIDs, in order, as new_job_id() makes them.

    For a bulk enqueue: a thousand ids cost one call for their random bits and
    no UUID object each, which only a Job read later needs (uuid_of()).
    """
    global _last_ms, _seq
    ms = time.time_ns() // 1_000_000
    if ms > _last_ms:
        _last_ms, _seq = ms, -1
    # 64 random bits per id in one call; the low 62 are rand_b.
    rand = _unpack_u64(f"<{n}Q", random.randbytes(8 * n))
    out: list[int] = []
    while len(out) < n:
        if _seq >= _SEQ_MAX:  # the counter is spent: on to the next millisecond
            _last_ms, _seq = _last_ms + 1, -1
        first = _seq + 1
        last = min(_SEQ_MAX, first + n - len(out) - 1)
        high = ((_last_ms << 16) | 0x7000) << 64 | _VARIANT
        done = len(out)
        out += [
            high | (seq << 64) | (r & _RAND_B)
            for seq, r in zip(range(first, last + 1), rand[done : done + last - first + 1])  # noqa: B905
        ]
        _seq = last
    return out


def uuid_of(value: int) -> uuid.UUID:
    """The UUID of a job id's integer, as uuid.UUID(int=value) makes it."""
    # Without UUID()'s argument checks: the value is in range by construction,
    # and a bulk enqueue makes thousands.
    made = _new_object(uuid.UUID)
    _set_attr(made, "int", value)
    _set_attr(made, "is_safe", _UNKNOWN_SAFETY)
    return made


_SEQ_MAX = 0xFFF
_VARIANT = 0x8000000000000000
_RAND_B = (1 << 62) - 1
_unpack_u64 = struct.unpack
_new_object = object.__new__
_set_attr = object.__setattr__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


class JobSource(Protocol):
    """What a Job reads its own state through: the App it came from."""

    def get_job(self, job_id: uuid.UUID | str) -> Job: ...

    async def aget_job(self, job_id: uuid.UUID | str) -> Job: ...

    def job_status(self, job_id: uuid.UUID) -> tuple[str, Any, Any]: ...

    async def ajob_status(self, job_id: uuid.UUID) -> tuple[str, Any, Any]: ...


class Job(BaseModel):
    """A job as stored: its arguments, status, timestamps and outcome."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    task: str
    queue: str
    status: Status
    priority: int = 0
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    attempts: int = 0
    max_attempts: int = 1
    created_at: datetime | None = None
    run_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    worker_id: str | None = None
    dedup_key: str | None = None
    deduplicated: bool = False  # True when enqueue returned an existing job
    cancel_requested: bool = False  # cancel() asked the worker running it to stop
    workflow_id: uuid.UUID | None = None  # the chain, group or chord it is a step of
    waiting_for: int | None = None  # while blocked: how many jobs before it have not ended

    _app: JobSource | None = PrivateAttr(default=None)

    @property
    def is_terminal(self) -> bool:
        """True once the job has succeeded, failed for good, or been cancelled."""
        return self.status in TERMINAL

    @property
    def idempotency_key(self) -> str:
        """A key that is the same for every attempt of this job, for outside services."""
        return self.dedup_key or f"pgjobs-{self.id}"

    @classmethod
    def assemble(
        cls, fields: dict[str, Any], fields_set: set[str], private: dict[str, Any]
    ) -> Self:
        """A Job of these fields, as they are: no validation, no copy.

        For the jobs an enqueue just inserted, made from values pgjobs validated itself:
        built the way pydantic's own model_copy() builds a copy, at a twelfth of what
        model_construct() costs, which a one-job enqueue would feel (bench/README.md,
        instructions). `fields` must hold every field; `fields_set` and `private`
        ({"_app": ...}) may be shared by the jobs of one call, as pydantic changes
        neither in place on a frozen model (an assignment raises first; model_copy()
        copies both).
        """
        job = _new_object(cls)
        _set_attr(job, "__dict__", fields)
        _set_attr(job, "__pydantic_fields_set__", fields_set)
        _set_attr(job, "__pydantic_extra__", None)
        _set_attr(job, "__pydantic_private__", private)
        return job

    @classmethod
    def from_row(cls, row: Mapping[str, Any], app: JobSource | None = None) -> Self:
        """Build a Job (or a subclass's instance) from a row of pgjobs.jobs."""
        job = cls(
            id=row["id"],
            task=row["task"],
            queue=row["queue"],
            status=Status(row["status"]),
            priority=row["priority"],
            args=row["args"],
            kwargs=row["kwargs"],
            attempts=row["attempt"],
            max_attempts=row["max_attempts"],
            created_at=row["created_at"],
            run_at=row["run_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            result=row["result"],
            error=row["error"],
            progress=row["progress"],
            worker_id=row["worker_id"],
            dedup_key=row["dedup_key"],
            cancel_requested=row.get("cancel_requested_at") is not None,
            workflow_id=row.get("workflow_id"),
            waiting_for=row.get("waiting_for"),
        )
        job._app = app
        return job

    def status_view(self) -> dict[str, Any]:
        """The status-endpoint shape: result only when succeeded, error only when failed."""
        return {
            "job_id": str(self.id),
            "task": self.task,
            "queue": self.queue,
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.finished_at,
            "result": self.result if self.status is Status.SUCCEEDED else None,
            "error": self.error if self.status is Status.FAILED else None,
            "progress": self.progress,
            "is_terminal": self.is_terminal,
        }

    def _require_app(self) -> JobSource:
        if self._app is None:
            raise RuntimeError("this Job is not bound to an App; use app.get_job(id)")
        return self._app

    def refresh(self) -> Job:
        """The job as it is now in the database."""
        return self._require_app().get_job(self.id)

    async def arefresh(self) -> Job:
        """Async twin of refresh()."""
        return await self._require_app().aget_job(self.id)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result or raise JobFailed / JobCancelled."""
        app = self._require_app()
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            status, result, error = app.job_status(self.id)
            outcome = _outcome(self, status, result, error)
            if outcome is not _NOT_DONE:
                return outcome
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.id} is still {status} after {timeout} s")
            remaining = None if deadline is None else deadline - time.monotonic()
            time.sleep(delay if remaining is None else max(0.0, min(delay, remaining)))
            delay = min(delay * 2, 0.5)

    async def await_result(self, timeout: float | None = None) -> Any:
        """Async twin of wait()."""
        app = self._require_app()
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            status, result, error = await app.ajob_status(self.id)
            outcome = _outcome(self, status, result, error)
            if outcome is not _NOT_DONE:
                return outcome
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.id} is still {status} after {timeout} s")
            remaining = None if deadline is None else deadline - time.monotonic()
            await asyncio.sleep(delay if remaining is None else max(0.0, min(delay, remaining)))
            delay = min(delay * 2, 0.5)


class JobList(Sequence[Job]):
    """The jobs one enqueue_many() call made, in the order of its items.

    Read it as a list: len(), [i], slices, iteration, ==, +. Each Job is made
    the first time it is read, so a large call whose jobs are not read makes
    none (for a thousand jobs, more than the rest of the Python), and `ids`
    gives the ids alone.
    """

    __slots__ = ("_ints", "_jobs", "_make")

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs: list[Job | None] = list(jobs)
        self._make: Callable[[int], Job] | None = None
        self._ints: list[int] | None = None

    @classmethod
    def later(cls, ints: list[int], make: Callable[[int], Job]) -> JobList:
        """Jobs with these ids (as integers), each made by make(index) when first read."""
        made = cls()
        made._jobs = [None] * len(ints)
        made._make, made._ints = make, ints
        return made

    @property
    def ids(self) -> list[uuid.UUID]:
        """The jobs' ids, without making the jobs."""
        if self._ints is not None:
            return [uuid_of(i) for i in self._ints]
        return [job.id for job in self]

    def __len__(self) -> int:
        return len(self._jobs)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._jobs)))]
        job = self._jobs[index]  # IndexError as a list raises it
        if job is None:
            assert self._make is not None
            index = index + len(self._jobs) if index < 0 else index
            job = self._jobs[index] = self._make(index)
        return job

    def __iter__(self) -> Iterator[Job]:
        for i in range(len(self._jobs)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (JobList, list)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, which has none

    def __add__(self, other: Iterable[Job]) -> list[Job]:
        return [*self, *other]

    def __radd__(self, other: Iterable[Job]) -> list[Job]:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"JobList({list(self)!r})"

    def __reduce__(self) -> tuple[type[JobList], tuple[list[Job]]]:
        return (JobList, (list(self),))


class DeadLetter(BaseModel):
    """A job that failed for good: what it was asked to do, and how it last failed."""

    model_config = ConfigDict(frozen=True)

    job_id: uuid.UUID
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    error: dict[str, Any] | None
    attempts: int
    failed_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DeadLetter:
        """Build a DeadLetter from a row of pgjobs.dead_letters."""
        return cls(**{name: row[name] for name in cls.model_fields})


_NOT_DONE = object()


def _outcome(job: Job, status: str, result: Any, error: dict[str, Any] | None) -> Any:
    if status == Status.SUCCEEDED:
        return result
    if status == Status.FAILED:
        raise JobFailed(job.id, error)
    if status == Status.CANCELLED:
        raise JobCancelled(job.id, error)
    return _NOT_DONE
