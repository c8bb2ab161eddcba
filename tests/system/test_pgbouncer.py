"""pgjobs behind a real transaction-pooling PgBouncer (Debian's 1.18: no prepared statements
followed across server connections), in pooler="transaction" mode.

Each test starts a PgBouncer of its own (tests/support/pgbouncer.py) in front of the test
database, with a few server connections that its clients share. A client is moved to
another server connection by holding the one it had in a transaction of another client
(`hold`): what a statement left on a server connection is then not where the next one runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as psql
from psycopg_pool import AsyncConnectionPool

import pgjobs
from pgjobs.client.app import App
from pgjobs.core.errors import ConfigurationError
from pgjobs.core.jobs import Status
from pgjobs.maintenance import Maintenance
from pgjobs.maintenance.leader import LOCK_KEY
from tests.pooler_app import make_app, make_limited_app
from tests.support.common import ROOT, count, wait_for
from tests.support.pgbouncer import PgBouncer
from tests.support.workers import WorkerProcess

# A PgBouncer process of the test's own, as a private cluster is: a system test.
pytestmark = pytest.mark.system

#: PgBouncer's server connections per database: fewer than the clients, which share them.
POOL_SIZE = 4
APP = "tests.pooler_app:app"
LIMITED = "tests.pooler_app:limited_app"

#: What a server connection's session must not hold after pgjobs used it in pooler mode.
SESSION_STATE = """
SELECT pg_backend_pid() AS pid,
       (SELECT count(*) FROM pg_prepared_statements) AS prepared,
       (SELECT count(*) FROM pg_listening_channels()) AS listening,
       (SELECT count(*) FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks,
       (SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM pg_settings
        WHERE source = 'session'
          AND name IN ('jit', 'plan_cache_mode', 'statement_timeout')) AS settings
"""


@pytest.fixture
def bouncer(db_url: str) -> Iterator[PgBouncer]:
    b = PgBouncer(db_url, pool_size=POOL_SIZE)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def pooled_url(bouncer: PgBouncer, db_url: str) -> str:
    """The test database through PgBouncer."""
    return bouncer.url(db_url)


@contextlib.contextmanager
def hold(url: str) -> Iterator[int]:
    """Hold one server connection of PgBouncer in a transaction; its backend pid."""
    with psycopg.connect(url, prepare_threshold=None) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        yield int(row[0])
        conn.rollback()


def server_sessions(url: str) -> list[dict[str, Any]]:
    """SESSION_STATE of every server connection PgBouncer has for the database: as many
    clients as its pool holds, each in a transaction, so each gets another."""
    conns = [psycopg.connect(url, prepare_threshold=None) for _ in range(POOL_SIZE)]
    try:
        rows = []
        for c in conns:
            with c.cursor(row_factory=psycopg.rows.dict_row) as cur:
                cur.execute(SESSION_STATE)
                row = cur.fetchone()
                assert row is not None
                rows.append(row)
        return rows
    finally:
        for c in conns:
            c.close()


def assert_no_session_state(url: str) -> None:
    sessions = server_sessions(url)
    assert len({s["pid"] for s in sessions}) == POOL_SIZE
    for s in sessions:
        assert (s["prepared"], s["listening"], s["advisory_locks"], s["settings"]) == (
            0,
            0,
            0,
            [],
        ), s


def spawn_pooled(
    spawn_worker: Callable[..., WorkerProcess],
    url: str,
    *args: str,
    app: str = APP,
) -> WorkerProcess:
    return spawn_worker("--pooler", "transaction", *args, app=app, url=url)


def succeeded(db: psycopg.Connection[Any]) -> int:
    return count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'")


def no_prepared_statement_errors(log: str) -> None:
    assert "prepared statement" not in log, log[-3000:]


def test_a_worker_behind_pgbouncer_drains_5000_jobs_runs_a_chord_and_survives_its_restart(
    db: psycopg.Connection[Any],
    db_url: str,
    bouncer: PgBouncer,
    pooled_url: str,
    spawn_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # LISTEN and the leader's lock over the direct URL; everything else through PgBouncer.
    monkeypatch.setenv("PGJOBS_TEST_LISTEN_URL", db_url)
    app = make_app(pooled_url, pooler="transaction")
    try:
        app.tasks["noop"].enqueue_many(range(5000))
        w = spawn_pooled(spawn_worker, pooled_url, "--concurrency", "20")
        wait_for(lambda: succeeded(db) >= 1500, timeout=60)
        # Every client and server connection of PgBouncer closes at once, mid-run.
        bouncer.restart(down_for=1.0)
        assert succeeded(db) < 5000
        wait_for(lambda: succeeded(db) == 5000, timeout=120)
        # No job lost, none failed, none left running: each one succeeded.
        assert count(db, "SELECT count(*) FROM pgjobs.jobs") == 5000
        assert count(db, "SELECT count(DISTINCT (args->>0)::int) FROM pgjobs.jobs") == 5000

        square, total = app.tasks["square"], app.tasks["total"]
        wf = pgjobs.chord([square.s(n) for n in range(1, 11)], total.s()).enqueue()
        assert wf.wait(timeout=30) == sum(n * n for n in range(1, 11))

        # The worker leads over its direct URL: its lock session is no PgBouncer's.
        leader = db.execute(
            "SELECT leader_pid FROM pgjobs.workers WHERE leader_pid IS NOT NULL"
        ).fetchone()
        assert leader is not None
        assert leader[0] not in {s["remote_pid"] for s in bouncer.servers()}
        assert w.stop() == 0
    finally:
        app.close()
    log = w.log()
    no_prepared_statement_errors(log)
    assert "leads maintenance" in log
    assert_no_session_state(pooled_url)


def test_a_worker_with_a_limited_task_records_and_claims_in_a_pipeline_through_pgbouncer(
    db: psycopg.Connection[Any],
    db_url: str,
    pooled_url: str,
    spawn_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGJOBS_TEST_LISTEN_URL", db_url)
    app = make_limited_app(pooled_url, pooler="transaction")
    try:
        app.tasks["limited"].enqueue_many(range(500))
        w = spawn_pooled(spawn_worker, pooled_url, "--concurrency", "8", app=LIMITED)
        wait_for(lambda: succeeded(db) == 500, timeout=60)
        assert w.stop() == 0
    finally:
        app.close()
    no_prepared_statement_errors(w.log())
    assert_no_session_state(pooled_url)


def test_without_the_pooler_mode_a_worker_leaves_session_state_on_pgbouncers_connections(
    db: psycopg.Connection[Any],
    db_url: str,
    pooled_url: str,
    spawn_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same worker as above, the mode left out: its leader's session lock and its pools'
    # settings stay on server connections that PgBouncer hands to any client.
    monkeypatch.setenv("PGJOBS_TEST_LISTEN_URL", db_url)
    app = make_app(pooled_url, pooler="transaction")
    try:
        app.tasks["noop"].enqueue_many(range(200))
        w = spawn_worker("--pooler", "none", app=APP, url=pooled_url)
        wait_for(lambda: succeeded(db) == 200, timeout=60)
        w.stop()
    finally:
        app.close()
    sessions = server_sessions(pooled_url)
    assert sum(s["advisory_locks"] for s in sessions) == 1
    assert any("jit" in s["settings"] for s in sessions)


def test_without_a_direct_url_a_worker_polls_and_maintenance_runs_in_rounds(
    db: psycopg.Connection[Any],
    db_url: str,
    pooled_url: str,
    spawn_worker: Callable[..., WorkerProcess],
) -> None:
    app = make_app(pooled_url, pooler="transaction", listen_url=None)
    try:
        a = spawn_pooled(spawn_worker, pooled_url, "--poll-interval", "0.2")
        b = spawn_pooled(spawn_worker, pooled_url, "--poll-interval", "0.2")
        # A retry waits in 'retrying' until maintenance releases it: a round ran.
        doomed = app.tasks["doomed"].enqueue("twice")
        with pytest.raises(pgjobs.JobFailed):
            doomed.wait(timeout=30)
        assert doomed.refresh().attempts == 2
        jobs = app.tasks["noop"].enqueue_many(range(200))
        wait_for(lambda: succeeded(db) == 200, timeout=30)
        assert len(jobs) == 200
        # Nobody leads between rounds, and no session holds the maintenance lock.
        assert count(db, "SELECT count(*) FROM pgjobs.workers WHERE leader_pid IS NOT NULL") == 0
        assert a.stop() == 0 and b.stop() == 0
    finally:
        app.close()
    for w in (a, b):
        log = w.log()
        no_prepared_statement_errors(log)
        assert "polls every" in log and "rounds" in log
        assert "leads maintenance" not in log
    assert_no_session_state(pooled_url)


def test_a_round_without_a_direct_url_holds_the_leaders_lock_for_its_transaction_alone(
    db: psycopg.Connection[Any], pooled_url: str
) -> None:
    def lock_free() -> bool:
        row = db.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            db.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            return True
        return False

    async def rounds() -> list[tuple[bool, bool]]:
        kwargs = {"autocommit": True, "prepare_threshold": None}
        async with AsyncConnectionPool(pooled_url, kwargs=kwargs, min_size=2) as pool:
            m = Maintenance(None, pool, worker_id="w", lease_seconds=30, pooler="transaction")
            assert m.leader.per_round and m.upkeep is None
            seen = []  # (the round took the lock, another session could take it meanwhile)
            for _ in range(2):
                async with pool.connection() as conn, conn.transaction():
                    seen.append((await m.leader.try_round(conn), lock_free()))
                    # Another worker's round at the same time gets no lock.
                    async with pool.connection() as other, other.transaction():
                        assert not await m.leader.try_round(other)
                assert lock_free()  # gone with the round's transaction
            # A session leader (a worker with a direct URL) holds it: no round.
            db.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            try:
                async with pool.connection() as conn, conn.transaction():
                    seen.append((await m.leader.try_round(conn), False))
            finally:
                db.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            return seen

    assert asyncio.run(rounds()) == [(True, False), (True, False), (False, False)]


def test_the_app_in_pooler_mode_enqueues_reads_and_replays_dead_letters_through_pgbouncer(
    db: psycopg.Connection[Any],
    db_url: str,
    pooled_url: str,
    spawn_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGJOBS_POOLER", "transaction")
    app = make_app(pooled_url)
    assert app.pooler == "transaction"
    noop = app.tasks["noop"]
    try:
        ids = []
        for n in range(20):
            # Each call on another server connection from time to time.
            with hold(pooled_url) if n % 3 == 0 else contextlib.nullcontext():
                job = noop.enqueue(n)
                deduped = noop.options(dedup_key=f"k{n % 5}").enqueue(n)
                ids.append(job.id)
                assert app.get_job(job.id).status == Status.PENDING
                assert app.get_job(deduped.id).task == "noop"
        assert count(db, "SELECT count(*) FROM pgjobs.jobs") == 25
        letters = app.tasks["doomed"].options(retries=0).enqueue_many(["a", "b", "c"])
        w = spawn_pooled(spawn_worker, pooled_url, "--burst")
        assert w.wait(60) == 0
        dead = app.dead_letters(task="doomed")
        assert sorted(d.job_id for d in dead) == sorted(letters.ids)
        for d in dead:
            with hold(pooled_url):
                error = app.get_dead_letter(d.job_id).error
                assert error is not None and error["type"] == "ValueError"
                assert app.replay(d.job_id).status == Status.PENDING
        pending = "SELECT count(*) FROM pgjobs.jobs WHERE task = 'doomed' AND status = 'pending'"
        assert count(db, pending) == 3
        assert app.get_job(ids[-1]).status == Status.SUCCEEDED
    finally:
        app.close()
    no_prepared_statement_errors(w.log())
    assert_no_session_state(pooled_url)


def test_async_calls_in_pooler_mode_go_through_pgbouncer(pooled_url: str, db: Any) -> None:
    app = make_app(pooled_url, pooler="transaction")

    async def calls() -> None:
        for n in range(12):
            with hold(pooled_url) if n % 4 == 0 else contextlib.nullcontext():
                job = await app.tasks["noop"].aenqueue(n)
                assert (await app.aget_job(job.id)).status == Status.PENDING

    try:
        asyncio.run(calls())
    finally:
        app.close()
    assert count(db, "SELECT count(*) FROM pgjobs.jobs") == 12


def test_without_the_pooler_mode_the_same_pgbouncer_fails_the_apps_calls(
    db: psycopg.Connection[Any], pooled_url: str
) -> None:
    app = make_app(pooled_url, pooler="none")
    job = app.tasks["noop"].enqueue(1)
    try:
        # psycopg prepares a statement after its fifth run, on the server connection of the
        # moment; PgBouncer sends the next run wherever it likes.
        with pytest.raises(psycopg.errors.InvalidSqlStatementName, match="does not exist"):
            for _ in range(10):
                app.get_job(job.id)
            with hold(pooled_url):
                app.get_job(job.id)
    finally:
        app.close()
    pooled = make_app(pooled_url, pooler="transaction")
    try:
        for _ in range(10):
            pooled.get_job(job.id)
        with hold(pooled_url):
            assert pooled.get_job(job.id).id == job.id
    finally:
        pooled.close()


def test_migrations_through_pgbouncer_take_turns_and_leave_no_lock_behind(
    admin_url: str, bouncer: PgBouncer
) -> None:
    name = f"pgjobs_pooled_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    direct = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    pooled = bouncer.url(direct)
    try:
        errors: list[BaseException] = []

        def migrate() -> None:
            try:
                App(pooled, pooler="transaction").migrate()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=migrate) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        with psycopg.connect(direct, autocommit=True) as conn:
            assert count(conn, "SELECT count(*) FROM pgjobs.alembic_version") == 1
            held = count(
                conn,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            assert held == 0
        # A fourth finds the schema at head, at once: nothing held the lock.
        started = time.monotonic()
        App(pooled, pooler="transaction").migrate()
        assert time.monotonic() - started < 30
    finally:
        bouncer.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
            )


def test_a_pooler_mode_other_than_transaction_or_none_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="pooler must be 'transaction'"):
        App("postgresql://localhost/x", pooler="statement")
    monkeypatch.setenv("PGJOBS_POOLER", "sesion")
    with pytest.raises(ConfigurationError, match=r"\$PGJOBS_POOLER must be 'transaction'"):
        App("postgresql://localhost/x")
    assert App("postgresql://localhost/x", pooler="none").pooler is None


def test_pgjobs_migrate_takes_the_pooler_mode_and_refuses_one_it_does_not_know(
    db: psycopg.Connection[Any], pooled_url: str
) -> None:
    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pgjobs", "migrate", "--url", pooled_url, *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)

    done = migrate("--pooler", "transaction")
    assert done.returncode == 0, done.stderr
    assert "pgjobs schema is at revision" in done.stdout
    refused = migrate("--pooler", "statement")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "Error: --pooler must be 'transaction' (a transaction-pooling PgBouncer or proxy) or "
        "'none', got 'statement'"
    ]
