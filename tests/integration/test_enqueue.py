"""Enqueue: a job id at once, typed arguments, options, batches and async twins."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import pq
from pydantic import ValidationError

from pgjobs import Status
from pgjobs.client.enqueue import COLUMN_DEFAULTS, COPY_CHUNK
from tests import sample_app
from tests.support.common import count


def test_enqueue_returns_a_pending_job_with_its_id_at_once(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.add.enqueue(2, 3)
    assert isinstance(job.id, uuid.UUID) and job.id.version == 7
    assert job.status is Status.PENDING and job.task == "add" and job.queue == "default"
    row = db.execute(
        "SELECT task, status, args, kwargs, attempt, max_attempts FROM pgjobs.jobs WHERE id = %s",
        (job.id,),
    ).fetchone()
    assert row == ("add", "pending", [2, 3], {}, 0, 1)
    stored = app.get_job(job.id)
    assert stored.created_at == job.created_at
    assert stored.is_terminal is False


def test_the_returned_jobs_have_the_stored_times(app: Any) -> None:
    """created_at and run_at as stored: one job, a batch, a COPY, scheduled or not."""
    later = datetime.now(UTC) + timedelta(hours=1)
    jobs = [
        sample_app.add.enqueue(1, 1),
        sample_app.add.options(run_at=later).enqueue(1, 1),
        *sample_app.add.enqueue_many([(i, i) for i in range(3)]),
        *sample_app.add.options(run_at=later).enqueue_many([(i, i) for i in range(3)]),
        *sample_app.add.enqueue_many([(i, i) for i in range(COPY_CHUNK + 1)]),
    ]
    for job in jobs:
        stored = app.get_job(job.id)
        assert (job.created_at, job.run_at) == (stored.created_at, stored.run_at)
    assert jobs[0].run_at == jobs[0].created_at and jobs[1].run_at == later


def test_job_ids_sort_by_creation_time(app: Any) -> None:
    jobs = [sample_app.add.enqueue(i, i) for i in range(50)]
    jobs += sample_app.add.enqueue_many([(i, i) for i in range(500)])
    ids = [j.id for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_returned_jobs_are_what_the_database_holds_field_for_field(app: Any) -> None:
    """Jobs are built from our own rows without validation: they must match a read-back."""
    one = sample_app.add.enqueue(1, 2)
    few = sample_app.add.options(queue="q2", priority=3).enqueue_many([(i, i) for i in range(5)])
    many = sample_app.add.options(delay=60).enqueue_many([(i, i) for i in range(150)])
    for job in [one, *few, *many]:
        stored = app.get_job(job.id)
        assert job.model_dump() == stored.model_dump(), job.id
        assert job.model_fields_set >= {"id", "task", "status", "created_at", "run_at"}
        assert job._app is app
    twin = one.model_copy(update={"deduplicated": True})
    assert twin.deduplicated and not one.deduplicated


def test_a_prepared_job_carries_each_option_in_its_own_field() -> None:
    """prepare() makes NewJob positionally: every field must get its own value."""
    import pgjobs

    local = pgjobs.App("postgresql://nobody@127.0.0.1:1/none")

    @local.task(queue="q", priority=4, retries=2, concurrency=3)
    def work(a: int, b: str = "x", **extra: int) -> None:
        """A task with an option of every kind."""

    later = datetime.now(UTC) + timedelta(hours=1)
    new = work.options(run_at=later, dedup_key="k", dedup_window=30).prepare((7,), {"c": 8})
    assert (new.task, new.queue, new.status, new.priority) == ("work", "q", "scheduled", 4)
    assert (new.args, new.kwargs, new.args_json, new.kwargs_json) == (
        [7],
        {"c": 8},
        "[7]",
        '{"c":8}',
    )
    assert (new.max_attempts, new.run_at, new.dedup_key) == (3, later, "k")
    assert (new.window_seconds, new.limited, new.meta_json) == (30.0, True, "{}")
    assert isinstance(new.id, uuid.UUID) and new.id.version == 7
    plain = local.tasks["work"]._enqueuer.prepare((1, "y"), {})
    assert (plain.status, plain.run_at, plain.dedup_key, plain.window_seconds) == (
        "pending",
        None,
        None,
        None,
    )


def test_job_ids_behave_as_ordinary_uuids() -> None:
    import pickle

    from pgjobs.core.jobs import new_job_id, new_job_ints, uuid_of

    made = new_job_id()
    same = uuid.UUID(str(made))
    assert made == same and hash(made) == hash(same) and made.version == 7
    assert made.variant == uuid.RFC_4122 and made.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(made)) == made and {made: 1}[same] == 1
    bulk = uuid_of(new_job_ints(1)[0])
    assert bulk == uuid.UUID(str(bulk)) and (bulk.version, bulk.variant) == (7, uuid.RFC_4122)


def test_ids_made_in_bulk_keep_the_order_and_form_of_single_ones() -> None:
    """More ids than one millisecond's counter holds (4,096), between single ones."""
    from pgjobs.core.jobs import new_job_id, new_job_ints

    first = new_job_id().int
    bulk = new_job_ints(10_000)
    last = new_job_id().int
    ints = [first, *bulk, last]
    assert ints == sorted(ints) and len(set(ints)) == len(ints)
    made = [uuid.UUID(int=i) for i in ints]
    assert {(u.version, u.variant) for u in made} == {(7, uuid.RFC_4122)}
    # The time part is milliseconds since the epoch, as for any UUIDv7.
    now_ms = time.time() * 1000
    assert all(abs((u.int >> 80) - now_ms) < 60_000 for u in made)
    # rand_b is random: not one value repeated, and both halves of its range used.
    rand_b = [i & ((1 << 62) - 1) for i in bulk]
    assert len(set(rand_b)) == len(rand_b)
    assert min(rand_b) < 1 << 61 < max(rand_b)
    assert new_job_ints(0) == []


def traced(conn: psycopg.Connection[Any], call: Any) -> tuple[Any, list[str]]:
    """Run call() and return its result and the protocol messages the client sent."""
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        out = call()
        conn.pgconn.untrace()
        trace.seek(0)
        return out, [ln.split("\t")[2] for ln in trace.read().splitlines() if ln.startswith("F\t")]


def round_trips(sent: list[str]) -> int:
    """Messages after which the client waits for the server: Sync, a simple Query, CopyDone."""
    return sum(1 for m in sent if m in ("Sync", "Query", "CopyDone")) - sent.count("CopyDone")


def test_enqueue_many_takes_a_fixed_number_of_round_trips_whatever_the_size(
    app: Any, db_url: str, db: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        small, sent_small = traced(
            conn, lambda: sample_app.add.enqueue_many([(i, i) for i in range(50)], conn=conn)
        )
        jobs, sent = traced(
            conn,
            lambda: sample_app.add.enqueue_many([(i, 2 * i) for i in range(5000)], conn=conn),
        )
    # Below 100 jobs: one INSERT ... unnest statement.
    assert round_trips(sent_small) == 1 and sent_small.count("Execute") == 1
    # From 100 on: BEGIN, SELECT now(), COPY, COMMIT, however many rows.
    assert round_trips(sent) == 4, sent[:12]
    assert sent.count("CopyData") >= 1
    assert len(jobs) == 5000 and len({j.id for j in jobs}) == 5000 and len(small) == 50
    assert count(db) == 5050
    row = db.execute("SELECT args FROM pgjobs.jobs WHERE id = %s", (jobs[4321].id,)).fetchone()
    assert row == ([4321, 8642],)


def test_a_large_batch_stores_every_field_as_a_small_one_does(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    fields = "task, queue, status, priority, args, kwargs, max_attempts, limited, meta, attempt"
    for size in (3, 300):  # INSERT ... unnest, then COPY
        db.execute("TRUNCATE pgjobs.jobs CASCADE")
        plain = sample_app.add.enqueue_many([((i,), {"b": i}) for i in range(size)])
        later = sample_app.add.options(queue="q2", priority=-3, retries=2, delay=600)
        delayed = later.enqueue_many([(i, i) for i in range(size)])
        limited = sample_app.fragile_api.enqueue_many([(i, 0.1) for i in range(size)])
        stored = {
            r[0]: r[1:]
            for r in db.execute(f"SELECT id, created_at, run_at, {fields} FROM pgjobs.jobs")
        }
        assert len(stored) == 3 * size
        for job in plain + delayed + limited:
            created_at, run_at, *rest = stored[job.id]
            # What enqueue_many returned is what the database holds.
            assert (job.created_at, job.run_at) == (created_at, run_at)
            assert rest[:7] == [
                job.task,
                job.queue,
                job.status.value,
                job.priority,
                job.args,
                job.kwargs,
                job.max_attempts,
            ]
            assert rest[7] is (job.task == "fragile_api") and rest[8] == {} and rest[9] == 0
        assert {stored[j.id][0] for j in plain} == {plain[0].created_at}
        assert plain[2].args == [2] and plain[2].kwargs == {"b": 2}
        assert all(j.status is Status.SCHEDULED and j.queue == "q2" for j in delayed)
        assert all(
            timedelta(seconds=599) < j.run_at - j.created_at < timedelta(seconds=601)
            for j in delayed
        )


def test_one_job_enqueues_with_different_options_each_store_their_own(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    """A one-job insert names only the columns a job sets: every form stores its job whole."""
    fields = "task, queue, status, priority, max_attempts, dedup_key, limited, args, run_at"
    jobs = []
    for n in range(7):  # each form past psycopg's prepare threshold, on one pool connection
        jobs += [
            sample_app.add.enqueue(n, 1),
            sample_app.add.options(queue="q2").enqueue(n, 2),
            sample_app.add.options(priority=5, retries=3).enqueue(n, 3),
            sample_app.add.options(delay=60).enqueue(n, 4),
            sample_app.add.options(dedup_key=f"key-{n}").enqueue(n, 5),
            sample_app.fragile_api.enqueue(n, 0.1),
        ]
    stored = {r[0]: r[1:] for r in db.execute(f"SELECT id, {fields} FROM pgjobs.jobs")}
    assert len(stored) == len(jobs) == 42
    for job in jobs:
        assert stored[job.id] == (
            job.task,
            job.queue,
            job.status.value,
            job.priority,
            job.max_attempts,
            job.dedup_key,
            job.task == "fragile_api",
            job.args,
            job.run_at,
        )
    assert {stored[j.id][1:5] for j in jobs[:6]} == {
        ("default", "pending", 0, 1),
        ("q2", "pending", 0, 1),
        ("default", "pending", 5, 4),
        ("default", "scheduled", 0, 1),
    }


def test_the_columns_an_insert_leaves_out_get_the_values_it_would_have_sent(
    db: psycopg.Connection[Any],
) -> None:
    """COPY and a one-job insert leave default values to the table: its defaults must be ours."""
    with db.transaction(force_rollback=True):
        db.execute("INSERT INTO pgjobs.jobs (id, task) VALUES (gen_random_uuid(), 'bare')")
        row = db.execute(
            "SELECT queue, status, priority, max_attempts, meta::text, limited,"
            " run_at = created_at FROM pgjobs.jobs WHERE task = 'bare'"
        ).fetchone()
    assert list(COLUMN_DEFAULTS) == [
        "queue",
        "status",
        "priority",
        "max_attempts",
        "meta",
        "limited",
    ]
    assert row == (*COLUMN_DEFAULTS.values(), True)


def test_a_copy_sends_names_in_the_connection_s_own_encoding(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    """Names outside ASCII arrive whole by COPY over UTF-8 and over a LATIN1 connection."""
    import pgjobs

    fresh = pgjobs.App(db_url)
    send = fresh.task(name="envoi_é", queue="file_ö")(sample_app.add.fn)
    try:
        ours = send.enqueue_many([(i, i) for i in range(150)])
        with psycopg.connect(db_url, client_encoding="LATIN1") as latin1:
            assert latin1.info.encoding == "iso8859-1"
            theirs = send.enqueue_many([(i, i) for i in range(150)], conn=latin1)
    finally:
        fresh.close()
    stored = db.execute("SELECT task, queue, count(*) FROM pgjobs.jobs GROUP BY 1, 2").fetchall()
    assert stored == [("envoi_é", "file_ö", 300)]
    assert {(j.task, j.queue) for j in [*ours, *theirs]} == {("envoi_é", "file_ö")}


def test_one_caller_at_a_time_keeps_the_pool_at_one_connection(db_url: str) -> None:
    """A second connection made at start-up would stay, and the two be handed out in turn."""
    import pgjobs

    fresh = pgjobs.App(db_url)
    one = fresh.task(name="one")(sample_app.add.fn)
    try:
        for i in range(5):
            one.enqueue(i, i)
        assert fresh.pool.get_stats()["pool_size"] == 1
    finally:
        fresh.close()


def test_one_connection_is_set_aside_between_calls_and_goes_back_to_the_pool_in_time(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pgjobs
    import pgjobs.db.driver

    monkeypatch.setattr(pgjobs.db.driver, "KEEP_FOR", 0.3)
    fresh = pgjobs.App(db_url)
    one = fresh.task(name="one")(sample_app.add.fn)
    try:
        for i in range(5):
            one.enqueue(i, i)
        assert fresh.pool.get_stats()["requests_num"] == 1  # one round through the pool
        (kept, _), *more = fresh.pool._aside
        assert not more and not kept.closed
        time.sleep(0.4)
        one.enqueue(5, 5)  # its last use: back to the pool after it
        assert fresh.pool._aside == []
        one.enqueue(6, 6)
        assert fresh.pool.get_stats()["requests_num"] == 2
    finally:
        fresh.close()
    assert kept.closed


def test_a_connection_set_aside_that_the_server_closed_is_replaced_without_an_error(
    db_url: str, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import pgjobs

    caplog.set_level(logging.INFO, logger="psycopg.pool")

    fresh = pgjobs.App(db_url)
    one = fresh.task(name="one")(sample_app.add.fn)
    try:
        first = one.enqueue(1, 1)
        pid = fresh.pool._aside[0][0].info.backend_pid
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 5
        while db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = one.enqueue(2, 2)
        assert fresh.pool._aside[0][0].info.backend_pid != pid
    finally:
        fresh.close()
    # Replaced by the pool's own check, which says so at INFO: nothing to warn of.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("failed check" in r.getMessage() for r in caplog.records)
    ids = {r[0] for r in db.execute("SELECT id FROM pgjobs.jobs WHERE task = 'one'")}
    assert ids == {first.id, second.id}


def run_together(threads: list[Any]) -> None:
    """Start the threads, then wait for all of them."""
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_a_connection_set_aside_never_keeps_another_caller_waiting(db_url: str) -> None:
    """With one connection in all, it serves whoever asks, at once, and no caller starves."""
    import threading

    import pgjobs

    fresh = pgjobs.App(db_url, pool_size=1, connect_timeout=3)
    one = fresh.task(name="one")(sample_app.add.fn)
    failures: list[BaseException] = []

    def enqueues() -> None:
        try:
            for i in range(100):
                one.enqueue(i, i)
        except BaseException as exc:
            failures.append(exc)

    def borrows() -> None:
        try:
            for _ in range(100):
                with fresh.connection() as conn:
                    conn.execute("SELECT 1")
        except BaseException as exc:
            failures.append(exc)

    try:
        one.enqueue(0, 0)
        assert fresh.pool._aside
        began = time.monotonic()
        with fresh.pool.connection() as conn:  # the one set aside, at once
            conn.execute("SELECT 1")
        with fresh.connection() as conn:
            conn.execute("SELECT 1")
        assert time.monotonic() - began < 1
        run_together([threading.Thread(target=f) for f in (enqueues, borrows, enqueues)])
    finally:
        fresh.close()
    assert failures == []  # a starved caller would have timed out after 3 s


def test_threads_enqueueing_at_once_never_share_a_connection(
    db_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import pgjobs
    from pgjobs.db import driver as _db

    in_use: dict[int, int] = {}
    shared: list[int] = []
    lock = threading.Lock()
    real = _db.run_pooled

    def watched(op: Any, conn: Any) -> Any:
        with lock:
            in_use[id(conn)] = in_use.get(id(conn), 0) + 1
            if in_use[id(conn)] > 1:
                shared.append(id(conn))
        try:
            time.sleep(0.001)  # widens the window in which a second user would show
            return real(op, conn)
        finally:
            with lock:
                in_use[id(conn)] -= 1

    monkeypatch.setattr(_db, "run_pooled", watched)
    fresh = pgjobs.App(db_url, pool_size=4)
    one = fresh.task(name="one")(sample_app.add.fn)
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def producer(n: int) -> None:
        start.wait()
        try:
            for i in range(50):
                one.enqueue(n, i)
        except BaseException as exc:
            failures.append(exc)

    try:
        run_together([threading.Thread(target=producer, args=(n,)) for n in range(8)])
    finally:
        fresh.close()
    assert failures == [] and shared == []
    assert len(in_use) > 1  # several connections were in use at once
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE task = 'one'") == 400


def test_a_pool_connection_keeps_one_cursor_but_no_result_of_many_rows(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    """Enqueues reuse one cursor; a listing's rows are let go; a failed statement spoils nothing."""
    import pgjobs
    from pgjobs.db import driver as _db

    def bad_op() -> _db.Op:
        yield "get_job", {"id": "not a uuid"}, "one"

    fresh = pgjobs.App(db_url, pool_size=1)
    one = fresh.task(name="one")(sample_app.add.fn)
    try:
        one.enqueue(0, 0)
        with fresh.pool.connection() as conn:
            assert isinstance(conn, _db.PoolConnection)
            kept = conn.ops_cursor()
        for i in range(1, 4):
            one.enqueue(i, i)
        with fresh.pool.connection() as conn:
            assert conn.ops_cursor() is kept and not kept.closed
        # A connection passed with conn= is the caller's, who may use it meanwhile:
        # never its kept cursor, even when it came from the App's pool.
        last = kept.pgresult
        with fresh.connection() as conn:
            one.enqueue(4, 4, conn=conn)
            assert conn.ops_cursor() is kept and kept.pgresult is last
        # A page of several jobs is not kept alive in the idle connection.
        assert len(fresh.jobs(task="one").jobs) == 5
        assert kept.closed
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            fresh.database.run(bad_op())
        assert one.enqueue(9, 9).refresh().args == [9, 9]
        assert fresh.pool.get_stats()["pool_size"] == 1
    finally:
        fresh.close()

    async def main() -> None:
        again = pgjobs.App(db_url, pool_size=1)
        two = again.task(name="two")(sample_app.aadd.fn)
        try:
            await two.aenqueue(0, 0)
            pool = await again.database.apool()
            async with pool.connection() as conn:
                assert isinstance(conn, _db.AsyncPoolConnection)
                akept = conn.ops_cursor()
            await two.aenqueue(1, 1)
            async with pool.connection() as conn:
                assert conn.ops_cursor() is akept and not akept.closed
            assert len((await again.ajobs(task="two")).jobs) == 2
            assert akept.closed
        finally:
            await again.aclose()

    asyncio.run(main())


def test_the_jobs_of_a_large_batch_stay_independent_objects(app: Any) -> None:
    jobs = sample_app.add.enqueue_many([(i, i) for i in range(300)])
    fields_set = set(jobs[1].model_fields_set)
    moved = jobs[0].model_copy(update={"queue": "elsewhere", "workflow_id": uuid.uuid4()})
    assert moved.queue == "elsewhere" and moved.refresh().queue == "default"
    assert "workflow_id" in moved.model_fields_set and "workflow_id" not in fields_set
    assert [j.queue for j in jobs] == ["default"] * 300
    with pytest.raises(ValidationError, match="frozen"):
        jobs[0].queue = "elsewhere"
    assert jobs[1].model_fields_set == fields_set and "queue" in fields_set
    # Every job still reaches the App that made it, whichever chunk it came in.
    edge = COPY_CHUNK
    picked = [0, edge - 1, edge, 299]
    assert [jobs[i].refresh().args[0] for i in picked] == picked


@pytest.mark.parametrize("size", [5, 300], ids=["insert", "copy"])
def test_enqueue_many_returns_a_job_list_that_reads_as_a_list(app: Any, size: int) -> None:
    import copy

    from pydantic import BaseModel

    from pgjobs import Job, JobList

    jobs = sample_app.add.enqueue_many([(i, i) for i in range(size)])
    assert isinstance(jobs, JobList) and len(jobs) == size
    ids = jobs.ids
    assert len(set(ids)) == size and all(isinstance(i, uuid.UUID) for i in ids)
    assert [j.id for j in jobs] == ids and [j.args for j in jobs] == [[i, i] for i in range(size)]
    assert jobs[0] is jobs[0] and jobs[-1] is jobs[size - 1] and jobs[-1].args == [size - 1] * 2
    assert jobs[1:3] == [jobs[1], jobs[2]] and jobs[::-1][0] is jobs[-1]
    with pytest.raises(IndexError):
        jobs[size]
    assert jobs == list(jobs) and list(jobs) == jobs and jobs != list(jobs)[1:]
    more = jobs[:1]
    assert jobs + more == [*jobs, jobs[0]] and more + jobs == [jobs[0], *jobs]
    assert jobs[2] in jobs and jobs.index(jobs[2]) == 2
    # A copy (or a pickle) holds the jobs themselves, not the recipe for them.
    copied = copy.copy(jobs)
    assert copied == jobs and copied._make is None and repr(jobs).startswith("JobList([Job(")

    class Response(BaseModel):
        jobs: list[Job]

    assert Response(jobs=jobs).jobs == list(jobs)  # as a web framework's response model reads it


def test_a_large_batch_makes_no_object_per_job_until_its_jobs_are_read(app: Any) -> None:
    """A thousand Jobs, with their UUIDs and lists, would set off collections that cost more
    than the rest of the call: the result holds only integers and text until it is read."""
    import gc

    items = [(i, i) for i in range(1000)]
    sample_app.add.enqueue_many(items)  # connections and caches made once
    gc.collect()
    before = len(gc.get_objects())
    jobs = sample_app.add.enqueue_many(items)
    made = len(gc.get_objects()) - before
    assert made < 100, made
    assert [j.args for j in jobs] == [list(i) for i in items]  # made when read
    assert len(gc.get_objects()) - before >= 3 * len(items)


def test_a_large_batch_keeps_tabs_line_ends_and_backslashes_in_every_text_column(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    """COPY's text format gives these characters a meaning: each must arrive as it was sent."""
    from pgjobs import App

    odd = "tab\there\\, new\nline, \r\n, \\N, \\., é, ☃"
    local = App(db_url)
    try:

        @local.task(name=f"store {odd}")
        def keep(text: str, *, note: str = "") -> str:
            return text

        texts = [f"{i} {odd}" for i in range(300)] + ["\\", "\\\\t", "\t", "\n"]
        items = [((t,), {"note": t[::-1]}) for t in texts]
        odd_queue = keep.options(queue=f"q {odd}")

        # Both drivers of the one COPY operation.
        async def in_async() -> Sequence[Any]:
            made = await odd_queue.aenqueue_many(items)
            await local.aclose()
            return made

        jobs = odd_queue.enqueue_many(items) + asyncio.run(in_async())
        texts += texts
        stored = {
            r[0]: r[1:]
            for r in db.execute(
                "SELECT id, task, queue, args, kwargs FROM pgjobs.jobs WHERE id = ANY(%s)",
                ([j.id for j in jobs],),
            )
        }
        assert len(stored) == len(texts) == len(jobs)
        for text, job in zip(texts, jobs, strict=True):
            assert stored[job.id] == (f"store {odd}", f"q {odd}", [text], {"note": text[::-1]})
            assert (job.args, job.kwargs) == ([text], {"note": text[::-1]})
    finally:
        local.close()


def test_enqueue_many_takes_tuples_dicts_and_args_kwargs_pairs(app: Any) -> None:
    jobs = sample_app.add.enqueue_many([(1, 2), {"a": 3, "b": 4}, ((5,), {"b": 6})])
    assert [(j.args, j.kwargs) for j in jobs] == [
        ([1, 2], {}),
        ([], {"a": 3, "b": 4}),
        ([5], {"b": 6}),
    ]


def test_options_set_queue_priority_retries_and_a_delay(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.add.options(queue="urgent", priority=7, retries=4, delay=3600).enqueue(1, 1)
    assert job.status is Status.SCHEDULED
    row = db.execute(
        "SELECT queue, priority, max_attempts, status, run_at - created_at FROM pgjobs.jobs"
    ).fetchone()
    assert row is not None
    assert row[:4] == ("urgent", 7, 5, "scheduled")
    assert timedelta(seconds=3590) < row[4] < timedelta(seconds=3610)
    # options() does not change the task's own defaults.
    plain = sample_app.add.enqueue(1, 1)
    assert plain.queue == "default" and plain.priority == 0 and plain.max_attempts == 1


def test_a_delay_counts_from_each_enqueue_of_the_same_options(app: Any) -> None:
    later = sample_app.add.options(delay=3600)
    first = later.enqueue(1, 1)
    time.sleep(0.05)
    second = later.enqueue(1, 1)
    assert second.run_at - first.run_at >= timedelta(seconds=0.05)


def test_run_at_schedules_a_job_for_a_given_time(app: Any) -> None:
    when = datetime.now(UTC) + timedelta(days=1)
    job = sample_app.add.options(run_at=when).enqueue(1, 1)
    assert job.status is Status.SCHEDULED
    assert abs(app.get_job(job.id).run_at - when) < timedelta(milliseconds=1)


def test_delay_is_the_celery_spelling_of_enqueue(app: Any) -> None:
    job = sample_app.add.delay(1, 2)
    assert app.get_job(job.id).args == [1, 2]


def test_app_enqueue_by_name_uses_the_tasks_defaults(app: Any) -> None:
    job = app.enqueue("elsewhere")
    assert job.queue == "other"
    job = app.enqueue("add", [1], {"b": 2}, queue="q2", priority=3)
    assert (job.queue, job.priority, job.args, job.kwargs) == ("q2", 3, [1], {"b": 2})


def test_arguments_are_validated_and_stored_as_json_then_restored_as_declared_types(
    app: Any,
) -> None:
    when = datetime(2026, 5, 17, 9, 30, tzinfo=UTC)
    job = sample_app.typed.enqueue(
        when, sample_app.Address(street="1 Main St", city="Lyon"), tags=("a", "b")
    )
    assert job.args[0] == "2026-05-17T09:30:00Z"
    assert job.args[1] == {"street": "1 Main St", "city": "Lyon"}
    assert job.kwargs == {"tags": ["a", "b"]}
    # A dict for the model and an ISO string for the datetime validate too.
    again = sample_app.typed.enqueue("2026-01-02T03:04:05+00:00", {"street": "x", "city": "y"}, [])
    assert again.args[0] == "2026-01-02T03:04:05Z"


def test_a_float_argument_is_stored_as_given_an_int_as_a_float_and_infinity_refused(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    import pgjobs
    from pgjobs.client.encoding import Signature

    own = pgjobs.App(app.url)

    @own.task
    def scale(factor: float, label: str = "") -> float:
        return factor

    # A float of exactly that type skips pydantic; each value must come out as
    # pydantic's own validation and JSON would have made it.
    signature = Signature("scale", scale.fn)
    assert signature.exact_by_position == ((float,), (str,))
    for value in (1.5, -0.0, 1e308, 5e-324, 0.1 + 0.2, 2, True, "3.5"):
        fast = signature._walk((value,), {}, True)
        slow = ([signature.convert(signature.positional[0], "factor", value, True)], {})
        assert fast == slow and type(fast[0][0]) is type(slow[0][0]), value
    try:
        stored = [scale.enqueue(v) for v in (0.1 + 0.2, 2)]
        rows = dict(db.execute("SELECT id, args::text FROM pgjobs.jobs").fetchall())
        assert [rows[j.id] for j in stored] == ["[0.30000000000000004]", "[2.0]"]
        assert [own.get_job(j.id).args for j in stored] == [[0.30000000000000004], [2.0]]
        for bad in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(pgjobs.SerializationError, match="cannot be stored as JSON"):
                scale.enqueue(bad)
        assert count(db) == 2  # the refused calls inserted nothing
    finally:
        own.close()


def test_variadic_parameters_are_validated_per_item(app: Any) -> None:
    job = sample_app.variadic.enqueue(1, 2, 3, colour="red")
    assert (job.args, job.kwargs) == ([1, 2, 3], {"colour": "red"})


def test_a_dedup_key_returns_the_existing_job(app: Any, db: psycopg.Connection[Any]) -> None:
    first = sample_app.add.options(dedup_key="order-42").enqueue(1, 1)
    second = sample_app.add.options(dedup_key="order-42").enqueue(2, 2)
    assert second.id == first.id and second.deduplicated and not first.deduplicated
    assert second.args == [1, 1]
    assert count(db) == 1
    assert count(db, "SELECT count(*) FROM pgjobs.dedup_keys WHERE key = 'order-42'") == 1
    assert second.idempotency_key == "order-42"


def test_async_twins_enqueue_and_read(app: Any, db: psycopg.Connection[Any]) -> None:
    async def main() -> tuple[Any, ...]:
        one = await sample_app.aadd.aenqueue(1, 2)
        many = await sample_app.aadd.aenqueue_many([(i, i) for i in range(10)])
        by_name = await app.aenqueue("add", [5, 5])
        fetched = await app.aget_job(one.id)
        page = await app.ajobs(task="aadd")
        queues = await app.aqueues()
        await app.aclose()
        return one, many, by_name, fetched, page, queues

    one, many, by_name, fetched, page, queues = asyncio.run(main())
    assert fetched.id == one.id and fetched.status is Status.PENDING
    assert len(many) == 10 and by_name.task == "add"
    assert len(page.jobs) == 11
    assert {q.queue: q.depth for q in queues} == {"default": 12}
    assert count(db) == 12


JSONB_VALUES = [
    [1, -2, 3.5, 12345678901234567890123, True, False, None],
    {"nested": {"list": [[], {}, [{"a": [1]}]]}, "": "empty key"},
    'quotes " and \\ backslashes, \t tabs, \n newlines, \u0001 controls',
    "accents é, CJK 漢字, emoji 😀 (beyond U+FFFF)",
    "",
    0,
    None,
    {"b": 1, "a": 2, "spaced out": " x "},
]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_pgjobs_reads_jsonb_as_json_loads_reads_postgres_text(
    db: psycopg.Connection[Any], binary: bool
) -> None:
    """The scanner-only jsonb loader agrees with json.loads on what Postgres prints."""
    from pgjobs.db.driver import ADAPTERS

    with psycopg.connect(db.info.dsn, autocommit=True, context=ADAPTERS) as conn:
        # Numbers Postgres prints otherwise than they went in (1e+300 in full, -0.0 as 0.0).
        for value in [*JSONB_VALUES, [1e300, -0.0, 1.5e-7]]:
            text = json.dumps(value)
            got, printed = conn.execute(
                "SELECT %s::jsonb, %s::jsonb::text", (text, text), binary=binary
            ).fetchone()
            assert got == json.loads(printed)
            assert repr(got) == repr(json.loads(printed))


def test_a_worker_and_the_app_read_back_the_arguments_a_job_was_given(app: Any) -> None:
    """Both read jsonb with pgjobs' own loader: the task gets the values, the App its result."""
    from tests.support.workers import drain

    job = sample_app.store.enqueue({"values": JSONB_VALUES})
    assert app.get_job(job.id).args == [{"values": JSONB_VALUES}]
    drain(app)
    done = app.get_job(job.id)
    assert done.status is Status.SUCCEEDED
    assert done.result == {"values": JSONB_VALUES}
