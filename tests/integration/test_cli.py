"""The command line: real `pgjobs` processes; a user's mistake is one line and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest

import pgjobs as pgjobs_lib
from tests.support.common import ROOT, count

# Each test runs `pgjobs` commands as processes of their own.
pytestmark = pytest.mark.processes

APP = "tests.sample_app:app"


def pgjobs(
    *args: str, url: str | None = None, env_vars: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_vars or {})}
    if url is not None:
        env["PGJOBS_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.startswith("Error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr, result.stderr


def test_enqueue_status_jobs_and_queues(db: psycopg.Connection[Any], db_url: str) -> None:
    made = pgjobs("enqueue", "add", "--app", APP, "--args", "[2, 3]")
    assert made.returncode == 0, made.stderr
    job_id = made.stdout.strip()
    assert count(db) == 1

    status = pgjobs("status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["job_id"] == job_id and view["status"] == "pending"
    assert view["is_terminal"] is False and view["result"] is None

    drained = pgjobs("worker", APP, "--burst")
    assert drained.returncode == 0, drained.stderr
    plain = pgjobs("status", job_id)
    assert "succeeded" in plain.stdout and "result: 5" in plain.stdout

    listing = pgjobs("jobs", "--task", "add", "--json")
    assert [j["job_id"] for j in json.loads(listing.stdout)["jobs"]] == [job_id]
    table = pgjobs("queues")
    assert table.returncode == 0
    assert "default" in table.stdout and "succeeded" in table.stdout


def test_enqueue_with_kwargs_queue_delay_and_dedup_key(db: psycopg.Connection[Any]) -> None:
    first = pgjobs(
        "enqueue",
        "add",
        "--app",
        APP,
        "--kwargs",
        '{"a": 1, "b": 2}',
        "--queue",
        "q9",
        "--delay",
        "60",
        "--dedup-key",
        "once",
    )
    again = pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 2]", "--dedup-key", "once")
    assert first.returncode == 0 and again.returncode == 0
    assert again.stdout.startswith(first.stdout.strip())
    assert "existing job" in again.stdout
    row = db.execute("SELECT queue, status, kwargs FROM pgjobs.jobs").fetchall()
    assert row == [("q9", "scheduled", {"a": 1, "b": 2})]


def test_user_mistakes_are_one_clear_line(db: psycopg.Connection[Any]) -> None:
    one_line_error(pgjobs("enqueue", "nope", "--app", APP), "no task named 'nope' is registered")
    one_line_error(pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 'x']"), "not valid JSON")
    one_line_error(
        pgjobs("enqueue", "add", "--app", APP, "--args", '[1, "x"]'),
        "argument 'b': Input should be a valid integer",
    )
    one_line_error(pgjobs("enqueue", "add", "--app", APP, "--args", "{}"), "must be a JSON array")
    one_line_error(pgjobs("enqueue", "add", "--app", "tests.nothing:app"), "cannot import")
    one_line_error(pgjobs("enqueue", "add", "--app", "tests.sample_app:nope"), "has no attribute")
    one_line_error(pgjobs("enqueue", "add", "--app", "tests.sample_app:add"), "not a pgjobs.App")
    one_line_error(pgjobs("enqueue", "add"), "enqueue needs --app")
    one_line_error(pgjobs("status", "01a20c20-868c-7000-866a-d80bc838d789"), "no job with id")
    one_line_error(pgjobs("status", "banana"), "is not a job id")
    one_line_error(pgjobs("jobs", "--status", "done"), "unknown status 'done'")
    one_line_error(pgjobs("worker", APP, "--queues", ","), "at least one queue")
    assert count(db) == 0


def test_a_dead_database_or_a_wrong_url_is_one_clear_line(admin_url: str) -> None:
    one_line_error(
        pgjobs("queues", url="postgresql://postgres@127.0.0.1:1/x"), "cannot reach Postgres"
    )
    one_line_error(pgjobs("queues", url="not a url"), "not a valid Postgres URL")
    one_line_error(pgjobs("queues", url=admin_url), "run `pgjobs migrate`")
    one_line_error(pgjobs("worker", APP, "--burst", url=admin_url), "run `pgjobs migrate`")


def test_migrate_reports_the_revision(db_url: str) -> None:
    result = pgjobs("migrate", url=db_url)
    assert result.returncode == 0, result.stderr
    assert "0013_sql_enqueue" in result.stdout


def test_enqueue_with_a_dedup_window_returns_the_existing_job(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    args = ("enqueue", "add", "--app", APP, "--args", "[1, 1]", "--dedup-key", "k1")
    first = pgjobs(*args, "--dedup-window", "10m")
    again = pgjobs(*args, "--dedup-window", "10m")
    assert first.returncode == 0 and again.returncode == 0, again.stderr
    assert again.stdout.split()[0] == first.stdout.strip()
    assert "existing job" in again.stdout
    assert count(db) == 1
    row = db.execute("SELECT window_seconds FROM pgjobs.dedup_keys").fetchone()
    assert row == (600.0,)


def test_worker_and_enqueue_mistakes_in_the_new_options_are_one_line(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    one_line_error(
        pgjobs("worker", APP, "--burst", "--keep-succeeded", "soon"), "--keep-succeeded takes"
    )
    one_line_error(pgjobs("worker", APP, "--burst", "--queues", "a=x,b=1"), "name=weight")
    one_line_error(pgjobs("worker", APP, "--burst", "--queues", "a=0"), "weight must be positive")
    one_line_error(
        pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 1]", "--dedup-window", "1h"),
        "dedup_window needs a dedup_key",
    )
    assert count(db) == 0


def test_deep_or_huge_json_arguments_are_one_clear_line(db: psycopg.Connection[Any]) -> None:
    deep = "[" * 3000 + "]" * 3000
    one_line_error(
        pgjobs("enqueue", "store", "--app", APP, "--args", f"[{deep}]"),
        "--args nests arrays and objects deeper than 200 levels",
    )
    one_line_error(
        pgjobs("enqueue", "store", "--app", APP, "--kwargs", f'{{"payload": {deep}}}'),
        "--kwargs nests arrays and objects deeper than 200 levels",
    )
    # Shallow enough for the parser, too deep for a job.
    one_line_error(
        pgjobs("enqueue", "store", "--app", APP, "--args", f'[{{"x": {"[" * 250}{"]" * 250}}}]'),
        "nest lists and objects deeper than 200 levels",
    )
    one_line_error(
        pgjobs("enqueue", "add", "--app", APP, "--args", f"[{'9' * 5000}, 1]"),
        "--args is not valid JSON: Exceeds the limit (4300 digits)",
    )
    one_line_error(
        pgjobs(
            "enqueue",
            "store",
            "--app",
            APP,
            "--args",
            f'[{{"x": "{"y" * 2000}"}}]',
            env_vars={"PGJOBS_MAX_PAYLOAD_BYTES": "1000"},
        ),
        "over the limit of 1000 bytes",
    )
    assert count(db) == 0


def test_empty_names_and_urls_are_one_clear_line_never_the_default(
    db: psycopg.Connection[Any],
) -> None:
    for blank in ("", "  "):
        one_line_error(
            pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 2]", "--queue", blank),
            "queue must be a non-empty name",
        )
        one_line_error(pgjobs("enqueue", blank, "--app", APP), "enqueue needs a TASK name")
        one_line_error(pgjobs("queues", "--url", blank), "an empty URL is not a database")
    # Refused before the worker connects: this database does not even answer.
    dead = "postgresql://postgres@127.0.0.1:1/x"
    for queues in ("", " ", ","):
        one_line_error(
            pgjobs("worker", APP, "--burst", "--queues", queues, url=dead),
            "--queues needs at least one queue name",
        )
    for queues in ("a,,b", "a,", " ,a", "a=3,=1"):
        one_line_error(
            pgjobs("worker", APP, "--burst", "--queues", queues, url=dead),
            f"--queues has an empty queue name in {queues!r}",
        )
    assert count(db) == 0


def test_migrate_failures_are_one_clear_line(private_cluster: Any) -> None:
    one_line_error(
        pgjobs("migrate", url="postgresql://postgres@127.0.0.1:1/x"), "cannot reach Postgres"
    )
    # A cluster of the test's own trusts every role, so the weak role connects
    # whatever the test server's authentication asks of a new role.
    cluster = private_cluster()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE ROLE pgjobs_weak LOGIN")
        conn.execute("REVOKE CREATE ON DATABASE postgres FROM PUBLIC")
    one_line_error(
        pgjobs("migrate", url=cluster.url.replace("postgres@", "pgjobs_weak@")),
        "as a role that may create the pgjobs schema",
    )


def test_every_duration_option_takes_the_same_syntax(db: psycopg.Connection[Any]) -> None:
    made = pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 2]", "--delay", "1h")
    assert made.returncode == 0, made.stderr
    row = db.execute(
        "SELECT status, EXTRACT(EPOCH FROM run_at - created_at) FROM pgjobs.jobs"
    ).fetchone()
    assert row is not None and row[0] == "scheduled" and 3599 <= row[1] <= 3601
    for delay, seconds in (("90", 90), ("1.5m", 90), ("90s", 90), ("2d", 172800)):
        job_id = pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 2]", "--delay", delay)
        waited = db.execute(
            "SELECT EXTRACT(EPOCH FROM run_at - created_at) FROM pgjobs.jobs WHERE id = %s",
            (job_id.stdout.strip(),),
        ).fetchone()
        assert waited is not None and abs(float(waited[0]) - seconds) < 1, (delay, waited)
    # The worker's durations too, in seconds or with a unit.
    drained = pgjobs(
        "worker", APP, "--burst", "--poll-interval", "1s", "--grace-period", "1m",
        "--heartbeat-interval", "5s", "--lease-ttl", "1m", "--keep-succeeded", "forever",
        "--keep-failed", "30d", "--unknown-task-timeout", "2h",
    )  # fmt: skip
    assert drained.returncode == 0, drained.stderr
    one_line_error(
        pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 2]", "--delay", "soon"),
        "--delay takes a duration (90, 1.5, 90s, 30m, 2h, 7d), got 'soon'",
    )
    one_line_error(
        pgjobs("worker", APP, "--burst", "--lease-ttl", "0.01"),
        "--lease-ttl must be at least 0.1 seconds, got '0.01'",
    )
    one_line_error(
        pgjobs("worker", APP, "--burst", "--unknown-task-timeout", "forever"),
        "--unknown-task-timeout takes a duration",
    )
    assert count(db) == 5


def test_cancel_of_a_finished_job_is_one_line_and_exit_1(db: psycopg.Connection[Any]) -> None:
    done = pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 2]").stdout.strip()
    waiting = pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 2]", "--delay", "1h")
    assert pgjobs("worker", APP, "--burst").returncode == 0
    one_line_error(pgjobs("cancel", done), f"job {done} already succeeded: nothing to cancel")
    cancelled = pgjobs("cancel", waiting.stdout.strip())
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"{waiting.stdout.strip()} cancelled\n"
    # Cancelling it again is no mistake: it is cancelled, as asked (the API answers 200 too).
    again = pgjobs("cancel", waiting.stdout.strip())
    assert again.returncode == 0 and again.stdout == cancelled.stdout
    one_line_error(pgjobs("cancel", str(uuid.uuid4())), "no job with id")
    statuses = db.execute("SELECT status FROM pgjobs.jobs ORDER BY id").fetchall()
    assert statuses == [("succeeded",), ("cancelled",)]


def test_sqlalchemy_style_urls_work_in_the_app_and_every_command(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(db_url)
    where = (
        f"{info.get('user', 'postgres')}@{info['host']}:{info.get('port', 5432)}/{info['dbname']}"
    )
    for done, driver in enumerate(("psycopg", "psycopg2")):
        url = f"postgresql+{driver}://{where}"
        app = pgjobs_lib.App(url)
        try:
            assert app.url == f"postgresql://{where}"
            assert len(app.jobs()) == done
        finally:
            app.close()
        made = pgjobs("enqueue", "add", "--app", APP, "--args", "[1, 2]", "--url", url)
        assert made.returncode == 0, made.stderr
        assert pgjobs("status", made.stdout.strip(), url=url).returncode == 0
        assert pgjobs("queues", "--url", url).returncode == 0
        assert pgjobs("worker", APP, "--burst", url=url).returncode == 0
        checked = pgjobs("check", "--max-depth", "100", "--url", url)
        assert checked.returncode == 0 and checked.stdout.startswith("ok: "), checked
        assert pgjobs("migrate", "--url", url).returncode == 0
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 2
    one_line_error(
        pgjobs("queues", "--url", f"postgresql+asyncpg://{where}"),
        "a postgresql+asyncpg:// URL names another driver; use postgresql://",
    )


def test_usage_mistakes_are_one_line_and_exit_1_while_help_is_unchanged() -> None:
    for args, expected in (
        (("nosuch",), "No such command 'nosuch'"),
        (("--bogus",), "--bogus"),  # click words it "No such option: --bogus" before 8.2.1
        (("jobs", "--limit", "0"), "Invalid value for '--limit'"),
        (("status",), "Missing argument 'JOB_ID'"),
        (("dead-letters", "list", "--nope"), "--nope"),
        (("workflow", "show"), "Missing argument 'WORKFLOW_ID'"),
        (("worker", APP, "--concurrency", "0"), "Invalid value for '--concurrency'"),
        (("enqueue", "add", "--app", APP, "--priority", "high"), "Invalid value for '--priority'"),
    ):
        one_line_error(pgjobs(*args), expected)
    helped = pgjobs("jobs", "--help")
    assert helped.returncode == 0 and helped.stderr == ""
    assert helped.stdout.startswith("Usage: python -m pgjobs jobs [OPTIONS]")
    assert "--status TEXT" in helped.stdout and "Show this message and exit." in helped.stdout
    # `pgjobs check` keeps its own: exit 2 when it cannot check, since 1 is a breach.
    mistaken = pgjobs("check", "--max-depth", "-1")
    assert mistaken.returncode == 2 and mistaken.stderr.startswith("pgjobs check: Invalid value")
    assert len(mistaken.stderr.splitlines()) == 1
