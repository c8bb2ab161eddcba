"""Migrations: Alembic revisions of plain SQL, applied by `pgjobs migrate` or an app's Alembic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql as psql

from pgjobs import migrations
from pgjobs.queries import names, resource_dir, sql

HEAD = "0003_time_and_limits"


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
        "alembic_version",
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


def test_every_named_query_parses_and_plans(db: psycopg.Connection[Any]) -> None:
    """EXPLAIN each statement in sql/queries.sql with NULL parameters (COPY: copy nothing)."""
    assert len(names()) >= 15
    for name in names():
        text = sql(name)
        params = {p: None for p in _params(text)}
        db.execute("BEGIN")
        try:
            if text.startswith("COPY"):
                # COPY cannot be explained; copying no rows checks its columns.
                with db.cursor().copy(text):
                    pass
            else:
                db.execute("EXPLAIN " + text, params)
        finally:
            db.execute("ROLLBACK")


def _params(text: str) -> set[str]:
    import re

    return set(re.findall(r"%\((\w+)\)s", text))


def test_the_sql_folder_ships_beside_the_package() -> None:
    assert (resource_dir("sql") / "queries.sql").is_file()
    assert (resource_dir("sql") / "schema" / "0001_initial.sql").is_file()
    assert (resource_dir("alembic") / "env.py").is_file()
