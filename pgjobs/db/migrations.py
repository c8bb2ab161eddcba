"""Migrations: Alembic revisions whose DDL is the plain SQL in sql/schema/.

pgjobs' revisions run three ways, and after each `pgjobs.alembic_version`
says where pgjobs' schema stands:

- `pgjobs migrate`, upgrade(url): Alembic with pgjobs' own env.py, whose
  version table is pgjobs.alembic_version.
- As a branch of an application's Alembic (its `version_locations` name
  version_location(); the branch is labelled `pgjobs`): the application's
  version table records the branch, and each pgjobs revision also moves
  pgjobs.alembic_version, running its SQL only when that table says the step
  is not done. So `pgjobs migrate` (or App.migrate()) and the application's
  `alembic upgrade heads` may both run on one database, in either order.
- From an application's own revision, op_upgrade() and op_downgrade(), or
  from any code holding a connection, upgrade(connection=...): the revisions'
  SQL runs on that connection step by step. No Alembic command is nested in
  the caller's: a nested one would install its own `op` and `context` proxies
  over the caller's, and remove them when it ends, under the caller's
  still-running migration.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic.config import Config
from alembic.util import CommandError

from alembic import command
from pgjobs.db import driver
from pgjobs.db.connections import connect
from pgjobs.db.queries import resource_dir, sql

if TYPE_CHECKING:
    from alembic.environment import NameFilterParentNames, NameFilterType
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

#: Alembic keeps pgjobs' revision in its own table, so an application's own
#: Alembic history and pgjobs' never share a version row.
VERSION_TABLE = "alembic_version"
VERSION_SCHEMA = "pgjobs"

#: The branch label of pgjobs' revisions in an application's Alembic history.
BRANCH = "pgjobs"

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


def version_location() -> Path:
    """The folder of pgjobs' revision files, wherever pgjobs is installed.

    For an application's Alembic `version_locations`, where an installed pgjobs
    is also `pgjobs:alembic/versions`.
    """
    return resource_dir("alembic") / "versions"


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
def locked(
    url: str | None = None, connection: Any = None, *, pooler: str | None = None
) -> Iterator[Any]:
    """A SQLAlchemy connection that holds LOCK_KEY while the block runs.

    On a caller's connection the lock is pg_advisory_xact_lock, released when
    the caller's transaction ends; the block's work commits with it. On a URL
    it is pg_advisory_lock on a connection of its own, taken and committed
    before the block so the block's transaction sees what the previous
    holder committed; the block's work is committed at its end, then the
    lock released.

    With a `pooler` mode (pgjobs.db.driver.pooler_mode) the URL may lead through a
    transaction pooler, where a session lock would stay on whichever server
    connection took it: the lock is then pg_advisory_xact_lock, the first
    statement of the one transaction the block's work runs in (Alembic's
    env.py runs every revision in the transaction it finds). In READ COMMITTED
    each statement after it sees what the previous holder committed.
    """
    from sqlalchemy import text

    if connection is not None:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        yield connection
        return
    if url is None:
        raise ValueError("give a url or a connection")
    from sqlalchemy import create_engine, pool

    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: connect(url, pooler=pooler),
        poolclass=pool.NullPool,
    )
    try:
        with engine.connect() as conn:
            if pooler is not None:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                yield conn
                conn.commit()
                return
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            conn.commit()
            yield conn
            conn.commit()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            conn.commit()
        # After an error the connection is closed as it is, which releases the lock.
    finally:
        engine.dispose()


def upgrade(
    url: str | None = None,
    *,
    connection: Any = None,
    revision: str = "head",
    pooler: str | None = None,
) -> None:
    """Apply pgjobs' migrations, to a URL or on a SQLAlchemy connection (in its transaction).

    On a URL this is `pgjobs migrate`: Alembic with pgjobs' own env.py. On a
    connection it runs no Alembic command, so it may be called from an
    application's env.py or revision as well as from plain code; it brings the
    schema up to at least `revision` and never down. Holds LOCK_KEY
    throughout: migrations started together run one after the other. `pooler`: see
    locked().
    """
    if connection is not None:
        _move(connection, _resolve(revision), up=True)
        return
    with locked(url, pooler=pooler) as conn:
        command.upgrade(config(connection=conn), revision)


def downgrade(url: str | None = None, *, connection: Any = None, revision: str = "base") -> None:
    """Revert pgjobs' migrations down to `revision`, holding LOCK_KEY as upgrade() does.

    On a connection it brings the schema down to at most `revision`, and at
    base drops pgjobs.alembic_version too, and the pgjobs schema once empty.
    """
    if connection is not None:
        _move(connection, _resolve(revision), up=False)
        return
    with locked(url) as conn:
        command.downgrade(config(connection=conn), revision)


def op_upgrade(revision: str = "head") -> None:
    """Inside an application's Alembic revision: bring pgjobs' schema up to `revision`.

    Runs on op.get_bind(), in the application's migration transaction, and
    records the revision in pgjobs.alembic_version (not in the application's
    version table), so `pgjobs migrate` and the App see where the schema is.
    "head" is pgjobs' head when the revision runs: a newer pgjobs' revisions
    come with a later revision of the application's, or `pgjobs migrate`.
    """
    upgrade(connection=_op_connection("op_upgrade"), revision=revision)


def op_downgrade(revision: str = "base") -> None:
    """Inside an application's Alembic revision: bring pgjobs' schema down to `revision`
    (by default base: the pgjobs schema is dropped once nothing else is in it)."""
    downgrade(connection=_op_connection("op_downgrade"), revision=revision)


def exclude_pgjobs(
    name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames
) -> bool:
    """An `include_name` filter for an application's autogenerate: all but the pgjobs schema.

    Autogenerate with include_schemas=True would otherwise see pgjobs' tables
    in the database and not in the application's metadata, and drop them.
    """
    if type_ == "schema":
        return name != VERSION_SCHEMA
    return parent_names.get("schema_name") != VERSION_SCHEMA


def current(url: str, pooler: str | None = None) -> str | None:
    """The revision the database is at, or None before the first migration."""
    with connect(url, pooler=pooler, autocommit=True) as conn:
        revision: str | None = driver.run(revision_op(), conn)
        return revision


def revision_op() -> Generator[Any, Any, str | None]:
    """The revision pgjobs.alembic_version records; None for none (or no table)."""
    exists = yield "schema_version", {}, "one"
    if not exists or not exists["migrated"]:
        return None
    row = yield "schema_revision", {}, "one"
    return None if row is None else str(row["version_num"])


@dataclass(frozen=True)
class Step:
    """One pgjobs revision: sql/schema/<revision>.sql, and <revision>.down.sql to revert it.

    A revision file's upgrade() and downgrade() call its step's, which use
    Alembic's `op` alone and so run under any env.py. Under pgjobs' own,
    Alembic keeps pgjobs.alembic_version and the step runs its SQL. Under an
    application's, the step moves pgjobs' schema and pgjobs.alembic_version
    together, and does nothing where that table says the schema is already
    there (`pgjobs migrate` got there first).
    """

    revision: str
    #: The revision changes column types: its SQL runs between
    #: readers_dropped.sql and readers_restored.sql.
    retype: bool = False

    def sql(self, *, up: bool) -> str:
        name = f"{self.revision}.sql" if up else f"{self.revision}.down.sql"
        return retype_sql(name) if self.retype else schema_sql(name)

    def upgrade(self) -> None:
        self._run(up=True)

    def downgrade(self) -> None:
        self._run(up=False)

    def _run(self, *, up: bool) -> None:
        from alembic import op

        context = op.get_context()
        if (
            context.version_table_schema == VERSION_SCHEMA
            and context.version_table == VERSION_TABLE
        ):
            _execute(op.get_bind(), self.sql(up=up))
            return
        if context.as_sql:
            raise CommandError(
                "pgjobs' revisions read pgjobs.alembic_version as they run: "
                "they cannot be rendered as SQL offline (--sql)"
            )
        chain = _chain()
        at = chain.index(self.revision)
        if up:
            _move(op.get_bind(), self.revision, up=True)
        else:
            _move(op.get_bind(), chain[at - 1] if at > 0 else None, up=False)


def _op_connection(caller: str) -> Connection:
    from alembic import op

    try:
        context = op.get_context()
    # No migration is running: Alembic's proxy was never set (NameError), or
    # was set and then removed (AttributeError on None).
    except (NameError, AttributeError):
        raise CommandError(
            f"pgjobs.migrations.{caller}() runs inside an Alembic revision's upgrade() or "
            "downgrade(); elsewhere give a connection to upgrade() or downgrade()"
        ) from None
    if context.as_sql:
        raise CommandError(
            f"pgjobs.migrations.{caller}() reads pgjobs.alembic_version as it runs: "
            "it cannot be rendered as SQL offline (--sql)"
        )
    return op.get_bind()


@functools.cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


@functools.cache
def _chain() -> tuple[str, ...]:
    """pgjobs' revisions, oldest first: one line of history, with no branches."""
    return tuple(reversed([s.revision for s in _script().walk_revisions("base", "heads")]))


def _step(revision: str) -> Step:
    script = _script().get_revision(revision)
    assert script is not None
    step = script.module.step
    assert isinstance(step, Step)
    return step


def _resolve(revision: str) -> str | None:
    """A revision id of pgjobs', None for base; head and base as Alembic spells them."""
    chain = _chain()
    if revision in ("head", "heads", f"{BRANCH}@head"):
        return chain[-1]
    if revision in ("base", f"{BRANCH}@base"):
        return None
    if revision in chain:
        return revision
    raise CommandError(
        f"pgjobs has no revision {revision!r}: give head, base or one of {', '.join(chain)}"
    )


def _position(revision: str | None) -> int:
    """Where a revision is in _chain(); -1 for base."""
    if revision is None:
        return -1
    try:
        return _chain().index(revision)
    except ValueError:
        raise CommandError(
            f"the pgjobs schema is at revision {revision!r}, which this pgjobs does not have: "
            "install the pgjobs that made it"
        ) from None


#: pgjobs' version table. Outside pgjobs' own env.py it is read and written here
#: with the table definition Alembic uses, not through a MigrationContext of
#: Alembic's: each of those logs its set-up, twice a revision.
_VERSION = f"{VERSION_SCHEMA}.{VERSION_TABLE}"


def _version(connection: Connection) -> str | None:
    """The revision pgjobs.alembic_version records; None for none (or no table)."""
    # The named statements of revision_op(), run on Alembic's connection.
    if not connection.exec_driver_sql(sql("schema_version")).scalar_one():
        return None
    row = connection.exec_driver_sql(sql("schema_revision")).scalar_one_or_none()
    return None if row is None else str(row)


def _stamp(connection: Connection, revision: str | None) -> None:
    from sqlalchemy import text

    connection.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {_VERSION} (version_num VARCHAR(32) NOT NULL,"
            f" CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    connection.execute(text(f"DELETE FROM {_VERSION}"))
    if revision is not None:
        connection.execute(
            text(f"INSERT INTO {_VERSION} (version_num) VALUES (:v)"), {"v": revision}
        )


def _execute(connection: Connection, sql: str) -> None:
    """Run a schema file's text. exec_driver_sql() hands it to psycopg with an empty
    parameter list, so each '%' of its own (a format() pattern, RAISE, modulo) is
    doubled to reach Postgres as one."""
    connection.exec_driver_sql(sql.replace("%", "%%"))


def _move(connection: Connection, target: str | None, *, up: bool) -> None:
    """Run pgjobs' revisions on the connection, in its transaction, from where
    pgjobs.alembic_version says the schema is: up to at least `target`, or down to
    at most it (None: base). Each step's SQL, then its version.
    """
    from sqlalchemy import text

    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    chain = _chain()
    here = _position(_version(connection))
    there = _position(target)
    if up and here < there:
        # The version table lives in the pgjobs schema, which must exist first.
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}"))
        for revision in chain[here + 1 : there + 1]:
            _execute(connection, _step(revision).sql(up=True))
            _stamp(connection, revision)
    elif not up and here > there:
        for at in range(here, there, -1):
            _execute(connection, _step(chain[at]).sql(up=False))
            _stamp(connection, chain[at - 1] if at > 0 else None)
        if there < 0:
            _drop_version_table(connection)


def _drop_version_table(connection: Connection) -> None:
    """At base, inside an application's migration: nothing of pgjobs' is left behind.
    The schema goes too unless something else is in it (every object in a
    schema has a pg_depend row on it)."""
    from sqlalchemy import text

    connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_SCHEMA}.{VERSION_TABLE}"))
    left = connection.execute(
        text(
            "SELECT count(*) FROM pg_depend"
            " WHERE refclassid = 'pg_namespace'::regclass AND refobjid = to_regnamespace(:schema)"
        ),
        {"schema": VERSION_SCHEMA},
    ).scalar_one()
    if left == 0:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {VERSION_SCHEMA}"))
