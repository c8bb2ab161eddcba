"""An application's own Alembic runs pgjobs' migrations, both documented ways.

tests/alembic_project/ is that application: an env.py as `alembic init` writes
it plus pgjobs' lines, a `users` revision before pgjobs and an `orders` one
after it. alembic.ini takes pgjobs' revisions as a branch of its history
(version_locations); alembic_op.ini applies them from a revision of its own
(pgjobs.migrations.op_upgrade). Every test runs the real `alembic` command on a
database of its own, with pgjobs laid out as its wheel installs it, so
`pgjobs:alembic/versions` resolves as it does for an application.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from psycopg import sql as psql

import pgjobs
from pgjobs import migrations
from tests.support.common import ROOT

PROJECT = ROOT / "tests" / "alembic_project"
ALEMBIC = Path(sys.executable).with_name("alembic")
BRANCH = "alembic.ini"  # pgjobs' revisions as a branch of the application's history
OP = "alembic_op.ini"  # pgjobs' migrations applied from the application's revision
APP_REVISIONS = {
    BRANCH: ["app_0001_users", "app_0002_orders"],
    OP: ["op_0001_users", "op_0002_pgjobs", "op_0003_orders"],
}


def pgjobs_revisions() -> list[str]:
    """pgjobs' revisions, oldest first."""
    script = ScriptDirectory.from_config(migrations.config())
    return [s.revision for s in reversed(list(script.walk_revisions("base", "heads")))]


def pgjobs_head() -> str:
    return pgjobs_revisions()[-1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for PYTHONPATH holding pgjobs as its wheel lays it out: the package with
    alembic/ and sql/ inside it (pyproject's force-include), each entry a link to this
    checkout's."""
    site = tmp_path_factory.mktemp("site")
    package = site / "pgjobs"
    package.mkdir()
    for entry in (ROOT / "pgjobs").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for folder in ("alembic", "sql"):
        (package / folder).symlink_to(ROOT / folder)
    return site


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of tests/alembic_project: autogenerate writes its revision into the copy."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture
def database(admin_url: str) -> Iterator[str]:
    """An empty database on the test server, dropped at the end; its libpq URL."""
    name = f"pgjobs_alembic_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    drop = psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop)


def sqlalchemy_url(url: str) -> sa.URL:
    """The SQLAlchemy URL of a libpq URL, as an application's $DATABASE_URL would hold it."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = info.get("host")
    socket = host is not None and str(host).startswith("/")
    return sa.URL.create(
        "postgresql+psycopg",
        username=info.get("user"),
        password=info.get("password"),
        host=None if socket else host,
        port=int(info["port"]) if info.get("port") else None,
        database=info.get("dbname"),
        query={"host": str(host)} if socket else {},
    )


@dataclass
class Project:
    """The test application's Alembic, run as its developers run it."""

    project: Path
    url: str
    site: Path
    ini: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        path = os.pathsep.join(p for p in (str(self.site), os.environ.get("PYTHONPATH")) if p)
        return subprocess.run(
            [str(ALEMBIC), "-c", self.ini, *args],
            cwd=self.project,
            env={
                **os.environ,
                "PYTHONPATH": path,
                "DATABASE_URL": sqlalchemy_url(self.url).render_as_string(hide_password=False),
            },
            capture_output=True,
            text=True,
            timeout=180,
        )

    def alembic(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"alembic {' '.join(args)}:\n{done.stderr}"
        return done.stdout


def schema(url: str) -> dict[str, object]:
    """What the database holds: the pgjobs schema or not, the application's tables,
    and pgjobs' version."""
    with psycopg.connect(url, autocommit=True) as conn:
        has_pgjobs = conn.execute("SELECT to_regnamespace('pgjobs') IS NOT NULL").fetchone()
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()
    return {
        "pgjobs schema": bool(has_pgjobs and has_pgjobs[0]),
        "app tables": {r[0] for r in rows} - {"alembic_version"},
        "pgjobs version": migrations.current(url),
    }


def upgraded() -> dict[str, object]:
    return {
        "pgjobs schema": True,
        "app tables": {"users", "orders"},
        "pgjobs version": pgjobs_head(),
    }


EMPTY: dict[str, object] = {"pgjobs schema": False, "app tables": set(), "pgjobs version": None}


def enqueue_and_read(url: str) -> None:
    """A job enqueued through pgjobs, read back by pgjobs and through the application's view."""
    app = pgjobs.App(url)

    @app.task(name="ship_order")
    def ship_order(order_id: int) -> None: ...

    try:
        job = ship_order.enqueue(1)
        assert app.get_job(job.id).status == pgjobs.Status.PENDING
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
            conn.execute("INSERT INTO orders (id, user_id, job_id) VALUES (1, 1, %s)", [job.id])
            row = conn.execute("SELECT status FROM order_shipping WHERE order_id = 1").fetchone()
        assert row == ("pending",)
    finally:
        app.close()


def test_pgjobs_revisions_are_a_branch_of_the_applications_history(
    project: Path, database: str, installed: Path
) -> None:
    app = Project(project, database, installed, BRANCH)
    heads = app.alembic("heads")
    assert "app_0002_orders (app) (head)" in heads
    # "(effective head)" while the application's head depends on it.
    assert re.search(rf"^{pgjobs_head()} \(pgjobs\) \((effective )?head\)$", heads, re.M), heads
    history = app.alembic("history")
    for revision in [*pgjobs_revisions(), *APP_REVISIONS[BRANCH]]:
        assert revision in history

    app.alembic("upgrade", "heads")
    assert schema(database) == upgraded()
    # The application's version table holds both heads; pgjobs.alembic_version
    # (schema() above) moved with the branch.
    current = app.alembic("current")
    assert "app_0002_orders" in current and pgjobs_head() in current
    enqueue_and_read(database)

    app.alembic("downgrade", "base")
    assert schema(database) == EMPTY

    app.alembic("upgrade", "heads")
    assert schema(database) == upgraded()
    enqueue_and_read(database)


def test_the_branch_moves_on_its_own_by_its_label(
    project: Path, database: str, installed: Path
) -> None:
    app = Project(project, database, installed, BRANCH)
    app.alembic("upgrade", "pgjobs@head")
    assert schema(database) == {**upgraded(), "app tables": set()}
    app.alembic("upgrade", "heads")
    # orders depends on pgjobs' revision: going down past it takes orders down first.
    app.alembic("downgrade", "pgjobs@0011_domains")
    assert schema(database) == {
        "pgjobs schema": True,
        "app tables": {"users"},
        "pgjobs version": "0011_domains",
    }
    app.alembic("upgrade", "heads")
    assert schema(database) == upgraded()


def test_pgjobs_revisions_run_from_an_applications_revision(
    project: Path, database: str, installed: Path
) -> None:
    app = Project(project, database, installed, OP)
    history = app.alembic("history")
    for revision in APP_REVISIONS[OP]:
        assert revision in history

    app.alembic("upgrade", "head")
    assert schema(database) == upgraded()
    with psycopg.connect(database) as conn:
        # Written by the op.execute() that follows op_upgrade() in the same revision.
        comment = conn.execute("SELECT obj_description('pgjobs'::regnamespace)").fetchone()
    assert comment == ("background jobs: pgjobs",)
    enqueue_and_read(database)

    app.alembic("downgrade", "op_0002_pgjobs")
    assert schema(database) == {**upgraded(), "app tables": {"users"}}
    app.alembic("downgrade", "base")
    assert schema(database) == EMPTY

    app.alembic("upgrade", "head")
    assert schema(database) == upgraded()
    enqueue_and_read(database)


@pytest.mark.parametrize("ini", [BRANCH, OP])
@pytest.mark.parametrize("start", ["0010_no_insert_trigger", "0012_stuck_threads"])
def test_a_database_migrated_by_pgjobs_migrate_joins_the_applications_history(
    project: Path, database: str, installed: Path, ini: str, start: str
) -> None:
    migrations.upgrade(database, revision=start)  # what `pgjobs migrate` left
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO pgjobs.jobs (id, task) VALUES (gen_random_uuid(), 'old')")
    app = Project(project, database, installed, ini)
    # Had a revision pgjobs.alembic_version records run again, its CREATEs would fail.
    app.alembic("upgrade", "heads")
    assert schema(database) == upgraded()
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT task FROM pgjobs.jobs").fetchall() == [("old",)]
    enqueue_and_read(database)

    migrations.upgrade(database)  # `pgjobs migrate` again: nothing to do
    assert migrations.current(database) == pgjobs_head()

    app.alembic("downgrade", "base")
    assert schema(database) == EMPTY


@pytest.mark.parametrize("ini", [BRANCH, OP])
def test_autogenerate_in_the_application_leaves_pgjobs_schema_alone(
    project: Path, database: str, installed: Path, ini: str
) -> None:
    app = Project(project, database, installed, ini)
    app.alembic("upgrade", "heads")
    # The application's own branch: with pgjobs' beside it, Alembic needs to be told.
    head = ["--head", "app@head"] if ini == BRANCH else []
    out = app.alembic("revision", "--autogenerate", "-m", "nothing new", *head)
    (written,) = [line for line in out.splitlines() if "Generating" in line]
    text = Path(written.split("Generating ", 1)[1].split(" ...", 1)[0]).read_text()
    upgrade = text.split("def upgrade() -> None:", 1)[1].split("def downgrade", 1)[0]
    downgrade = text.split("def downgrade() -> None:", 1)[1]
    assert "op." not in upgrade and "op." not in downgrade, text

    # Without the filter the same comparison would drop pgjobs' tables.
    spec = importlib.util.spec_from_file_location("app_models", project / "app_models.py")
    assert spec is not None and spec.loader is not None
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    metadata = models.metadata
    engine = sa.create_engine(sqlalchemy_url(database), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        unfiltered = compare_metadata(
            MigrationContext.configure(conn, opts={"include_schemas": True}), metadata
        )
        filtered = compare_metadata(
            MigrationContext.configure(
                conn,
                opts={"include_schemas": True, "include_name": migrations.exclude_pgjobs},
            ),
            metadata,
        )
    engine.dispose()
    dropped = {d[1].schema for d in unfiltered if isinstance(d, tuple) and d[0] == "remove_table"}
    assert dropped == {"pgjobs"}
    assert filtered == []


LEGACY_REVISION = """
from alembic import op
import pgjobs.migrations

revision = "op_0002_pgjobs"
down_revision = "op_0001_users"
branch_labels = None
depends_on = None


def upgrade():
    pgjobs.migrations.upgrade(connection=op.get_bind())
    op.execute("COMMENT ON SCHEMA pgjobs IS 'background jobs: pgjobs'")


def downgrade():
    op.execute("COMMENT ON SCHEMA pgjobs IS NULL")
    pgjobs.migrations.downgrade(connection=op.get_bind())
"""


def test_upgrade_on_op_connection_from_a_revision_leaves_op_working(
    project: Path, database: str, installed: Path
) -> None:
    (project / "migrations" / "versions_op" / "op_0002_pgjobs.py").write_text(LEGACY_REVISION)
    app = Project(project, database, installed, OP)
    app.alembic("upgrade", "head")
    assert schema(database) == upgraded()
    app.alembic("downgrade", "base")
    assert schema(database) == EMPTY


ENV_PY_PLACES = {
    # In Alembic's transaction, committed with the application's revisions.
    "in begin_transaction": (
        "            context.run_migrations()",
        "            migrations.upgrade(connection=connection)\n",
    ),
    # Before configure: committed first, as Alembic leaves a transaction it finds
    # open on the connection to its owner.
    "before configure": (
        "        context.configure(\n            connection=connection,",
        "        migrations.upgrade(connection=connection)\n        connection.commit()\n",
    ),
}


@pytest.mark.parametrize("place", ENV_PY_PLACES)
def test_upgrade_on_the_connection_in_env_py_applies_pgjobs_and_leaves_context_working(
    project: Path, database: str, installed: Path, place: str
) -> None:
    env = project / "migrations" / "env.py"
    text = env.read_text()
    anchor, line = ENV_PY_PLACES[place]
    assert anchor in text
    text = text.replace(anchor, line + anchor, 1)
    env.write_text(text.replace("import os\n", "import os\n\nfrom pgjobs import migrations\n", 1))
    # The application's own revisions alone: pgjobs comes from env.py.
    versions = project / "migrations" / "versions_op"
    (versions / "op_0002_pgjobs.py").unlink()
    orders = versions / "op_0003_orders.py"
    orders.write_text(orders.read_text().replace('"op_0002_pgjobs"', '"op_0001_users"'))
    app = Project(project, database, installed, OP)
    app.alembic("upgrade", "head")
    assert schema(database) == upgraded()
    enqueue_and_read(database)


def test_pgjobs_revisions_record_their_version_outside_pgjobs_env() -> None:
    """Each revision file runs through a Step, which keeps pgjobs.alembic_version
    when an application's Alembic runs it."""
    script = ScriptDirectory.from_config(migrations.config())
    for revision in pgjobs_revisions():
        module = script.get_revision(revision).module  # type: ignore[union-attr]
        step = getattr(module, "step", None)
        assert isinstance(step, migrations.Step), f"{revision}: no `step = Step(revision)`"
        assert step.revision == revision


def test_version_location_is_where_alembic_finds_the_installed_revisions(
    installed: Path,
) -> None:
    assert (migrations.version_location() / "0001_initial.py").is_file()
    code = (
        "from alembic.util import coerce_resource_to_filename as f\n"
        "from pgjobs.migrations import version_location as v\n"
        "print(f('pgjobs:alembic/versions').resolve() == v().resolve())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=installed,  # not the checkout, whose pgjobs/ `python -c` would import first
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr


def test_op_upgrade_outside_a_revision_and_unknown_revisions_are_one_line_errors(
    database: str,
) -> None:
    with pytest.raises(CommandError, match=r"runs inside an Alembic revision"):
        migrations.op_upgrade()
    engine = sa.create_engine(sqlalchemy_url(database), poolclass=sa.pool.NullPool)
    with engine.connect() as conn, pytest.raises(CommandError, match="no revision 'nope'"):
        migrations.upgrade(connection=conn, revision="nope")
    engine.dispose()
    assert schema(database) == EMPTY
