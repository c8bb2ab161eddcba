"""Outbox-style enqueue: the job commits or rolls back with the caller's transaction,
and workers are woken only by a commit."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from pgjobs import chain
from tests import sample_app
from tests.support.common import count, wait_for


class Listener:
    """A LISTEN on the channel workers listen on: what it hears is what wakes them."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN pgjobs")

    def heard(self, within: float) -> list[str]:
        return [n.payload for n in self.conn.notifies(timeout=within)]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def listener(db_url: str, app: Any) -> Iterator[Listener]:
    lis = Listener(db_url)
    yield lis
    lis.close()


def test_psycopg_rollback_leaves_no_job_and_wakes_nobody(
    db_url: str, db: psycopg.Connection[Any], listener: Listener
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TEMP TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (1)")
        job = sample_app.add.enqueue(1, 2, conn=conn)
        sample_app.add.enqueue_many([(i, i) for i in range(10)], conn=conn)
        # Inside the transaction the job is there; outside it is not, yet.
        assert count(conn) == 11
        assert count(db) == 0
        conn.rollback()
    assert count(db) == 0
    assert listener.heard(within=0.5) == []
    with pytest.raises(Exception, match="no job"):
        sample_app.app.get_job(job.id)


def test_psycopg_commit_creates_the_job_and_one_notification(
    db_url: str, db: psycopg.Connection[Any], listener: Listener
) -> None:
    with psycopg.connect(db_url) as conn:
        job = sample_app.add.enqueue(1, 2, conn=conn)
        sample_app.add.enqueue_many([(i, i) for i in range(100)], conn=conn)
        assert listener.heard(within=0.3) == []  # nothing before the commit
        conn.commit()
    assert count(db) == 101
    assert sample_app.app.get_job(job.id).status.value == "pending"
    # One notification per queue per statement, however many rows it inserted.
    assert listener.heard(within=1.0) == ["default"]


def _insert_triggers(conn: psycopg.Connection[Any]) -> int:
    """Triggers that run on inserts into pgjobs.jobs (tgtype bit 4 is INSERT)."""
    return count(
        conn,
        "SELECT count(*) FROM pg_trigger"
        " WHERE tgrelid = 'pgjobs.jobs'::regclass AND tgtype & 4 <> 0",
    )


def test_pgjobs_inserts_notify_by_themselves_and_a_plain_sql_insert_by_its_own_notify(
    db_url: str, db: psycopg.Connection[Any], listener: Listener
) -> None:
    assert _insert_triggers(db) == 0  # no insert of a job pays for one (revision 0010)
    with psycopg.connect(db_url) as conn:
        sample_app.add.enqueue(1, 2, conn=conn)
        sample_app.add.enqueue_many([(i, i) for i in range(5)], conn=conn)  # INSERT ... unnest
        sample_app.elsewhere.enqueue_many([()] * 150, conn=conn)  # COPY
        sample_app.arecord.options(delay=60).enqueue(1, conn=conn)  # scheduled: no one to wake
        chain(sample_app.add.s(1, 1), sample_app.inc.s()).enqueue(conn=conn)
        conn.commit()
        assert sorted(listener.heard(within=1.0)) == ["default", "other"]
        assert count(db) == 1 + 5 + 150 + 1 + 2

        # Another program's plain INSERT wakes no one by itself; its NOTIFY does.
        insert = "INSERT INTO pgjobs.jobs (id, task, queue) VALUES (%s, 'add', %s)"
        conn.execute(insert, (uuid.uuid4(), "raw-quiet"))
        conn.commit()
        assert listener.heard(within=0.5) == []
        conn.execute(insert, (uuid.uuid4(), "raw"))
        conn.execute("NOTIFY pgjobs, 'raw'")
        conn.commit()
    assert listener.heard(within=1.0) == ["raw"]
    assert count(db) == 1 + 5 + 150 + 1 + 2 + 2


def test_a_job_inserted_with_plain_sql_and_no_notify_runs_at_the_next_poll(
    db_url: str, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    spawn_worker("--poll-interval", "0.5")
    time.sleep(0.3)  # past the worker's first look at the queue
    job_id = uuid.uuid4()
    db.execute(
        "INSERT INTO pgjobs.jobs (id, task, args, max_attempts) VALUES (%s, 'record', '[7]', 1)",
        (job_id,),
    )
    wait_for(lambda: count(db, "SELECT count(*) FROM test_runs") == 1, timeout=5.0)
    assert db.execute("SELECT job_id, n FROM test_runs").fetchone() == (job_id, 7)
    wait_for(lambda: sample_app.app.get_job(job_id).status.value == "succeeded", timeout=5.0)


def test_psycopg_autocommit_connection_commits_at_once(
    db_url: str, db: psycopg.Connection[Any], listener: Listener
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        sample_app.add.options(dedup_key="k").enqueue(1, 2, conn=conn)
    assert count(db) == 1
    assert listener.heard(within=1.0) == ["default"]


def test_async_psycopg_connection(
    db_url: str, db: psycopg.Connection[Any], listener: Listener
) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            await sample_app.aadd.aenqueue(1, 2, conn=conn)
            await conn.rollback()
            assert count(db) == 0
            await sample_app.aadd.aenqueue_many([(1, 2), (3, 4)], conn=conn)
            await conn.commit()

    asyncio.run(main())
    assert count(db) == 2
    assert listener.heard(within=1.0) == ["default"]


def _engine(url: str) -> sa.Engine:
    return sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url))


def test_sqlalchemy_connection_and_session(
    db_url: str, db: psycopg.Connection[Any], listener: Listener
) -> None:
    engine = _engine(db_url)
    with engine.connect() as conn:
        sample_app.add.enqueue(1, 2, conn=conn)
        conn.rollback()
    assert count(db) == 0
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT 1"))
        sample_app.add.enqueue(1, 2, conn=conn)
    assert count(db) == 1
    with Session(engine) as session:
        sample_app.add.enqueue_many([(1, 1), (2, 2)], conn=session)
        session.rollback()
    assert count(db) == 1
    with Session(engine) as session, session.begin():
        sample_app.add.enqueue(3, 3, conn=session)
    assert count(db) == 2
    assert listener.heard(within=1.0) == ["default", "default"]
    engine.dispose()


def test_sqlalchemy_async_session(db_url: str, db: psycopg.Connection[Any]) -> None:
    async def main() -> None:
        engine = create_async_engine(
            "postgresql+psycopg://",
            async_creator=lambda: psycopg.AsyncConnection.connect(db_url),
        )
        async with AsyncSession(engine) as session:
            await sample_app.aadd.aenqueue(1, 2, conn=session)
            await session.rollback()
        async with AsyncSession(engine) as session:
            await sample_app.aadd.aenqueue(1, 2, conn=session)
            await session.commit()
        await engine.dispose()

    asyncio.run(main())
    assert count(db) == 1


def test_a_sync_connection_for_an_async_call_is_a_clear_error(db_url: str, app: Any) -> None:
    from pgjobs import ConfigurationError

    with psycopg.connect(db_url) as conn, pytest.raises(ConfigurationError, match="use enqueue"):
        asyncio.run(sample_app.aadd.aenqueue(1, 2, conn=conn))


def test_an_idle_worker_with_a_60s_poll_starts_a_committed_job_within_2s(
    db_url: str, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    spawn_worker("--poll-interval", "60")
    time.sleep(0.3)  # past the worker's first look at the queue

    with psycopg.connect(db_url) as conn:
        rolled_back = sample_app.record.enqueue(1, conn=conn)
        conn.rollback()
    time.sleep(1.0)
    assert count(db) == 0
    assert count(db, "SELECT count(*) FROM test_runs") == 0

    with psycopg.connect(db_url) as conn:
        job = sample_app.record.enqueue(2, conn=conn)
        conn.commit()
    committed_at = time.monotonic()
    wait_for(lambda: count(db, "SELECT count(*) FROM test_runs") == 1, timeout=2.0)
    assert time.monotonic() - committed_at < 2.0
    row = db.execute("SELECT job_id, n FROM test_runs").fetchone()
    assert row == (job.id, 2)
    assert rolled_back.id != job.id


def test_a_bad_item_in_a_large_batch_leaves_the_callers_transaction_usable(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    from pgjobs.core.errors import InvalidArguments

    items: list[Any] = [(i, i) for i in range(300)]
    items[150] = (1, "not a number")
    with psycopg.connect(db_url) as conn:
        kept = sample_app.add.enqueue(1, 2, conn=conn)
        with pytest.raises(InvalidArguments, match=r"item 150: task 'add': argument 'b'"):
            sample_app.add.enqueue_many(items, conn=conn)
        # Validated before the COPY began: the transaction is intact and commits.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        sample_app.add.enqueue_many([(i, i) for i in range(200)], conn=conn)
        conn.commit()
    assert count(db) == 201
    assert sample_app.app.get_job(kept.id).args == [1, 2]


def test_a_bad_item_streamed_into_copy_inserts_nothing(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    from pgjobs.core.errors import InvalidArguments

    items: list[Any] = [(i, i) for i in range(3000)]
    items[2999] = (1, "not a number")
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(InvalidArguments, match=r"item 2999: task 'add': argument 'b'"):
            sample_app.add.enqueue_many(items, conn=conn)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection is fine
    with pytest.raises(InvalidArguments, match=r"item 2999"):
        sample_app.add.enqueue_many(items)  # the App's own pool: the same
    assert count(db) == 0
    assert len(sample_app.add.enqueue_many(items[:2999])) == 2999
