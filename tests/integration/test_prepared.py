"""The one-job enqueue's statement, prepared on the App's pooled connections (db/prepared.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs.db import prepared as _prepared
from tests import sample_app
from tests.support.common import count

OURS = (
    "SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'pgjobs\\_%' ORDER BY name"
)


@pytest.fixture
def scratch(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the test database with an empty table of its own."""
    db.execute("DROP TABLE IF EXISTS prepared_t")
    db.execute("CREATE TABLE prepared_t (a int PRIMARY KEY, at timestamptz DEFAULT now())")
    try:
        yield db
    finally:
        db.execute("DROP TABLE IF EXISTS prepared_t")


@pytest.fixture
def one(db_url: str, db: psycopg.Connection[Any]) -> Iterator[Any]:
    """A task of an App of its own with one pooled connection, closed after the test."""
    import pgjobs

    fresh = pgjobs.App(db_url, pool_size=1)
    try:
        yield fresh.task(name="one")(sample_app.add.fn)
    finally:
        fresh.close()


INSERT_A = "INSERT INTO prepared_t (a) SELECT %s::int RETURNING a"


@pytest.fixture
def one_row(scratch: psycopg.Connection[Any]) -> _prepared.Statements:
    """The scratch connection's statements, after INSERT_A of a = 1 prepared and run."""
    s = _prepared.Statements(scratch)
    run(scratch, s, INSERT_A, 1)
    return s


def run(conn: psycopg.Connection[Any], s: _prepared.Statements, query: str, *values: Any) -> Any:
    with conn.lock:
        return conn.wait(_prepared.run(s, query, values))


def test_placeholders_become_numbered_and_any_other_percent_is_refused() -> None:
    assert _prepared.placeholders("SELECT %s::int, %s::text") == "SELECT $1::int, $2::text"
    assert _prepared.placeholders("SELECT 1") == "SELECT 1"
    with pytest.raises(ValueError, match="only %s placeholders"):
        _prepared.placeholders("SELECT %(a)s")
    with pytest.raises(ValueError, match="only %s placeholders"):
        _prepared.placeholders("SELECT 5 %% 2, %s")


def test_an_enqueue_prepares_its_statement_once_and_returns_what_the_row_holds(
    one: Any, db: psycopg.Connection[Any]
) -> None:
    jobs = [one.enqueue(i, i) for i in range(5)]
    jobs.append(one.options(priority=3, queue="q2").enqueue(9, 9))
    kept = one.app.pool._aside[0][0]
    prepared = kept.execute(OURS).fetchall()
    # One statement for the jobs with every default, one for the job that sets two columns.
    assert len(prepared) == 2
    assert all("INSERT INTO pgjobs.jobs" in text for _, text in prepared)
    rows = {
        r[0]: r[1:]
        for r in db.execute("SELECT id, created_at, priority, queue, args FROM pgjobs.jobs")
    }
    assert len(rows) == 6
    for job in jobs:
        created_at, priority, queue, args = rows[job.id]
        assert (job.created_at, job.priority, job.queue, job.args) == (
            created_at,
            priority,
            queue,
            args,
        )
    assert jobs[-1].priority == 3 and jobs[-1].queue == "q2"


def test_an_enqueue_after_other_code_discarded_the_connections_statements_still_inserts(
    one: Any, db: psycopg.Connection[Any]
) -> None:
    first = one.enqueue(1, 1)
    with one.app.connection() as conn:  # the same, only connection
        conn.execute("DISCARD ALL")
        assert conn.execute(OURS).fetchall() == []
    second = one.enqueue(2, 2)
    third = one.enqueue(3, 3)
    kept = one.app.pool._aside[0][0]
    assert len(kept.execute(OURS).fetchall()) == 1
    ids = {r[0] for r in db.execute("SELECT id FROM pgjobs.jobs WHERE task = 'one'")}
    assert ids == {first.id, second.id, third.id}


def test_a_statement_whose_result_type_changed_is_prepared_again(
    scratch: psycopg.Connection[Any],
) -> None:
    s = _prepared.Statements(scratch)
    query = "INSERT INTO prepared_t (a) SELECT %s::int RETURNING a, at"
    assert [r["a"] for r in run(scratch, s, query, 1)] == [1]
    scratch.execute("ALTER TABLE prepared_t ALTER COLUMN a TYPE bigint")
    # The server refuses the old plan ("cached plan must not change result
    # type"); outside a transaction the statement is prepared again and runs.
    (row,) = run(scratch, s, query, 2)
    assert row["a"] == 2 and isinstance(row["at"], dt.datetime)
    assert count(scratch, "SELECT count(*) FROM prepared_t") == 2
    names = [r[0] for r in scratch.execute(OURS)]
    assert len(names) == 1  # the stale one was deallocated


def test_inside_a_transaction_a_lost_statement_raises_and_nothing_is_written(
    scratch: psycopg.Connection[Any], one_row: _prepared.Statements
) -> None:
    s, query = one_row, INSERT_A
    with pytest.raises(psycopg.errors.InvalidSqlStatementName), scratch.transaction():
        scratch.execute("INSERT INTO prepared_t (a) VALUES (2)")
        scratch.execute("DEALLOCATE ALL")
        run(scratch, s, query, 3)  # retrying here would run in an aborted transaction
    assert [r[0] for r in scratch.execute("SELECT a FROM prepared_t")] == [1]
    assert run(scratch, s, query, 4) == [{"a": 4}]  # prepared again once outside


def test_a_failing_statement_raises_psycopgs_own_error_with_the_servers_message(
    scratch: psycopg.Connection[Any], one_row: _prepared.Statements
) -> None:
    s, query = one_row, INSERT_A
    with pytest.raises(psycopg.errors.UniqueViolation, match="prepared_t_pkey"):
        run(scratch, s, query, 1)
    with pytest.raises(psycopg.errors.UndefinedTable, match="no_such_table"):
        run(scratch, s, "INSERT INTO no_such_table SELECT %s::int", 1)
    assert [r[0] for r in scratch.execute("SELECT a FROM prepared_t")] == [1]
    assert run(scratch, s, query, 2) == [{"a": 2}]  # the connection is still usable


def test_values_of_different_types_get_statements_of_their_own(
    scratch: psycopg.Connection[Any],
) -> None:
    s = _prepared.Statements(scratch)
    query = "INSERT INTO prepared_t (a) SELECT %s::int RETURNING a"
    # 5 travels as a smallint, 70,000 as an integer: the types are part of the statement.
    assert run(scratch, s, query, 5) == [{"a": 5}]
    assert run(scratch, s, query, 70_000) == [{"a": 70_000}]
    assert run(scratch, s, query, 6) == [{"a": 6}]
    assert len(scratch.execute(OURS).fetchall()) == 2


def test_past_the_limit_the_oldest_statement_is_deallocated(
    scratch: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_prepared, "MAX_PREPARED", 3)
    s = _prepared.Statements(scratch)
    for i in range(5):
        assert run(scratch, s, f"SELECT %s::int + {i} AS n", 1) == [{"n": 1 + i}]
    texts = [t for _, t in scratch.execute(OURS)]
    assert len(texts) == 3 and all(f"+ {i}" not in t for t in texts for i in (0, 1))
    assert run(scratch, s, "SELECT %s::int + 0 AS n", 1) == [{"n": 1}]  # prepared again


def test_a_callers_connection_is_never_given_statements_of_ours(
    one: Any, db_url: str, db: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i in range(3):
            one.enqueue(i, i, conn=conn)
        assert conn.execute(OURS).fetchall() == []
    # A connection of the App's own pool, lent to the caller, in a pipeline.
    with one.app.connection() as conn, conn.pipeline():
        job = one.enqueue(7, 7, conn=conn)
    assert one.app.get_job(job.id).args == [7, 7]
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE task = 'one'") == 4


def test_an_async_enqueue_prepares_its_statement_on_the_async_pool(
    one: Any, db: psycopg.Connection[Any]
) -> None:
    async def main() -> tuple[list[uuid.UUID], list[Any]]:
        ids = [(await one.aenqueue(i, i)).id for i in range(4)]
        async with one.app.aconnection() as conn:
            cur = await conn.execute(OURS)
            return ids, await cur.fetchall()

    ids, prepared = asyncio.run(main())
    assert len(prepared) == 1 and "INSERT INTO pgjobs.jobs" in prepared[0][1]
    found = {r[0] for r in db.execute("SELECT id FROM pgjobs.jobs WHERE task = 'one'")}
    assert found == set(ids)


PSYCOPGS = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '\\_pg3\\_%'"


def test_a_dedup_enqueue_after_a_rolled_back_operation_still_inserts(
    one: Any, db: psycopg.Connection[Any]
) -> None:
    first = one.enqueue(1, 1)
    for _ in range(6):  # psycopg's cursor prepares get_job from its fifth run
        one.app.get_job(first.id)
    keyed = one.options(dedup_key="k1").enqueue(1, 1)  # our dedup form of the insert, prepared
    with one.app.connection() as conn:  # the same, only connection
        assert count(conn, PSYCOPGS) >= 1 and len(conn.execute(OURS).fetchall()) == 2
    # Refused inside the App's own transaction: the rollback makes psycopg send
    # DEALLOCATE ALL, which drops our statements with its own.
    with pytest.raises(pgjobs.IllegalTransition, match="only failed or cancelled"):
        one.app.replay(first.id)
    # The next dedup enqueue runs its insert inside a transaction, where a lost
    # statement could not be retried: it must know to prepare it again.
    again = one.options(dedup_key="k2").enqueue(2, 2)
    same = one.options(dedup_key="k1").enqueue(1, 1)
    assert same.id == keyed.id and same.deduplicated and not again.deduplicated
    ids = {r[0] for r in db.execute("SELECT id FROM pgjobs.jobs WHERE task = 'one'")}
    assert ids == {first.id, keyed.id, again.id}


def test_an_async_dedup_enqueue_after_a_rolled_back_operation_still_inserts(
    one: Any, db: psycopg.Connection[Any]
) -> None:
    async def main() -> list[Any]:
        first = await one.aenqueue(1, 1)
        for _ in range(6):
            await one.app.aget_job(first.id)
        keyed = await one.options(dedup_key="k1").aenqueue(1, 1)
        async with one.app.aconnection() as conn:
            cur = await conn.execute(PSYCOPGS)
            assert (await cur.fetchone()) >= (1,)
        with pytest.raises(pgjobs.IllegalTransition, match="only failed or cancelled"):
            await one.app.areplay(first.id)
        again = await one.options(dedup_key="k2").aenqueue(2, 2)
        return [first, keyed, again]

    made = asyncio.run(main())
    ids = {r[0] for r in db.execute("SELECT id FROM pgjobs.jobs WHERE task = 'one'")}
    assert ids == {j.id for j in made}
