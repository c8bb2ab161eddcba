"""Enqueuing: the operations that insert jobs, and the Jobs they return.

One job without a dedup key is one prepared INSERT; a batch is one INSERT ... unnest,
or COPY in the binary format from COPY_FROM jobs on; dedup keys are claimed first, one
statement each. Each function runs its operation on the App's pools, or on the
caller's connection (conn=) inside its transaction.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pgjobs.client.encoding import (
    Encoded,
    NewJob,
    Options,
    Target,
    check_options,
    encode_each,
    initial_status,
    prepare_many,
)
from pgjobs.client.host import Host
from pgjobs.core.jobs import Job, JobList, Status, new_job_ints, uuid_of
from pgjobs.db import driver
from pgjobs.observe import logs


def insert(app: Host, rows: list[NewJob], conn: Any) -> list[Job]:
    """Insert validated jobs in one statement (dedup keys claimed first); all or none."""
    if not rows:
        return []
    return app.database.run(insert_op(app, rows), conn, atomic=_needs_tx(rows))  # type: ignore[no-any-return]


async def ainsert(app: Host, rows: list[NewJob], conn: Any) -> list[Job]:
    """Async twin of insert()."""
    if not rows:
        return []
    op = insert_op(app, rows)
    return await app.database.arun(op, conn, atomic=_needs_tx(rows))  # type: ignore[no-any-return]


def insert_one(app: Host, row: NewJob, conn: Any) -> Job:
    """Insert one validated job: task.enqueue()."""
    if row.dedup_key is not None:
        return insert(app, [row], conn)[0]
    return app.database.run(insert_one_op(app, row), conn)  # type: ignore[no-any-return]


async def ainsert_one(app: Host, row: NewJob, conn: Any) -> Job:
    """Async twin of insert_one()."""
    if row.dedup_key is not None:
        return (await ainsert(app, [row], conn))[0]
    return await app.database.arun(insert_one_op(app, row), conn)  # type: ignore[no-any-return]


def enqueue_many(
    app: Host, task: Target, opts: Options, items: Iterable[Any], conn: Any
) -> JobList:
    """task.enqueue_many(): one INSERT below COPY_FROM jobs or with a dedup key, else COPY."""
    items = list(items)
    if len(items) < COPY_FROM or opts.dedup_key is not None:
        return JobList(insert(app, prepare_many(task, opts, items), conn))
    prepared = None
    if conn is not None and not driver.sync_driver(conn).autocommit:
        prepared = _validated(task, opts, items)
    op = copy_op(app, task, opts, items, prepared)
    return app.database.run(op, conn, atomic=True)  # type: ignore[no-any-return]


async def aenqueue_many(
    app: Host, task: Target, opts: Options, items: Iterable[Any], conn: Any
) -> JobList:
    """Async twin of enqueue_many()."""
    items = list(items)
    if len(items) < COPY_FROM or opts.dedup_key is not None:
        return JobList(await ainsert(app, prepare_many(task, opts, items), conn))
    prepared = None
    if conn is not None and not (await driver.async_driver(conn)).autocommit:
        prepared = _validated(task, opts, items)
    op = copy_op(app, task, opts, items, prepared)
    return await app.database.arun(op, conn, atomic=True)  # type: ignore[no-any-return]


#: From this many jobs without dedup keys, enqueue_many() uses COPY. Below it,
#: one INSERT ... unnest statement is cheaper than COPY's extra round trips.
COPY_FROM = 100


def _needs_tx(rows: list[NewJob]) -> bool:
    return any(r.dedup_key for r in rows)


def one_job_params(r: NewJob) -> driver.Columns:
    """The parameters of the enqueue_job statement for one job (its columns: past_defaults())."""
    values = (r.queue, r.status, r.priority, r.max_attempts, r.run_at, r.dedup_key, r.meta_json)
    if values == _ALL_DEFAULTS and not r.limited:  # most jobs: no dict to build
        return driver.Columns((), (r.id, r.task, r.args_json, r.kwargs_json))
    named = past_defaults(dict(zip(_ONE_JOB_COLUMNS, values, strict=True), limited=r.limited))
    return driver.Columns(tuple(named), (r.id, r.task, r.args_json, r.kwargs_json, *named.values()))


def insert_one_op(app: Host, r: NewJob) -> driver.Op:
    """One job without a dedup key: the most common enqueue, with nothing to look up."""
    started = logs.clock()
    row = yield "enqueue_job", one_job_params(r), "one"
    logs.enqueued((r,), started)
    return fresh_job(r, row["created_at"], set(_JOB_FIELDS_SET), {"_app": app})


def insert_op(app: Host, rows: list[NewJob]) -> driver.Op:
    found: dict[uuid.UUID, Job] = {}
    fresh: list[NewJob] = []
    # A key used twice in one batch: the later rows get the earlier row's job.
    keyed_here: dict[str, NewJob] = {}
    same_as: dict[uuid.UUID, NewJob] = {}
    for r in rows:
        if r.dedup_key is None:
            fresh.append(r)
            continue
        if r.dedup_key in keyed_here:
            same_as[r.id] = keyed_here[r.dedup_key]
            continue
        taken = yield (
            "claim_dedup_key",
            {"key": r.dedup_key, "job_id": r.id, "window_seconds": r.window_seconds},
            "one",
        )
        if taken is not None:
            fresh.append(r)
            keyed_here[r.dedup_key] = r
            continue
        existing = yield "job_for_dedup_key", {"key": r.dedup_key}, "one"
        if existing is None:  # cannot happen while the key row holds its job
            raise RuntimeError(f"dedup key {r.dedup_key!r} points at no job")
        job = Job.from_row(existing, app)
        # A copy keeps the original's private attributes: its App too.
        found[r.id] = job.model_copy(update={"deduplicated": True})
    started = logs.clock()
    if len(fresh) == 1:
        r = fresh[0]
        row = yield "enqueue_job", one_job_params(r), "one"
        created_at = row["created_at"]
    elif fresh:
        row = yield (
            "enqueue_jobs",
            {
                "ids": [r.id for r in fresh],
                "tasks": [r.task for r in fresh],
                "queues": [r.queue for r in fresh],
                "statuses": [r.status for r in fresh],
                "priorities": [r.priority for r in fresh],
                "args": [r.args_json for r in fresh],
                "kwargs": [r.kwargs_json for r in fresh],
                "max_attempts": [r.max_attempts for r in fresh],
                "run_ats": [r.run_at for r in fresh],
                "dedup_keys": [r.dedup_key for r in fresh],
                "metas": [r.meta_json for r in fresh],
                "limited": [r.limited for r in fresh],
            },
            "one",
        )
        created_at = row["created_at"]
    # Only the jobs inserted here: a deduplicated one did not change.
    logs.enqueued(fresh, started)
    out: list[Job] = []
    built: dict[uuid.UUID, Job] = {}
    fields_set, private = set(_JOB_FIELDS_SET), {"_app": app}
    made_at = created_at if fresh else None
    for r in rows:
        if r.id in found:
            out.append(found[r.id])
            continue
        if r.id in same_as:
            first = built[same_as[r.id].id]
            out.append(first.model_copy(update={"deduplicated": True}))
            continue
        job = fresh_job(r, made_at, fields_set, private)
        built[r.id] = job
        out.append(job)
    return out


def _validated(task: Target, opts: Options, items: list[Any]) -> list[Encoded]:
    """A large batch checked whole before anything is sent, so as never to abort a transaction."""
    check_options(opts)
    return list(encode_each(task, items))


def copy_op(
    app: Host, task: Target, opts: Options, items: list[Any], prepared: list[Encoded] | None
) -> driver.Op:
    """A large batch by COPY. Without `prepared`, items are validated as they stream.

    Streaming overlaps our Python with the server's work. It is used only in a
    transaction of pgjobs' own: a bad item aborts the COPY and so inserts nothing,
    as when everything is validated first (which a caller's open transaction
    gets, so that a bad item never aborts it).
    """
    run_at, _ = check_options(opts)
    status = initial_status(run_at)
    row = yield "copy_jobs_begin", {"status": status, "queue": opts.queue}, "one"
    created_at = row["now"]
    shared = copy_shared(task, opts, run_at)
    source = encode_each(task, items) if prepared is None else prepared
    # What the jobs are made from when they are read (see JobList): ids as
    # integers and arguments as JSON text, neither an object the garbage
    # collector tracks. A thousand Jobs made here, each with its dict, UUID
    # and lists, cost more than the rest of the call, most of it in the
    # collections they set off.
    ints: list[int] = []
    args_json: list[str] = []
    kwargs_json: list[str] = []

    def chunks(encoding: str) -> Iterator[bytes]:
        # The rows in COPY's binary format, written here rather than by
        # psycopg's write_row(), COPY_CHUNK at a time.
        head, tail = copy_row_parts(task.name, shared, encoding)
        yield COPY_START
        start = 0
        for _, _, a_json, k_json in source:
            args_json.append(a_json)
            kwargs_json.append(k_json)
            if len(args_json) - start == COPY_CHUNK:
                yield rows(start, head, tail)
                start += COPY_CHUNK
        if len(args_json) > start:
            yield rows(start, head, tail)
        yield COPY_END

    def rows(start: int, head: bytes, tail: bytes) -> bytes:
        new = new_job_ints(len(args_json) - start)
        ints.extend(new)
        return copy_rows(new, args_json[start:], kwargs_json[start:], head, tail)

    started = logs.clock()
    yield "copy_jobs", {"columns": tuple(shared), "chunks": chunks}, "copy"
    make = batch_maker(app, created_at, task.name, opts, status, run_at)
    jobs = JobList.later(ints, lambda i: make(ints[i], args_json[i], kwargs_json[i]))
    logs.enqueued(jobs, started)
    return jobs


def copy_shared(task: Target, opts: Options, run_at: datetime | None) -> dict[str, Any]:
    """The values past id, args, kwargs and task that every row of one COPY shares.

    Those that are the table's own defaults are left to it: Postgres then
    neither reads nor converts them for each row (the rows' server CPU fell by
    a seventh with them left out, measured on 30,000 rows).
    """
    shared: dict[str, Any] = {
        "queue": opts.queue,
        "status": initial_status(run_at),
        "priority": opts.priority,
        "max_attempts": opts.max_attempts,
        # Unset, run_at is now(): the transaction's start, as created_at is.
        "run_at": run_at,
        "meta": _NO_META,
        "limited": task.limited,
    }
    return past_defaults(shared)


def past_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The values an insert of jobs names: those that are not the table's defaults.

    The rest are left to the table: Postgres then neither reads nor converts
    them (an unset run_at is now(), the transaction's start, as created_at is).
    """
    return {c: v for c, v in values.items() if v is not None and v != COLUMN_DEFAULTS.get(c)}


#: The defaults of pgjobs.jobs' columns that past_defaults() leaves out
#: (run_at's is now()); a test holds them to the schema's.
COLUMN_DEFAULTS: dict[str, Any] = {
    "queue": "default",
    "status": "pending",
    "priority": 0,
    "max_attempts": 1,
    "meta": "{}",
    "limited": False,
}

#: The columns of a job that one_job_params() reads first, and their defaults.
_ONE_JOB_COLUMNS = ("queue", "status", "priority", "max_attempts", "run_at", "dedup_key", "meta")
_ALL_DEFAULTS = tuple(COLUMN_DEFAULTS.get(c) for c in _ONE_JOB_COLUMNS)

#: The meta of a job enqueued by enqueue_many(): nothing (events and workflows set theirs).
_NO_META = "{}"

# COPY's binary format: the rows are sent as the types' own binary forms, which
# Postgres takes as they are (the text format had it split each line and parse
# a UUID out of hex, a sixth of its CPU per row); and a row costs less to write
# here than as text. A field is its length (4 bytes) and its bytes.
COPY_START = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
COPY_END = b"\xff\xff"  # a row of -1 fields
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _jsonb_head(size: int) -> bytes:
    """The start of a jsonb field for JSON text of `size` bytes: the length, format version 1."""
    return struct.pack(">ib", size + 1, 1)


def _jsonb_field(text: str) -> bytes:
    """JSON text (ASCII) as a jsonb field."""
    return _jsonb_head(len(text)) + text.encode()


#: _jsonb_head() of each size up to 511: a list lookup, where packing the head
#: for each row cost more than the rest of the row.
_JSONB_HEADS = [_jsonb_head(n) for n in range(512)]
_NO_KWARGS = _jsonb_field("{}")


def _text_field(text: str, encoding: str) -> bytes:
    data = text.encode(encoding)
    return struct.pack(">i", len(data)) + data


_FIELDS: dict[str, Callable[[Any, str], bytes]] = {
    "queue": _text_field,
    "status": _text_field,
    "priority": lambda v, _: struct.pack(">ih", 2, v),
    "max_attempts": lambda v, _: struct.pack(">ii", 4, v),
    # timestamptz: microseconds since 2000-01-01 UTC.
    "run_at": lambda v, _: struct.pack(">iq", 8, (v - _PG_EPOCH) // _MICROSECOND),
    "meta": lambda v, _: _jsonb_field(v),
    "limited": lambda v, _: struct.pack(">i?", 1, v),
}


def copy_row_parts(task_name: str, shared: dict[str, Any], encoding: str) -> tuple[bytes, bytes]:
    """What each row of one COPY starts with (its field count, the id's length) and ends with."""
    head = struct.pack(">hi", 4 + len(shared), 16)
    tail = _text_field(task_name, encoding)
    return head, tail + b"".join(_FIELDS[c](v, encoding) for c, v in shared.items())


def copy_rows(
    ids: list[int], args_json: list[str], kwargs_json: list[str], head: bytes, tail: bytes
) -> bytes:
    """Rows of COPY's binary format: id (a UUID's integer), args and kwargs of each."""
    # The JSON text is ASCII (json escapes the rest), so its length is its size
    # in bytes, and it reads the same in any client encoding.
    return b"".join(
        [
            b"%b%b%b%b%b%b"
            % (
                head,
                i.to_bytes(16),
                _JSONB_HEADS[len(a)] if len(a) < 512 else _jsonb_head(len(a)),
                a.encode(),
                _NO_KWARGS if k == "{}" else _jsonb_field(k),
                tail,
            )
            for i, a, k in zip(ids, args_json, kwargs_json, strict=True)
        ]
    )


#: Rows per write during a COPY (about 12 KB): each is sent as soon as it is
#: made, so the server inserts rows while the rest are still being validated,
#: and the last chunk leaves it little to do after the end. Measured per
#: 1,000-job call: 128 rows 7.9-8.4 ms, 256 rows 8.0-8.5, 1,000 rows 11.2.
COPY_CHUNK = 128


_STATUSES = {s.value: s for s in Status}


def _job_template() -> tuple[dict[str, Any], frozenset[str]]:
    """The fields of a job just inserted, before its own values, and the fields it sets."""
    # Fields a new job has before any attempt; the rest are the model's defaults.
    model = Job.model_construct(
        id=uuid.UUID(int=0),
        task="",
        queue="",
        status=Status.PENDING,
        attempts=0,
        started_at=None,
        finished_at=None,
        result=None,
        error=None,
        progress=None,
        worker_id=None,
        deduplicated=False,
    )
    fields_set = frozenset(model.model_fields_set) | {
        "priority",
        "args",
        "kwargs",
        "max_attempts",
        "created_at",
        "run_at",
        "dedup_key",
    }
    return dict(model.__dict__), fields_set


_JOB_BASE, _JOB_FIELDS_SET = _job_template()


def fresh_job(
    r: NewJob, created_at: datetime | None, fields_set: set[str], private: dict[str, Any]
) -> Job:
    """The Job of a row just inserted, as the database now holds it."""
    # A copy of a dict that has every key, then stores over its values: cheaper than
    # building the dict from `**base` and the new values.
    fields = _JOB_BASE.copy()
    fields["created_at"] = created_at
    fields["id"] = r.id
    fields["task"] = r.task
    fields["queue"] = r.queue
    fields["status"] = _STATUSES[r.status]
    fields["priority"] = r.priority
    fields["args"] = r.args
    fields["kwargs"] = r.kwargs
    fields["max_attempts"] = r.max_attempts
    fields["run_at"] = r.run_at or created_at
    fields["dedup_key"] = r.dedup_key
    return Job.assemble(fields, fields_set, private)


def batch_maker(
    app: Host,
    created_at: datetime | None,
    task: str,
    opts: Options,
    status: str,
    run_at: datetime | None,
) -> Callable[[int, str, str], Job]:
    """Jobs of one enqueue_many() call, which share all but their id and arguments."""
    base = _JOB_BASE.copy()
    base["created_at"] = created_at
    base["task"] = task
    base["queue"] = opts.queue
    base["status"] = _STATUSES[status]
    base["priority"] = opts.priority
    base["max_attempts"] = opts.max_attempts
    base["run_at"] = run_at or created_at
    base["dedup_key"] = None
    fields_set = set(_JOB_FIELDS_SET)
    private = {"_app": app}

    def make(job_id: int, args_json: str, kwargs_json: str) -> Job:
        # The arguments as written: their JSON text, read back.
        fields = base.copy()
        fields["id"] = uuid_of(job_id)
        fields["args"] = json.loads(args_json)
        fields["kwargs"] = json.loads(kwargs_json)
        return Job.assemble(fields, fields_set, private)

    return make
