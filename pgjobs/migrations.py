"""Migrations: Alembic revisions whose DDL is the plain SQL in sql/schema/."""

from __future__ import annotations

from typing import Any

from alembic.config import Config

from alembic import command
from pgjobs.queries import resource_dir

#: Alembic keeps pgjobs' revision in its own table, so an application's own
#: Alembic history and pgjobs' never share a version row.
VERSION_TABLE = "alembic_version"
VERSION_SCHEMA = "pgjobs"


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


def upgrade(url: str | None = None, *, connection: Any = None, revision: str = "head") -> None:
    """Apply pgjobs' migrations, to a URL or on a SQLAlchemy connection (in its transaction)."""
    command.upgrade(config(url, connection), revision)


def downgrade(url: str | None = None, *, connection: Any = None, revision: str = "base") -> None:
    """Revert pgjobs' migrations down to `revision`."""
    command.downgrade(config(url, connection), revision)


def current(url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('pgjobs.alembic_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute("SELECT version_num FROM pgjobs.alembic_version").fetchone()
        return None if row is None else str(row[0])
