"""Migrations: Alembic revisions of plain SQL, applied by `pgjobs migrate` or an app's Alembic."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql as psql

from pgjobs import migrations
from pgjobs.db.driver import COLUMN_TYPES, statement
from pgjobs.db.queries import names, resource_dir, sql
from pgjobs.db.rows import ROWS
from tests.support.common import ROOT

HEAD = "0013_sql_enqueue"
VIEWS = {
    "queue_depth",
    "queue_oldest",
    "throughput",
    "running_jobs",
    "dead_letters_by_task",
    "workers_alive",
}


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    name = f"pgjobs_mig_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
        )
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    info["dbname"] = name
    yield psycopg.conninfo.make_conninfo(**info)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
        )


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'pgjobs'"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_creates_the_schema_and_is_idempotent(empty_db: str) -> None:
    assert migrations.current(empty_db) is None
    migrations.upgrade(empty_db)
    migrations.upgrade(empty_db)
    assert migrations.current(empty_db) == HEAD
    assert tables(empty_db) == {
        "jobs",
        "attempts",
        "dedup_keys",
        "dead_letters",
        "workers",
        "task_limits",
        "periodic",
        "workflows",
        "job_deps",
        "alembic_version",
        *VIEWS,
    }


def test_downgrade_removes_what_upgrade_made(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    migrations.downgrade(empty_db)
    assert tables(empty_db) == {"alembic_version"}
    migrations.upgrade(empty_db)
    assert "jobs" in tables(empty_db)


def test_a_database_at_0001_upgrades_in_place_and_keeps_its_jobs(empty_db: str) -> None:
    migrations.upgrade(empty_db, revision="0001_initial")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("INSERT INTO pgjobs.jobs (id, task) VALUES (gen_random_uuid(), 'old')")
    migrations.upgrade(empty_db)
    assert migrations.current(empty_db) == HEAD
    with psycopg.connect(empty_db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT task, attempt_base, cancel_requested_at FROM pgjobs.jobs"
        ).fetchone()
    assert row == ("old", 0, None)
    migrations.downgrade(empty_db, revision="0001_initial")
    assert migrations.current(empty_db) == "0001_initial"


def test_0004_only_adds_views_and_its_downgrade_drops_them(empty_db: str) -> None:
    migrations.upgrade(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("INSERT INTO pgjobs.jobs (id, task) VALUES (gen_random_uuid(), 'kept')")
    migrations.downgrade(empty_db, revision="0003_time_and_limits")
    assert migrations.current(empty_db) == "0003_time_and_limits"
    assert not tables(empty_db) & VIEWS
    migrations.upgrade(empty_db)
    assert tables(empty_db) >= VIEWS
    with psycopg.connect(empty_db, autocommit=True) as conn:
        row = conn.execute("SELECT queue, depth, pending FROM pgjobs.queue_oldest").fetchone()
    assert row == ("default", 1, 1)


def test_0005_downgrade_ends_waiting_steps_and_upgrade_brings_workflows_back(
    empty_db: str,
) -> None:
    migrations.upgrade(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgjobs.jobs (id, task, status, workflow_id, waiting_for) VALUES"
            " (gen_random_uuid(), 'step', 'blocked', gen_random_uuid(), 1),"
            " (gen_random_uuid(), 'plain', 'pending', NULL, NULL)"
        )
    migrations.downgrade(empty_db, revision="0004_observability")
    assert not tables(empty_db) & {"workflows", "job_deps"}
    with psycopg.connect(empty_db, autocommit=True) as conn:
        rows = conn.execute("SELECT task, status FROM pgjobs.jobs ORDER BY task").fetchall()
        # 'blocked' is not a status before 0005: the waiting step ended, the other job is kept.
        assert rows == [("plain", "pending"), ("step", "cancelled")]
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE pgjobs.jobs SET status = 'blocked'")
    migrations.upgrade(empty_db)
    assert tables(empty_db) >= {"workflows", "job_deps"}


def claim_limited_stamp(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT substring(prosrc from 'started_at = [a-z_]+\\(\\)') FROM pg_proc"
            " WHERE oid = 'pgjobs.claim_limited(text[], text[], text, integer)'::regprocedure"
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_0008_stamps_limited_claims_with_the_clock_and_its_downgrade_with_now_again(
    empty_db: str,
) -> None:
    migrations.upgrade(empty_db, revision="0007_constant_checks")
    assert claim_limited_stamp(empty_db) == "started_at = now()"
    migrations.upgrade(empty_db)
    assert claim_limited_stamp(empty_db) == "started_at = clock_timestamp()"
    migrations.downgrade(empty_db, revision="0007_constant_checks")
    assert claim_limited_stamp(empty_db) == "started_at = now()"


def claim_index_options(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, unnest(coalesce(reloptions, '{-}')) FROM pg_class"
            " WHERE relname IN ('jobs_claim_idx', 'jobs_limited_claim_idx')"
        ).fetchall()
    return {f"{name}: {option}" for name, option in rows}


def test_0009_turns_the_claim_indexes_deduplication_off_and_its_downgrade_on(
    empty_db: str,
) -> None:
    migrations.upgrade(empty_db, revision="0008_claim_clock")
    default = {"jobs_claim_idx: -", "jobs_limited_claim_idx: -"}
    assert claim_index_options(empty_db) == default
    migrations.upgrade(empty_db)
    assert claim_index_options(empty_db) == {
        "jobs_claim_idx: deduplicate_items=off",
        "jobs_limited_claim_idx: deduplicate_items=off",
    }
    migrations.downgrade(empty_db, revision="0008_claim_clock")
    assert claim_index_options(empty_db) == default


def insert_triggers(url: str) -> set[str]:
    """The triggers that run on inserts into pgjobs.jobs, and their functions."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tgname || ': ' || tgfoid::regproc::text FROM pg_trigger"
            " WHERE tgrelid = 'pgjobs.jobs'::regclass AND tgtype & 4 <> 0"
        ).fetchall()
    return {r[0] for r in rows}


def test_0010_drops_the_insert_trigger_and_its_downgrade_puts_it_back(empty_db: str) -> None:
    migrations.upgrade(empty_db, revision="0009_claim_index_no_dedup")
    trigger = {"jobs_notify_insert: pgjobs.notify_ready"}
    assert insert_triggers(empty_db) == trigger
    migrations.upgrade(empty_db)
    assert insert_triggers(empty_db) == set()
    migrations.downgrade(empty_db, revision="0009_claim_index_no_dedup")
    assert insert_triggers(empty_db) == trigger
    with psycopg.connect(empty_db) as conn:  # and it still keeps quiet for a pgjobs insert
        when = conn.execute(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'jobs_notify_insert'"
        ).fetchone()
    assert when is not None and "pgjobs.self_notify" in when[0]


def checks(url: str) -> dict[str, set[str]]:
    """The CHECKs on the jobs table, on its domains, and what else reads its columns."""
    with psycopg.connect(url) as conn:

        def names(query: str) -> set[str]:
            return {r[0] for r in conn.execute(query).fetchall()}

        return {
            "table": names(
                "SELECT conname FROM pg_constraint"
                " WHERE conrelid = 'pgjobs.jobs'::regclass AND contype = 'c'"
            ),
            "domains": names(
                "SELECT t.typname || ': ' || pg_get_constraintdef(c.oid) FROM pg_constraint c"
                " JOIN pg_type t ON t.oid = c.contypid"
                " WHERE t.typnamespace = 'pgjobs'::regnamespace"
            ),
            "columns": names(
                "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'pgjobs.jobs'::regclass"
                " AND attname IN ('status', 'on_failure', 'max_attempts')"
            ),
            "claim_limited": names(
                "SELECT pg_get_functiondef("
                "'pgjobs.claim_limited(text[], text[], text, integer)'::regprocedure)"
            ),
            "kept": names(
                "SELECT c.relname || ': ' || coalesce(obj_description(c.oid, 'pg_class'), '-')"
                " || ' ' || coalesce(c.relacl::text, '-') FROM pg_class c"
                " WHERE relnamespace = 'pgjobs'::regnamespace AND relkind = 'v'"
                " UNION ALL SELECT tgname || ': ' || pg_get_triggerdef(oid) FROM pg_trigger"
                " WHERE tgrelid = 'pgjobs.jobs'::regclass AND NOT tgisinternal"
                " UNION ALL SELECT indexrelid::regclass::text || ': '"
                " || pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = 'pgjobs.jobs'::regclass"
            ),
        }


def test_0011_moves_the_jobs_checks_to_domains_and_keeps_views_and_triggers(
    empty_db: str,
) -> None:
    migrations.upgrade(empty_db, revision="0010_no_insert_trigger")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("GRANT SELECT ON pgjobs.queue_depth TO PUBLIC")  # as a DBA may have
        conn.execute(
            "INSERT INTO pgjobs.jobs (id, task, status) VALUES (gen_random_uuid(), 't', 'failed')"
        )
    before = checks(empty_db)
    assert before["table"] == {
        "jobs_status_check",
        "jobs_on_failure_check",
        "jobs_max_attempts_check",
    }
    assert before["domains"] == set()
    assert len(before["kept"]) >= 6 + 3 + 8  # the views, the update triggers, the indexes
    migrations.upgrade(empty_db)
    after = checks(empty_db)
    assert after["table"] == set()
    assert after["columns"] == {
        "status pgjobs.job_status",
        "on_failure pgjobs.failure_policy",
        "max_attempts pgjobs.attempt_limit",
    }
    assert after["domains"] == {
        "job_status: CHECK ((VALUE = ANY ('{blocked,scheduled,pending,running,retrying,"
        "succeeded,failed,cancelled}'::text[])))",
        "failure_policy: CHECK ((VALUE = ANY ('{cancel,pass}'::text[])))",
        "attempt_limit: CHECK ((VALUE >= 1))",
    }
    (claim_limited,) = after["claim_limited"]
    assert "j.attempt, j.max_attempts::integer," in claim_limited  # it returns an integer
    # The views come back with their comments and grants, the triggers with their WHENs.
    assert {k.split(":")[0] for k in after["kept"]} == {k.split(":")[0] for k in before["kept"]}
    assert any("queue_depth: " in k and "=r/" in k for k in after["kept"])
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT depth FROM pgjobs.queue_oldest").fetchall() == []
        for column, value in (
            ("status", "'lost'"),
            ("on_failure", "'retry'"),
            ("max_attempts", "0"),
        ):
            with pytest.raises(psycopg.errors.CheckViolation, match="violates check constraint"):
                conn.execute(
                    f"INSERT INTO pgjobs.jobs (id, task, {column})"
                    f" VALUES (gen_random_uuid(), 't', {value})"
                )
        assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (1,)
    migrations.downgrade(empty_db, revision="0010_no_insert_trigger")
    assert checks(empty_db) == before


SQL_ENQUEUE = {"enqueue", "enqueue_many", "enqueue_error", "new_job_id", "new_job_ids"}


def functions(url: str) -> dict[str, tuple[bool, list[str] | None, str | None]]:
    """pgjobs' functions: whether each is SECURITY DEFINER, its settings, and its grants."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT proname, prosecdef, proconfig, proacl::text FROM pg_proc"
            " WHERE pronamespace = 'pgjobs'::regnamespace"
        ).fetchall()
    return {name: (definer, config, acl) for name, definer, config, acl in rows}


def test_0013_adds_the_sql_enqueue_functions_and_its_downgrade_drops_them(empty_db: str) -> None:
    migrations.upgrade(empty_db, revision="0012_stuck_threads")
    before = functions(empty_db)
    assert not before.keys() & SQL_ENQUEUE
    migrations.upgrade(empty_db)
    after = functions(empty_db)
    assert after.keys() - before.keys() == SQL_ENQUEUE
    for name in SQL_ENQUEUE:
        # The caller's rights, a search_path of their own, and no grant beyond Postgres'
        # default for a function, as claim_limited() has.
        assert after[name] == (False, ["search_path=pg_catalog, pg_temp"], None), name
    assert after["claim_limited"][2] is None
    migrations.downgrade(empty_db, revision="0012_stuck_threads")
    assert functions(empty_db) == before


def test_an_application_runs_them_on_its_own_connection_and_transaction(empty_db: str) -> None:
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(empty_db))
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE app_table (id int)"))
        migrations.upgrade(connection=conn)
        conn.rollback()  # the application's transaction decides
    assert tables(empty_db) == set()
    with engine.begin() as conn:
        migrations.upgrade(connection=conn)
    assert "jobs" in tables(empty_db)
    engine.dispose()


@contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    """An empty database of that name on the test server, dropped at the end; its URL."""
    drop = psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop)


def script_head() -> str:
    """The newest revision in alembic/versions/."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(migrations.config()).get_current_head()
    assert head is not None
    return head


def start_migrate(url: str) -> subprocess.Popen[str]:
    """A `pgjobs migrate` process on `url`."""
    return subprocess.Popen(
        [sys.executable, "-m", "pgjobs", "migrate"],
        cwd=ROOT,
        env={**os.environ, "PGJOBS_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def both_succeed_with_one_line(procs: list[subprocess.Popen[str]], url: str) -> None:
    head = script_head()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert err == ""
        assert out.splitlines() == [f"pgjobs schema is at revision {head}"]
    assert migrations.current(url) == head


def waiting_for_the_migration_lock(conn: psycopg.Connection[Any]) -> int:
    """Sessions of this database waiting for migrations.LOCK_KEY."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND (classid::bigint << 32 | objid::bigint) = %s",
        [migrations.LOCK_KEY],
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.processes
def test_two_migrates_started_together_on_a_fresh_database_both_succeed(admin_url: str) -> None:
    # Each round is a new race: process start-up times vary, so over a few
    # rounds the two reach the empty database at the same moment.
    for round_ in range(3):
        with fresh_database(admin_url, f"pgjobs_race_{os.getpid()}_{round_}") as url:
            procs = [start_migrate(url), start_migrate(url)]
            both_succeed_with_one_line(procs, url)


@pytest.mark.processes
def test_a_second_migrate_waits_for_the_first_and_then_finds_nothing_to_do(
    admin_url: str,
) -> None:
    with fresh_database(admin_url, f"pgjobs_race_{os.getpid()}_held") as url:
        with psycopg.connect(url, autocommit=True) as holder:
            # Held here, the lock lines both processes up at the same point,
            # before either has touched the schema; released, they race for it.
            holder.execute("SELECT pg_advisory_lock(%s)", [migrations.LOCK_KEY])
            procs = [start_migrate(url), start_migrate(url)]
            deadline = time.monotonic() + 60
            while waiting_for_the_migration_lock(holder) < 2:
                assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
                assert time.monotonic() < deadline, "the migrations never waited for the lock"
                time.sleep(0.05)
            assert migrations.current(url) is None
            holder.execute("SELECT pg_advisory_unlock(%s)", [migrations.LOCK_KEY])
        both_succeed_with_one_line(procs, url)


def _run_into(run: Any, url: str, errors: list[BaseException]) -> None:
    try:
        run(url)
    except BaseException as exc:  # the thread's test reports it
        errors.append(exc)


def test_upgrade_and_downgrade_wait_while_another_session_holds_the_migration_lock(
    empty_db: str,
) -> None:
    for run in (migrations.upgrade, migrations.downgrade):
        with psycopg.connect(empty_db, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [migrations.LOCK_KEY])
            errors: list[BaseException] = []
            thread = threading.Thread(target=_run_into, args=(run, empty_db, errors))
            thread.start()
            deadline = time.monotonic() + 30
            while waiting_for_the_migration_lock(holder) < 1:
                assert thread.is_alive() and time.monotonic() < deadline, errors
                time.sleep(0.02)
            holder.execute("SELECT pg_advisory_unlock(%s)", [migrations.LOCK_KEY])
            thread.join(60)
        assert not thread.is_alive() and not errors, errors
    # Upgraded once, then downgraded to base: only the version table is left.
    assert tables(empty_db) == {"alembic_version"}
    assert migrations.current(empty_db) is None


def test_every_named_query_parses_and_plans(db: psycopg.Connection[Any]) -> None:
    """EXPLAIN each statement in sql/queries.sql with NULL parameters (COPY: copy nothing)."""
    assert len(names()) >= 15
    for name in names():
        # A statement with optional columns, naming every one it may.
        text = statement(name, tuple(COLUMN_TYPES)) if "{columns}" in sql(name) else sql(name)
        # Named parameters, or positional ones (enqueue_job): all NULL.
        positional = len(re.findall(r"%[sbt]", text))
        params: Any = [None] * positional if positional else {p: None for p in _params(text)}
        db.execute("BEGIN")
        try:
            if text.startswith("COPY"):
                # COPY cannot be explained; copying no rows checks its columns,
                # every one that it may name.
                with db.cursor().copy(text):
                    pass
            elif text.startswith("SET "):
                # Nor can SET; it is undone by the ROLLBACK below.
                db.execute(text)
            else:
                db.execute("EXPLAIN " + text, params)
        finally:
            db.execute("ROLLBACK")


def _params(text: str) -> set[str]:
    return set(re.findall(r"%\((\w+)\)[sbt]", text))


def test_typed_rows_name_the_columns_postgres_describes(db: psycopg.Connection[Any]) -> None:
    """Each TypedDict of pgjobs.db.rows has its statement's result columns, in order: a
    column added, renamed or dropped on one side only fails here."""
    assert {"claim_jobs", "finish_and_claim", "get_job", "rescue_jobs"} <= set(ROWS)
    for name, row in ROWS.items():
        described = _result_columns(db, name, sql(name))
        assert described == list(row.__annotations__), f"{name}: {row.__name__}"


def _result_columns(db: psycopg.Connection[Any], name: str, text: str) -> list[str]:
    """The result columns Postgres describes for the statement, prepared as `name`."""
    order: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in order:
            order.append(m.group(1))
        return f"${order.index(m.group(1)) + 1}"

    query = re.sub(r"%\((\w+)\)[sbt]", number, text)
    positions = iter(range(1, 1000))
    query = re.sub(r"%[sbt]", lambda _: f"${next(positions)}", query).replace("%%", "%")
    pgconn = db.pgconn
    prepared = pgconn.prepare(name.encode(), query.encode())
    assert prepared.status == psycopg.pq.ExecStatus.COMMAND_OK, prepared.error_message
    try:
        described = pgconn.describe_prepared(name.encode())
        return [described.fname(i).decode() for i in range(described.nfields)]
    finally:
        db.execute(psql.SQL("DEALLOCATE {}").format(psql.Identifier(name)))


def test_the_sql_folder_ships_beside_the_package() -> None:
    assert (resource_dir("sql") / "queries.sql").is_file()
    assert (resource_dir("sql") / "schema" / "0001_initial.sql").is_file()
    assert (resource_dir("alembic") / "env.py").is_file()
