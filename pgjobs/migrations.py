"""Migrations: Alembic revisions whose DDL is the plain SQL in sql/schema/."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.config import Config

from alembic import command
from pgjobs.queries import resource_dir

#: Alembic keeps pgjobs' revision in its own table, so an application's own
#: Alembic history and pgjobs' never share a version row.
VERSION_TABLE = "alembic_version"
VERSION_SCHEMA = "pgjobs"

#: The advisory lock every upgrade and downgrade holds, the bytes of "pgjobs:m"
#: as a bigint. Two `pgjobs migrate` (or workers) started together on a fresh
#: database would otherwise both create the schema, and one would fail: with
#: the lock the second waits, then finds the schema at head and does nothing.
#: A constant, not hashtext() of a name: Postgres does not promise hashtext() stays the same.
LOCK_KEY = 0x70676A6F62733A6D


def schema_sql(name: str) -> str:
    """The text of a file in sql/schema/."""
    return (resource_dir("sql") / "schema" / name).read_text()


def retype_sql(name: str) -> str:
    """A file in sql/schema/ that changes column types, between the drop and the remaking of
    the views and triggers that read them (readers_dropped.sql, readers_restored.sql)."""
    return "\n".join(schema_sql(n) for n in ("readers_dropped.sql", name, "readers_restored.sql"))


def config(url: str | None = None, connection: Any = None) -> Config:
    """An Alembic Config for pgjobs' own migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resource_dir("alembic")))
    if url is not None:
        cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def locked(url: str | None = None, connection: Any = None) -> Iterator[Any]:
    """A SQLAlchemy connection that holds LOCK_KEY while the block runs.

    On a caller's connection the lock is pg_advisory_xact_lock, released when
    the caller's transaction ends; the block's work commits with it. On a URL
    it is pg_advisory_lock on a connection of its own, taken and committed
    before the block so the block's transaction sees what the previous
    holder committed; the block's work is committed at its end, then the
    lock released.
    """
    from sqlalchemy import text

    if connection is not None:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        yield connection
        return
    if url is None:
        raise ValueError("give a url or a connection")
    import psycopg
    from sqlalchemy import create_engine, pool

    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=pool.NullPool
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            conn.commit()
            yield conn
            conn.commit()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            conn.commit()
        # After an error the connection is closed as it is, which releases the lock.
    finally:
        engine.dispose()


def upgrade(url: str | None = None, *, connection: Any = None, revision: str = "head") -> None:
    """Apply pgjobs' migrations, to a URL or on a SQLAlchemy connection (in its transaction).

    Holds LOCK_KEY throughout: migrations started together run one after the other.
    """
    with locked(url, connection) as conn:
        command.upgrade(config(connection=conn), revision)


def downgrade(url: str | None = None, *, connection: Any = None, revision: str = "base") -> None:
    """Revert pgjobs' migrations down to `revision`, holding LOCK_KEY as upgrade() does."""
    with locked(url, connection) as conn:
        command.downgrade(config(connection=conn), revision)


def current(url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('pgjobs.alembic_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute("SELECT version_num FROM pgjobs.alembic_version").fetchone()
        return None if row is None else str(row[0])
