"""Upkeep: where autovacuum is off, the leader vacuums and analyzes pgjobs' tables itself.

A claim planned while the jobs table was empty scans the whole table for as
long as the plan is kept, which without an ANALYZE is the connection's life;
these tests show that plan, that upkeep's ANALYZE replaces it, that a real
worker does the upkeep by autovacuum's rule (and not with --no-vacuum), that
tables autovacuum looks after are left to it (on the embedded Postgres, where
it runs), and that a table is vacuumed by a role that does not own it exactly
when VACUUM lets that role (MAINTAIN from PostgreSQL 17, on the embedded 18;
the database's owner before, on this machine's 15), and named otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from pgjobs.db.queries import sql
from pgjobs.maintenance import upkeep
from tests import sample_app
from tests.support.common import ROOT, TABLES, count, numbered, wait_for
from tests.support.netcut import NetCut
from tests.support.workers import WorkerProcess


@pytest.fixture
def no_autovacuum(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """The jobs table with autovacuum off for it, whatever the server's setting."""
    db.execute("ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = false)")
    try:
        yield db
    finally:
        db.execute("ALTER TABLE pgjobs.jobs RESET (autovacuum_enabled)")


def _stats(db: psycopg.Connection[Any]) -> dict[str, int]:
    """The statistics of pgjobs.jobs: vacuums and analyzes so far, dead rows, rows changed
    since its last ANALYZE."""
    row = db.execute(
        "SELECT vacuum_count AS vacuums, analyze_count AS analyzes, n_dead_tup AS dead,"
        " n_mod_since_analyze AS changed FROM pg_stat_user_tables"
        " WHERE schemaname = 'pgjobs' AND relname = 'jobs'"
    ).fetchone()
    assert row is not None
    return {"vacuums": row[0], "analyzes": row[1], "dead": row[2], "changed": row[3]}


def _churn(url: str, jobs: int) -> None:
    """`jobs` jobs enqueued and claimed on a connection of their own, closed at the end,
    which sends its statistics: 2 dead rows per job."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgjobs.jobs (id, task, args)"
            " SELECT gen_random_uuid(), 'record', '[1]' FROM generate_series(1, %s)",
            (jobs,),
        )
        conn.execute("UPDATE pgjobs.jobs SET status = 'running', worker_id = 'x'")
        conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded', worker_id = NULL")


def _due(url: str) -> list[upkeep.Chore]:
    async def look() -> list[upkeep.Chore]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await upkeep.due(conn)

    return asyncio.run(look())


def _do(url: str, chores: list[upkeep.Chore]) -> None:
    async def work() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await upkeep.run(conn, chores)

    asyncio.run(work())


def _claim_scans(conn: psycopg.Connection[Any]) -> set[tuple[str, str | None]]:
    """The scans of pgjobs.jobs in the plan the prepared claim would run now."""
    row = conn.execute(
        "EXPLAIN (FORMAT JSON) EXECUTE claim"
        "('{default}', '{1}', '{0}', '{}', '{}', '{}', 'upkeep-test', 10, 'priority')"
    ).fetchone()
    assert row is not None

    def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield plan
        for child in plan.get("Plans", []):
            yield from nodes(child)

    return {
        (n["Node Type"], n.get("Index Name"))
        for n in nodes(row[0][0]["Plan"])
        if n.get("Relation Name") == "jobs"
    }


def test_a_claim_planned_on_an_empty_table_scans_it_all_until_upkeep_analyzes_it(
    no_autovacuum: psycopg.Connection[Any], db_url: str
) -> None:
    db = no_autovacuum
    db.execute("VACUUM ANALYZE pgjobs.jobs")  # the statistics of a fresh install
    text, names = numbered(sql("claim_jobs"))
    assert names == [
        *("queues", "weights", "offsets", "from_queues", "from_priorities", "from_times"),
        *("worker_id", "limit", "order"),
    ]
    with psycopg.connect(db_url, autocommit=True) as worker:
        # As a busy worker's connection keeps it: one plan, made once.
        worker.execute("SET plan_cache_mode = force_generic_plan")
        worker.execute(f"PREPARE claim AS {text}")
        empty = _claim_scans(worker)
        sample_app.record.enqueue_many([(n,) for n in range(5000)])
        grown = _claim_scans(worker)

        # The App's connection reports its writes to the statistics when idle.
        wait_for(lambda: _stats(db)["changed"] >= 5000, timeout=15)
        chores = _due(db_url)
        jobs = [c for c in chores if c.table == "pgjobs.jobs"]
        assert len(jobs) == 1 and jobs[0].analyze, chores
        before = _stats(db)
        _do(db_url, chores)
        after = _stats(db)
        replanned = _claim_scans(worker)
    # Planned for an empty table, the claim reads the whole table and sorts
    # it, and goes on doing so for 5,000 jobs: the plan is kept.
    assert ("Seq Scan", None) in empty, empty
    assert grown == empty
    assert after["analyzes"] == before["analyzes"] + 1  # one ANALYZE of the jobs table
    # Made again once the statistics changed: through the claim index.
    assert ("Index Scan", "jobs_claim_idx") in replanned, replanned
    assert ("Seq Scan", None) not in replanned, replanned


def test_dead_rows_past_autovacuums_threshold_are_vacuumed(
    no_autovacuum: psycopg.Connection[Any], db_url: str
) -> None:
    db = no_autovacuum
    db.execute("VACUUM ANALYZE pgjobs.jobs")
    threshold = db.execute("SELECT current_setting('autovacuum_vacuum_threshold')::int").fetchone()
    assert threshold is not None
    # Too few dead rows for autovacuum: upkeep leaves the table as it is.
    _churn(db_url, threshold[0] // 4)
    wait_for(lambda: _stats(db)["dead"] >= 2 * (threshold[0] // 4), timeout=15)
    assert not [c for c in _due(db_url) if c.table == "pgjobs.jobs" and c.vacuum]
    _churn(db_url, threshold[0] + 100)
    wait_for(lambda: _stats(db)["dead"] > threshold[0], timeout=15)
    chores = [c for c in _due(db_url) if c.table == "pgjobs.jobs"]
    assert len(chores) == 1 and chores[0].vacuum and chores[0].analyze, chores
    assert chores[0].dead_rows > threshold[0]
    assert chores[0].statement().as_string(db) == (
        'VACUUM (SKIP_LOCKED, TRUNCATE false, ANALYZE) "pgjobs"."jobs"'
    )
    before = _stats(db)
    _do(db_url, chores)
    after = _stats(db)
    assert after["vacuums"] == before["vacuums"] + 1
    assert after["analyzes"] == before["analyzes"] + 1
    assert after["dead"] == 0  # the dead rows are gone
    assert not [c for c in _due(db_url) if c.table == "pgjobs.jobs"]


def test_a_worker_vacuums_only_when_asked_to(
    no_autovacuum: psycopg.Connection[Any],
    db_url: str,
    spawn_worker: Callable[..., WorkerProcess],
) -> None:
    db = no_autovacuum
    db.execute("ANALYZE pgjobs.jobs")  # counted empty, whatever an earlier test left
    jobs = 300

    def run_jobs(start: int) -> None:
        sample_app.record.enqueue_many([(n,) for n in range(start, start + jobs)])
        wait_for(lambda: count(db, "SELECT count(*) FROM test_runs") >= start + jobs, timeout=30)

    # --no-vacuum: the leader looks at nothing, for longer than a look's interval.
    quiet = spawn_worker("--no-vacuum", "--concurrency", "20", "--log-level", "DEBUG")
    before = _stats(db)
    run_jobs(0)
    time.sleep(upkeep.INTERVAL + 1.5)
    now = _stats(db)
    assert (now["vacuums"], now["analyzes"]) == (before["vacuums"], before["analyzes"])
    assert "autovacuum is off" not in quiet.log()
    assert quiet.stop() == 0

    # By default the leader vacuums the dead rows of the jobs it ran.
    worker = spawn_worker("--concurrency", "20", "--log-level", "DEBUG")
    run_jobs(jobs)
    wait_for(lambda: _stats(db)["vacuums"] > before["vacuums"], timeout=upkeep.INTERVAL * 3)
    after = _stats(db)
    assert after["analyzes"] > before["analyzes"]
    wait_for(lambda: "vacuumed pgjobs.jobs" in worker.log(), timeout=10)
    assert "autovacuum is off for pgjobs.jobs: the leader vacuums and analyzes it" in worker.log()
    # A job's own insert into test_runs commits before the worker writes its outcome,
    # in the batch after: the last outcomes may still be on their way.
    succeeded = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'"
    wait_for(lambda: count(db, succeeded) == 2 * jobs, timeout=10)
    assert count(db, "SELECT count(*) FROM test_runs") == 2 * jobs  # each job ran once


@pytest.fixture(scope="module")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated embedded Postgres (18: it has the MAINTAIN privilege of 17 and later)."""
    from pgjobs.db import embedded
    from pgjobs.db.migrations import upgrade

    url = embedded.start(tmp_path_factory.mktemp("embedded") / "pgdata")
    upgrade(url)
    return url


@pytest.mark.parametrize("server", ["local", "embedded"])
@pytest.mark.processes
def test_a_table_is_vacuumed_by_a_role_that_may_and_named_once_by_one_that_may_not(
    server: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """What lets a role that does not own the table vacuum it is what VACUUM itself asks:
    from PostgreSQL 17, MAINTAIN on it; before, owning the database; always, USAGE on its schema.
    """
    url = request.getfixturevalue("db_url" if server == "local" else "embedded_url")
    role = pgsql.Identifier("pgjobs_upkeep_outsider")
    as_role = make_conninfo(url, options="-c role=pgjobs_upkeep_outsider")
    told: set[str] = set()

    def due_as_role() -> list[str]:
        async def look() -> list[str]:
            async with await psycopg.AsyncConnection.connect(as_role, autocommit=True) as conn:
                return [c.table for c in await upkeep.due(conn, told)]

        return asyncio.run(look())

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"TRUNCATE {TABLES}")
        db.execute("ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = false)")
        db.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(role))
        db.execute(pgsql.SQL("CREATE ROLE {} NOLOGIN").format(role))
        database = pgsql.Identifier(db.info.dbname)
        owner = db.execute(
            "SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert owner is not None
        maintain = db.info.server_version >= 170000
        try:
            _churn(url, 200)
            wait_for(lambda: _stats(db)["dead"] >= 400, timeout=15)
            assert "pgjobs.jobs" in [c.table for c in _due(url)]
            with caplog.at_level(logging.WARNING, logger="pgjobs.maintenance"):
                assert due_as_role() == [] and due_as_role() == []
                # What VACUUM asks of a role that does not own the table, without
                # USAGE on its schema: VACUUM could not even find the table.
                if maintain:
                    db.execute(pgsql.SQL("GRANT MAINTAIN ON pgjobs.jobs TO {}").format(role))
                else:
                    db.execute(pgsql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, role))
                assert due_as_role() == []
            db.execute(pgsql.SQL("GRANT USAGE ON SCHEMA pgjobs TO {}").format(role))
            assert "pgjobs.jobs" in due_as_role()
            vacuums = _stats(db)["vacuums"]
            _do(as_role, [c for c in _due(as_role) if c.table == "pgjobs.jobs"])
            wait_for(lambda: _stats(db)["vacuums"] > vacuums, timeout=15)
        finally:
            db.execute(
                pgsql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    database, pgsql.Identifier(owner[0])
                )
            )
            db.execute(pgsql.SQL("DROP OWNED BY {}").format(role))
            db.execute(pgsql.SQL("DROP ROLE {}").format(role))
            db.execute("ALTER TABLE pgjobs.jobs RESET (autovacuum_enabled)")
    named = [r.getMessage() for r in caplog.records if "pgjobs.jobs" in r.getMessage()]
    assert named == [
        "autovacuum is off for pgjobs.jobs and this role may not vacuum it: vacuum and "
        "analyze it as its owner, grant this role MAINTAIN on it (PostgreSQL 17 and "
        "later), or turn autovacuum on"
    ]


EMBEDDED = textwrap.dedent(
    """
    import asyncio
    import time

    import psycopg

    import pgjobs
    from pgjobs.maintenance import upkeep

    app = pgjobs.App()
    app.migrate()
    with psycopg.connect(app.url, autocommit=True) as conn:
        print("autovacuum:", conn.execute("SHOW autovacuum").fetchone()[0])
        conn.execute("ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = true)")
        conn.execute(
            "INSERT INTO pgjobs.jobs (id, task, status) SELECT gen_random_uuid(), 't',"
            " 'succeeded' FROM generate_series(1, 1000)"
        )
        conn.execute("DELETE FROM pgjobs.jobs")

    async def due():
        async with await psycopg.AsyncConnection.connect(app.url, autocommit=True) as conn:
            return [c.table for c in await upkeep.due(conn)]

    with psycopg.connect(app.url, autocommit=True) as conn:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            dead = conn.execute(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'jobs'"
            ).fetchone()[0]
            if dead >= 1000:
                break
            time.sleep(0.1)
        print("dead:", dead >= 1000)
        print("autovacuum on, due:", "pgjobs.jobs" in asyncio.run(due()))
        conn.execute("ALTER TABLE pgjobs.jobs SET (autovacuum_enabled = false)")
        print("autovacuum off for the table, due:", "pgjobs.jobs" in asyncio.run(due()))
    app.close()
    """
)


@pytest.mark.processes
def test_tables_that_autovacuum_looks_after_are_left_to_it(tmp_path: Path) -> None:
    # The embedded Postgres runs autovacuum, as most servers do (this
    # machine's own server has it off).
    env = {k: v for k, v in os.environ.items() if k != "PGJOBS_URL"}
    env["PGJOBS_DATA_DIR"] = str(tmp_path / "pgdata")
    result = subprocess.run(
        [sys.executable, "-c", EMBEDDED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "autovacuum: on",
        "dead: True",
        "autovacuum on, due: False",
        "autovacuum off for the table, due: True",
    ], result.stdout


def test_a_round_outlasts_a_statement_timeout_the_role_sets(
    no_autovacuum: psycopg.Connection[Any], db_url: str
) -> None:
    db = no_autovacuum
    # Any dead row makes the table due, whatever row estimate (reltuples) an earlier
    # test's rows left it with: TRUNCATE keeps it, and the threshold scales with it.
    db.execute(
        "ALTER TABLE pgjobs.jobs SET"
        " (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0)"
    )
    try:
        _churn(db_url, 20_000)
        wait_for(lambda: _stats(db)["dead"] >= 40_000, timeout=15)
        before = _stats(db)
        # As if the role had ALTER ROLE ... SET statement_timeout = '1ms'.
        url = make_conninfo(db_url, options="-c statement_timeout=1")
        chores: list[upkeep.Chore] = []

        async def one_round() -> None:
            keeper = upkeep.Upkeep(url, connect_timeout=5)
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                chores.extend(await upkeep.due(conn))
                await keeper.tick(conn)
                assert keeper.busy
                while keeper.busy:
                    await asyncio.sleep(0.01)
            await keeper.stop()

        asyncio.run(one_round())
        assert [c.vacuum for c in chores if c.table == "pgjobs.jobs"] == [True]
        # The statistics of the round's backend reach the views when it reports them, which
        # can come a moment after the round has ended.
        wait_for(lambda: _stats(db)["vacuums"] >= before["vacuums"] + 1, timeout=30)
        # One VACUUM, run to its end under the role's 1 ms timeout. (How many dead rows it
        # removed is not asked: a snapshot another test holds on this server keeps them.)
        assert _stats(db)["vacuums"] == before["vacuums"] + 1
    finally:
        db.execute(
            "ALTER TABLE pgjobs.jobs RESET"
            " (autovacuum_vacuum_threshold, autovacuum_vacuum_scale_factor)"
        )


LONG = "SELECT pg_sleep(60) AS long_vacuum"
SLEEPING = (
    "SELECT pid FROM pg_stat_activity WHERE query = %s AND state = 'active'"
    " AND datname = current_database()"
)


@pytest.fixture
def long_round(
    no_autovacuum: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[psycopg.Connection[Any]]:
    """Chores due for real, and a round whose statement runs for a minute, as a VACUUM of a
    large table would: the real statement is over too soon to be caught running."""
    db = no_autovacuum
    db.execute("ANALYZE pgjobs.jobs")  # counted empty: see the test above
    _churn(db_url, 2_000)
    wait_for(lambda: bool(_due(db_url)), timeout=15)

    async def long_vacuum(conn: psycopg.AsyncConnection[Any], chores: list[upkeep.Chore]) -> None:
        assert chores
        await conn.execute(LONG)

    monkeypatch.setattr(upkeep, "run", long_vacuum)
    try:
        yield db
    finally:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s"
            " AND datname = current_database()",
            (LONG,),
        )


def _stop_a_running_round(
    keeper: upkeep.Upkeep, db_url: str, db: psycopg.Connection[Any], cut: Callable[[], None]
) -> float:
    """Start a round, wait for its statement to run on the server, call cut(), then time
    keeper.stop(); returns the seconds stop() took, checked to leave nothing running here."""

    async def scenario() -> float:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await keeper.tick(conn)
        assert keeper.busy
        while not db.execute(SLEEPING, (LONG,)).fetchall():
            await asyncio.sleep(0.01)
        cut()
        started = time.monotonic()
        await keeper.stop()
        took = time.monotonic() - started
        assert not keeper.busy
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not others, others  # nothing left for asyncio.run() to wait for
        return took

    return asyncio.run(scenario())


def test_stopping_cancels_a_running_round_on_the_server(
    long_round: psycopg.Connection[Any], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = long_round
    keeper = upkeep.Upkeep(db_url, connect_timeout=5)
    with caplog.at_level(logging.DEBUG, logger="pgjobs.maintenance"):
        took = _stop_a_running_round(keeper, db_url, db, lambda: None)
    assert took < upkeep.STOP_WAIT  # the server answered: no need to close
    # Cancelled on the server, not merely left behind by a closed client.
    wait_for(lambda: not db.execute(SLEEPING, (LONG,)).fetchall(), timeout=5)
    stopped = [r for r in caplog.records if "upkeep round stopped" in r.getMessage()]
    assert stopped and "canceling statement" in stopped[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_stopping_a_round_whose_database_stopped_answering_takes_seconds_not_ten(
    long_round: psycopg.Connection[Any], db_url: str, netcut: tuple[NetCut, str]
) -> None:
    db = long_round
    proxy, through = netcut
    keeper = upkeep.Upkeep(through, connect_timeout=5)

    def cut() -> None:
        proxy.cut = True  # and it never heals

    took = _stop_a_running_round(keeper, db_url, db, cut)
    # The cancel request cannot get through: stop() gives it STOP_WAIT, then
    # closes the connection. psycopg's own cancellation took 10 s here.
    assert upkeep.STOP_WAIT * 0.9 <= took < upkeep.STOP_WAIT + 2
