"""pgjobs.testing and its pytest plugin: perform, drain, the enqueue assertions, the fixtures."""

from __future__ import annotations

import asyncio
import math
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as psql

import pgjobs
from pgjobs import testing
from pgjobs.testing import (
    adrain,
    aperform,
    assert_enqueued,
    drain,
    enqueued,
    perform,
    refute_enqueued,
)
from tests import sample_app
from tests.support.common import ROOT, count

# Tasks of an App that never connects: perform() writes nothing.
offline = pgjobs.App()


@offline.task
def nan_progress() -> None:
    pgjobs.current_job().set_progress(math.nan)


@offline.task
def nan_result() -> float:
    return math.nan


# -- perform -------------------------------------------------------------------------


def test_perform_gives_the_task_its_job_through_current_job() -> None:
    keyed = sample_app.whoami.options(queue="elsewhere", retries=2, dedup_key="invoice-7")
    seen = perform(keyed)
    assert seen == {
        "id": seen["id"],
        "task": "whoami",
        "queue": "elsewhere",
        "attempt": 1,
        "max_attempts": 3,
        "idempotency_key": "invoice-7",
    }
    plain = perform(sample_app.whoami)
    assert plain["idempotency_key"] == f"pgjobs-{plain['id']}"
    assert plain["id"] != seen["id"] and plain["queue"] == "default"
    assert perform(sample_app.progress, 2, 0) == "done"  # set_progress() works
    assert perform(sample_app.aprogress, 2, 0) == "done"


def test_perform_refuses_progress_a_worker_could_not_store() -> None:
    with pytest.raises(ValueError, match="progress must be finite"):
        perform(nan_progress)


def test_perform_raises_the_same_validation_error_as_enqueue(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    for args in [("x", 1), (1,), (1, 2, 3)]:
        with pytest.raises(pgjobs.InvalidArguments) as at_enqueue:
            sample_app.add.enqueue(*args)
        with pytest.raises(pgjobs.InvalidArguments) as at_perform:
            perform(sample_app.add, *args)
        assert str(at_perform.value) == str(at_enqueue.value)
    with pytest.raises(pgjobs.InvalidArguments, match="priority must fit"):
        perform(sample_app.add.options(priority=40_000), 1, 2)
    assert count(db) == 0


def test_perform_returns_the_result_a_worker_stores(app: Any) -> None:
    args = ("2026-03-04T05:06:07Z", {"street": "s", "city": "Oslo"}, ("t",))
    # Declared types on the way in (datetime, a model), JSON on the way out.
    expected = {
        "when_type": "datetime",
        "year": 2026,
        "where_type": "Address",
        "city": "Oslo",
        "tags": ["t"],
        "note": None,
    }
    assert perform(sample_app.typed, *args) == expected
    job = sample_app.typed.enqueue(*args)
    drain(app)
    assert job.refresh().result == perform(sample_app.typed, *args)
    # Dict keys become strings and tuples lists, as in the database.
    assert perform(sample_app.store, {"k": (1, 2)}) == {"k": [1, 2]}
    assert perform(sample_app.variadic, 1, "2", tag="x") == {"items": [1, 2], "extra": {"tag": "x"}}


def test_perform_raises_what_failed_the_attempt() -> None:
    with pytest.raises(ValueError, match=r"^broken$"):
        perform(sample_app.fail, "broken")
    with pytest.raises(RuntimeError, match=r"^async broken$"):
        perform(sample_app.afail, "async broken")
    with pytest.raises(pgjobs.SerializationError, match="return value cannot be stored"):
        perform(sample_app.unserialisable)
    with pytest.raises(pgjobs.SerializationError, match="nan_result"):
        perform(nan_result)


def test_perform_applies_the_task_time_limits() -> None:
    assert perform(sample_app.soft_wrap, 5) == "wrapped up"
    with pytest.raises(pgjobs.HardTimeout):
        perform(sample_app.async_overrun, 5)


def test_aperform_runs_in_the_caller_event_loop_and_perform_says_to_use_it() -> None:
    async def main() -> tuple[Any, Any]:
        with pytest.raises(RuntimeError, match=r"use `await pgjobs\.testing\.aperform"):
            perform(sample_app.add, 1, 2)
        return await aperform(sample_app.aadd, 2, 3), await aperform(sample_app.add, 4, 5)

    assert asyncio.run(main()) == (5, 9)


def test_perform_takes_only_tasks() -> None:
    with pytest.raises(TypeError, match=r"takes a task made with @app\.task"):
        perform(sample_app.add.fn, 1, 2)  # type: ignore[arg-type]


# -- drain ---------------------------------------------------------------------------


def test_drain_runs_what_is_ready_and_tells_how_it_ended(app: Any) -> None:
    added = sample_app.add.enqueue(1, 2)
    failed = sample_app.fail.enqueue("no")
    other = sample_app.elsewhere.enqueue()
    later = sample_app.add.options(delay=3600).enqueue(3, 4)

    ran = drain(app, queues=["default"])
    assert [job.id for job in ran.jobs] == [added.id, failed.id]
    assert ran.counts == {"succeeded": 1, "failed": 1}
    assert (ran.succeeded, ran.failed, len(ran)) == (1, 1, 2)
    assert ran.jobs[0].result == 3
    assert other.refresh().status is pgjobs.Status.PENDING
    assert later.refresh().status is pgjobs.Status.SCHEDULED

    rest = drain(app)  # every queue of the App's tasks
    assert [job.id for job in rest.jobs] == [other.id]
    assert len(drain(app)) == 0


def test_drain_runs_the_jobs_its_jobs_enqueue(app: Any) -> None:
    flow = pgjobs.chain(sample_app.add.s(1, 2), sample_app.add.s(10)).enqueue()
    ran = drain(app)
    assert ran.counts == {"succeeded": 2}
    assert ran.jobs[-1].result == 13
    assert flow.wait(5) == 13


def test_adrain_is_the_async_twin(app: Any) -> None:
    job = sample_app.aadd.enqueue(2, 2)

    async def main() -> testing.Drained:
        with pytest.raises(RuntimeError, match="adrain"):
            drain(app)
        return await adrain(app, queues="default", concurrency=1)

    assert asyncio.run(main()).jobs[0].id == job.id
    assert job.wait(5) == 4


def test_drain_of_an_app_without_tasks_says_so() -> None:
    with pytest.raises(pgjobs.ConfigurationError, match="has no tasks"):
        drain(pgjobs.App())


# -- enqueued, assert_enqueued, refute_enqueued -------------------------------------------


def test_enqueued_compares_arguments_as_enqueue_stores_them(app: Any) -> None:
    job = sample_app.typed.enqueue(
        "2026-03-04T05:06:07Z", sample_app.Address(street="s", city="O"), ("a",)
    )
    keyed = sample_app.variadic.options(queue="side").enqueue(1, 2, tag="x")
    assert enqueued(app) == [job, keyed]
    # A string for a datetime, a model or its fields, a tuple for a list: all as stored.
    same = enqueued(
        app,
        task=sample_app.typed,
        args=["2026-03-04T05:06:07+00:00", {"street": "s", "city": "O"}, ["a"]],
    )
    assert [j.id for j in same] == [job.id]
    assert enqueued(app, task="variadic", args=("1", 2), kwargs={"tag": "x"}, queue="side") == [
        keyed
    ]
    assert enqueued(app, task="variadic", args=[1, 2], kwargs={}) == []
    assert enqueued(app, queue="default") == [job]
    assert enqueued(app, task="never_registered") == []
    with pytest.raises(pgjobs.InvalidArguments, match="'when'"):
        enqueued(app, task=sample_app.typed, args=["not a date"])


def test_assert_enqueued_returns_the_matches_or_lists_what_was_enqueued(app: Any) -> None:
    with pytest.raises(AssertionError) as nothing:
        assert_enqueued(app, task=sample_app.add)
    assert str(nothing.value) == (
        "expected a job matching task='add', found 0; "
        "nothing was enqueued (status blocked/scheduled/pending/retrying)"
    )
    first = sample_app.add.enqueue(1, 2)
    second = sample_app.add.enqueue(1, 2)
    sample_app.store.options(queue="side").enqueue({"k": "v"})
    assert assert_enqueued(app, task=sample_app.add, args=(1, 2)) == [first, second]
    assert assert_enqueued(app, task="add", args=[1, 2], count=2) == [first, second]

    with pytest.raises(AssertionError) as wrong:
        assert_enqueued(app, task=sample_app.add, args=[2, 1])
    assert str(wrong.value) == (
        "expected a job matching task='add', args=[2, 1], found 0; "
        "enqueued (status blocked/scheduled/pending/retrying), 3 jobs:\n"
        "  add(1, 2) queue='default' status=pending\n"
        "  add(1, 2) queue='default' status=pending\n"
        "  store({'k': 'v'}) queue='side' status=pending"
    )
    with pytest.raises(AssertionError, match=r"^expected 1 job matching task='add', found 2; "):
        assert_enqueued(app, task="add", count=1)


def test_assert_enqueued_looks_at_waiting_jobs_unless_told_a_status(app: Any) -> None:
    job = sample_app.add.enqueue(1, 2)
    drain(app)
    with pytest.raises(AssertionError, match="nothing was enqueued"):
        assert_enqueued(app, task="add")
    assert assert_enqueued(app, task="add", status="succeeded")[0].id == job.id
    assert assert_enqueued(app, task="add", status=None)[0].result == 3
    with pytest.raises(ValueError, match="unknown status"):
        enqueued(app, status="done")


def test_a_failed_assertion_lists_at_most_twenty_jobs(app: Any) -> None:
    sample_app.add.enqueue_many([(n, n) for n in range(25)])
    with pytest.raises(AssertionError) as failed:
        assert_enqueued(app, task="add", args=[99, 99])
    lines = str(failed.value).splitlines()
    assert len(lines) == 22 and lines[-1] == "  ... and 5 more"


def test_refute_enqueued_passes_or_lists_the_matches(app: Any) -> None:
    refute_enqueued(app, task=sample_app.add)
    sample_app.add.enqueue(1, 2)
    sample_app.add.enqueue(3, 4)
    refute_enqueued(app, task=sample_app.add, args=[2, 1])
    refute_enqueued(app, task="add", queue="other")
    with pytest.raises(AssertionError) as found:
        refute_enqueued(app, task="add", args=[3, 4])
    assert str(found.value) == (
        "expected no job matching task='add', args=[3, 4]; "
        "enqueued (status blocked/scheduled/pending/retrying), 1 job:\n"
        "  add(3, 4) queue='default' status=pending"
    )


# -- reset and temporary_database ---------------------------------------------------------


def test_reset_empties_pgjobs_tables_of_a_test_database(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    sample_app.add.enqueue(1, 2)
    sample_app.fail.enqueue("x")
    drain(app)
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 1
    testing.reset(app)
    for table in ("jobs", "attempts", "dead_letters", "workers"):
        assert count(db, f"SELECT count(*) FROM pgjobs.{table}") == 0
    assert count(db, "SELECT count(*) FROM pgjobs.alembic_version") == 1


def test_reset_refuses_a_database_not_named_for_tests(admin_url: str) -> None:
    name = f"pgjobs_guard_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    try:
        live = pgjobs.App(psycopg.conninfo.make_conninfo(admin_url, dbname=name))
        with pytest.raises(pgjobs.ConfigurationError, match=f"'{name}' is not one"):
            testing.reset(live)
        live.close()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(psql.SQL("DROP DATABASE {} WITH (FORCE)").format(psql.Identifier(name)))


def test_temporary_database_is_migrated_then_dropped(admin_url: str) -> None:
    with testing.temporary_database(admin_url) as url:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        assert re.fullmatch(rf"pgjobs_test_{os.getpid()}_[0-9a-f]{{8}}", str(name))
        with psycopg.connect(url) as conn:
            assert count(conn) == 0
    with psycopg.connect(admin_url) as conn:
        assert count(conn, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == 0


def test_temporary_database_says_why_it_cannot_be_made(admin_url: str) -> None:
    with (
        pytest.raises(pgjobs.ConfigurationError, match=r"^cannot create a test database on "),
        testing.temporary_database(psycopg.conninfo.make_conninfo(admin_url, port="1")),
    ):
        pass


# -- the pytest plugin --------------------------------------------------------------------


def test_the_plugin_is_declared_as_a_pytest_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"pgjobs": "pgjobs.pytest_plugin"}


def _run_pytest(
    where: Path, *args: str, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest in a directory of its own, with pgjobs' plugin as an installed project gets it."""
    installed = any(ep.value == "pgjobs.pytest_plugin" for ep in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "pgjobs.pytest_plugin"]  # a venv not reinstalled yet
    environ = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    # The dev extras' heaviest plugins are left out: they take seconds to load, and no
    # test here uses them.
    quiet = ["-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *quiet, *plugin, *args],
        cwd=where,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url) as conn:
        return count(conn, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == 1


@pytest.mark.processes
def test_the_fixtures_give_the_named_app_on_a_database_of_the_session_own(
    tmp_path: Path, admin_url: str
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\npgjobs_app = jobs_module:app\n")
    (tmp_path / "jobs_module.py").write_text(
        textwrap.dedent(
            """
            import pgjobs

            app = pgjobs.App("postgresql://nobody@127.0.0.1:1/not_this_one")


            @app.task(queue="mail")
            def greet(name: str) -> str:
                return f"hello {name}, attempt {pgjobs.current_job().attempt}"
            """
        )
    )
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import pathlib

            import psycopg

            import jobs_module
            from pgjobs.testing import assert_enqueued, drain, enqueued


            def test_first(pgjobs_app, pgjobs_url):
                assert pgjobs_app is jobs_module.app and pgjobs_app.url == pgjobs_url
                name = psycopg.conninfo.conninfo_to_dict(pgjobs_url)["dbname"]
                pathlib.Path("dbname.txt").write_text(name)
                [job] = [jobs_module.greet.enqueue("ada")]
                assert_enqueued(pgjobs_app, task="greet", args=["ada"], queue="mail")
                assert drain(pgjobs_app).succeeded == 1
                assert job.refresh().result == "hello ada, attempt 1"
                jobs_module.greet.enqueue("left behind")


            def test_second_starts_with_empty_tables(pgjobs_app):
                assert enqueued(pgjobs_app, status=None) == []
            """
        )
    )
    done = _run_pytest(tmp_path, env={"PGJOBS_TEST_URL": admin_url, "PGJOBS_URL": None})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    name = (tmp_path / "dbname.txt").read_text()
    assert re.fullmatch(r"pgjobs_test_\d+_[0-9a-f]{8}", name)
    assert not _exists(admin_url, name)  # dropped at the end of the session


@pytest.mark.processes
def test_the_command_line_url_comes_before_the_environment(tmp_path: Path, admin_url: str) -> None:
    (tmp_path / "test_inner.py").write_text(
        "def test_bare_app(pgjobs_app):\n    assert pgjobs_app.tasks == {}\n"
    )
    done = _run_pytest(
        tmp_path,
        f"--pgjobs-url={admin_url}",
        env={"PGJOBS_TEST_URL": "postgresql://nobody@127.0.0.1:1/x", "PGJOBS_URL": None},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


@pytest.mark.processes
def test_the_fixtures_say_in_one_line_what_they_miss(tmp_path: Path, admin_url: str) -> None:
    (tmp_path / "test_inner.py").write_text("def test_needs_app(pgjobs_app):\n    pass\n")
    no_url = _run_pytest(tmp_path, env={"PGJOBS_TEST_URL": None, "PGJOBS_URL": None})
    assert no_url.returncode == 1
    assert (
        "pgjobs: the pgjobs_app fixture needs a Postgres server to make its test database on: "
        "pass --pgjobs-url, or set $PGJOBS_TEST_URL or $PGJOBS_URL"
    ) in no_url.stdout
    assert "Traceback" not in no_url.stdout

    (tmp_path / "pytest.ini").write_text("[pytest]\npgjobs_app = jobs_module\n")
    bad_spec = _run_pytest(tmp_path, env={"PGJOBS_TEST_URL": admin_url})
    assert bad_spec.returncode == 1
    assert "pgjobs: the ini option pgjobs_app must look like 'package.module:app'" in (
        bad_spec.stdout
    )


@pytest.mark.processes
def test_a_project_that_uses_no_fixture_never_connects(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text("def test_plain():\n    assert True\n")
    done = _run_pytest(
        tmp_path, env={"PGJOBS_TEST_URL": "postgresql://nobody@127.0.0.1:1/x", "PGJOBS_URL": None}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


# -- the README's example ------------------------------------------------------------------


def readme_example() -> str:
    """The test file in the testing guide's "A complete test file" section."""
    readme = (ROOT / "docs" / "guides" / "testing.md").read_text()
    section = readme.split("\n## A complete test file\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(# test_signup\.py\n.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the testing guide has one test_signup.py example"
    return str(blocks[0])


@pytest.mark.processes
def test_the_readme_testing_example_runs_and_passes(tmp_path: Path, admin_url: str) -> None:
    (tmp_path / "test_signup.py").write_text(readme_example())
    done = _run_pytest(tmp_path, env={"PGJOBS_TEST_URL": admin_url, "PGJOBS_URL": None})
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^3 passed", done.stdout.splitlines()[-1]), done.stdout
