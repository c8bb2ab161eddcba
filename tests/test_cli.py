"""The command line: real `pgjobs` processes; a user's mistake is one line and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg

from tests.conftest import ROOT, count

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
