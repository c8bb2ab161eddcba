"""Alembic environment for pgjobs' own migrations.

Runs on the connection the caller passes (config.attributes["connection"]),
or connects to config.attributes["url"] with psycopg, which takes any libpq
URL or DSN as it is.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import create_engine, pool, text

from alembic import context
from pgjobs.db.migrations import LOCK_KEY, VERSION_SCHEMA, VERSION_TABLE

config = context.config


def run(connection: Any) -> None:
    # Several workers may start at once and all try to migrate: one does the
    # work, the others wait here and then find nothing left to do. The lock
    # comes before anything else, CREATE SCHEMA included, which two sessions
    # cannot run at once on a fresh database. (pgjobs.migrations holds the same
    # key already; this covers Alembic run on this environment by other means.)
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    # The version table lives in the pgjobs schema, which must exist first.
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}"))
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema=VERSION_SCHEMA,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = config.attributes["url"]
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        run(conn)
        conn.commit()
