"""Observability: the pgjobs.* views, the sql/inspect queries and `pgjobs check`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as psql

from pgjobs.db.driver import DatabaseUnavailable
from pgjobs.observe.health import (
    Breach,
    QueueLevel,
    Threshold,
    acheck_health,
    check_health,
    evaluate,
    merge_thresholds,
    threshold_for,
)
from tests import sample_app
from tests.support.common import ROOT, wait_for

INSPECT = ROOT / "sql" / "inspect"
NOON = datetime(2026, 11, 1, 12, tzinfo=UTC)


def add_job(
    db: psycopg.Connection[Any],
    status: str,
    *,
    queue: str = "q",
    task: str = "t",
    ready_ago: float = 0.0,
    finished_ago: float | None = None,
    started_ago: float | None = None,
    worker_id: str | None = None,
    limited: bool = False,
    error: dict[str, Any] | None = None,
    job_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Insert one job row as it would be in `status`; times are seconds before now()."""
    job_id = job_id or uuid.uuid4()
    db.execute(
        """
        INSERT INTO pgjobs.jobs (id, task, queue, status, run_at, created_at, started_at,
                                 finished_at, worker_id, limited, error, attempt)
        VALUES (%(id)s, %(task)s, %(queue)s, %(status)s,
                now() - make_interval(secs => %(ready)s),
                now() - make_interval(secs => %(ready)s),
                now() - make_interval(secs => %(started)s),
                now() - make_interval(secs => %(finished)s),
                %(worker)s, %(limited)s, %(error)s, %(attempt)s)
        """,
        {
            "id": job_id,
            "task": task,
            "queue": queue,
            "status": status,
            "ready": ready_ago,
            "started": started_ago,
            "finished": finished_ago,
            "worker": worker_id,
            "limited": limited,
            "error": None if error is None else json.dumps(error),
            "attempt": 0 if status in ("pending", "scheduled") else 1,
        },
    )
    return job_id


def add_worker(
    db: psycopg.Connection[Any],
    worker_id: str,
    *,
    heartbeat_ago: float = 0.0,
    lease: float = 30.0,
    queues: tuple[str, ...] = ("q",),
) -> None:
    db.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, heartbeat_at,"
        " lease_seconds) VALUES (%s, %s, %s, %s, 4, now() - make_interval(secs => %s), %s)",
        (worker_id, f"host-{worker_id}", 1000 + len(worker_id), list(queues), heartbeat_ago, lease),
    )


def rows(
    db: psycopg.Connection[Any], query: str, params: dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    return db.execute(query, params).fetchall()


# -- the views ----------------------------------------------------------------------


def test_queue_depth_counts_each_status_of_each_queue(db: psycopg.Connection[Any]) -> None:
    for _ in range(3):
        add_job(db, "pending", queue="a")
    add_job(db, "scheduled", queue="a", ready_ago=-60)
    add_job(db, "running", queue="a", worker_id="w")
    for _ in range(2):
        add_job(db, "succeeded", queue="b", finished_ago=5)
    add_job(db, "failed", queue="b", finished_ago=5)
    assert rows(db, "SELECT queue, status, jobs FROM pgjobs.queue_depth ORDER BY 1, 2") == [
        ("a", "pending", 3),
        ("a", "running", 1),
        ("a", "scheduled", 1),
        ("b", "failed", 1),
        ("b", "succeeded", 2),
    ]


def test_queue_oldest_counts_waiting_jobs_and_finds_the_oldest_ready_one(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    add_job(db, "pending", queue="a", ready_ago=30)
    # The oldest is a job of a limited task: it lives in another index.
    oldest = add_job(db, "pending", queue="a", ready_ago=120, limited=True)
    add_job(db, "scheduled", queue="a", ready_ago=-600)
    add_job(db, "retrying", queue="a", ready_ago=-5)
    # A retrying job whose run_at is long past is waiting, but not ready: no age.
    add_job(db, "retrying", queue="b", ready_ago=900)
    add_job(db, "running", queue="c", worker_id="w")
    add_job(db, "succeeded", queue="c", ready_ago=5000, finished_ago=1)
    got = {
        r[0]: r[1:]
        for r in rows(
            db,
            "SELECT queue, depth, pending, oldest_pending_age, oldest_pending_id, "
            "oldest_pending_at = (SELECT run_at FROM pgjobs.jobs WHERE id = oldest_pending_id) "
            "FROM pgjobs.queue_oldest",
        )
    }
    assert set(got) == {"a", "b"}  # c has nothing waiting
    depth, pending, age, oldest_id, at_matches = got["a"]
    assert (depth, pending, oldest_id, at_matches) == (4, 2, oldest, True)
    assert 120 <= age < 130
    assert got["b"] == (1, 0, None, None, None)
    # The same numbers as app.queues(), which the `queues` command prints.
    stats = {q.queue: q for q in app.queues()}
    assert stats["a"].depth == 4 and stats["b"].depth == 1
    assert stats["a"].oldest_pending_age is not None
    assert abs(stats["a"].oldest_pending_age - age) < 5


def test_queue_oldest_breaks_a_tie_on_run_at_by_id(db: psycopg.Connection[Any]) -> None:
    db.execute(
        "INSERT INTO pgjobs.jobs (id, task, queue, run_at, limited) "
        "SELECT id, 't', 'q', '2026-01-01T00:00:00Z', limited FROM (VALUES "
        "('00000000-0000-0000-0000-000000000003'::uuid, false), "
        "('00000000-0000-0000-0000-000000000002'::uuid, true), "
        "('00000000-0000-0000-0000-000000000005'::uuid, false)) AS v(id, limited)"
    )
    assert rows(db, "SELECT oldest_pending_id::text, depth FROM pgjobs.queue_oldest") == [
        ("00000000-0000-0000-0000-000000000002", 3)
    ]


def test_throughput_counts_each_window_by_outcome(db: psycopg.Connection[Any]) -> None:
    for _ in range(3):
        add_job(db, "succeeded", queue="a", finished_ago=30)
    add_job(db, "failed", queue="a", finished_ago=30)
    for _ in range(2):
        add_job(db, "succeeded", queue="a", finished_ago=200)
    add_job(db, "cancelled", queue="a", finished_ago=200)
    for _ in range(2):
        add_job(db, "failed", queue="a", finished_ago=1800)
    for _ in range(5):
        add_job(db, "succeeded", queue="a", finished_ago=7200)  # before the last hour
    add_job(db, "succeeded", queue="old", finished_ago=7200)
    add_job(db, "cancelled", queue="c", finished_ago=10)
    add_job(db, "pending", queue="a")
    got = rows(
        db,
        "SELECT queue, period, period_seconds, succeeded, failed, cancelled, finished, "
        "jobs_per_second, failure_rate FROM pgjobs.throughput ORDER BY queue, period_seconds",
    )
    assert got == [
        ("a", "1 minute", 60, 3, 1, 0, 4, 4 / 60, 1 / 4),
        ("a", "5 minutes", 300, 5, 1, 1, 7, 7 / 300, 1 / 6),
        ("a", "1 hour", 3600, 5, 3, 1, 9, 9 / 3600, 3 / 8),
        # Nothing succeeded or failed: no failure rate, rather than a made-up 0.
        ("c", "1 minute", 60, 0, 0, 1, 1, 1 / 60, None),
        ("c", "5 minutes", 300, 0, 0, 1, 1, 1 / 300, None),
        ("c", "1 hour", 3600, 0, 0, 1, 1, 1 / 3600, None),
    ]


def test_running_jobs_show_their_worker_and_whether_its_lease_lapsed(
    db: psycopg.Connection[Any],
) -> None:
    add_worker(db, "fresh", heartbeat_ago=1)
    add_worker(db, "silent", heartbeat_ago=60, lease=30)
    add_worker(db, "patient", heartbeat_ago=60, lease=120)  # its own, longer lease
    jobs = {
        name: add_job(db, "running", worker_id=name, started_ago=90)
        for name in ("fresh", "silent", "patient", "vanished")
    }
    add_job(db, "pending")
    got = {
        r[0]: r[1:]
        for r in rows(
            db,
            "SELECT worker_id, job_id, hostname, pid, heartbeat_stale, running_seconds, "
            "running_for = now() - started_at, "
            "lease_expires_at = heartbeat_at + make_interval(secs => 30) "
            "FROM pgjobs.running_jobs",
        )
    }
    assert set(got) == set(jobs)
    stale = {name: got[name][3] for name in got}
    assert stale == {"fresh": False, "silent": True, "patient": False, "vanished": True}
    assert got["fresh"][:3] == (jobs["fresh"], "host-fresh", 1005)
    assert got["vanished"][1:3] == (None, None)
    assert all(89 <= r[4] < 100 and r[5] for r in got.values())
    assert got["silent"][6] is True and got["patient"][6] is False


def test_workers_alive_lists_workers_within_their_lease_with_their_running_jobs(
    db: psycopg.Connection[Any],
) -> None:
    add_worker(db, "fresh", heartbeat_ago=1)
    add_worker(db, "silent", heartbeat_ago=60, lease=30)
    add_worker(db, "patient", heartbeat_ago=60, lease=120)
    db.execute("UPDATE pgjobs.workers SET leader_pid = 42 WHERE id = 'patient'")
    for _ in range(2):
        add_job(db, "running", worker_id="fresh", started_ago=5)
    add_job(db, "running", worker_id="silent", started_ago=5)
    add_job(db, "succeeded", worker_id="fresh", finished_ago=1)
    got = rows(
        db,
        "SELECT worker_id, hostname, running_jobs, is_leader, heartbeat_age >= 0 "
        "FROM pgjobs.workers_alive ORDER BY worker_id",
    )
    assert got == [
        ("fresh", "host-fresh", 2, False, True),
        ("patient", "host-patient", 0, True, True),
    ]


def test_dead_letters_by_task_counts_and_names_the_most_common_error(
    db: psycopg.Connection[Any],
) -> None:
    def letter(task: str, queue: str, error_type: str | None, ago: float) -> None:
        error = None if error_type is None else {"type": error_type, "message": "m"}
        db.execute(
            "INSERT INTO pgjobs.dead_letters (job_id, task, queue, args, kwargs, error, attempts,"
            " failed_at) VALUES (%s, %s, %s, '[]', '{}', %s, 3, %s - make_interval(secs => %s))",
            (uuid.uuid4(), task, queue, None if error is None else json.dumps(error), NOON, ago),
        )

    for ago in (10, 20, 30):
        letter("charge", "payments", "CardDeclined", ago)
    letter("charge", "payments", "Timeout", 500)
    letter("charge", "payments", None, 5)
    letter("charge", "retry", "Timeout", 5)
    # A tie goes to the first type by name, so the answer does not flicker.
    letter("ping", "default", "ZeroDivisionError", 1)
    letter("ping", "default", "KeyError", 2)
    got = rows(
        db,
        "SELECT task, queue, dead_letters, top_error_type, top_error_count, "
        "EXTRACT(EPOCH FROM %(noon)s - first_failed_at)::int, "
        "EXTRACT(EPOCH FROM %(noon)s - last_failed_at)::int "
        "FROM pgjobs.dead_letters_by_task ORDER BY task, queue",
        {"noon": NOON},
    )
    assert got == [
        ("charge", "payments", 5, "CardDeclined", 3, 500, 5),
        ("charge", "retry", 1, "Timeout", 1, 5, 5),
        ("ping", "default", 2, "KeyError", 1, 2, 1),
    ]


def test_views_follow_a_real_worker(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    sample_app.add.enqueue_many([(1, 2), (3, 4), (5, 6)])
    sample_app.fail.enqueue_many([("no",), ("never",)])
    assert rows(db, "SELECT queue, depth, pending FROM pgjobs.queue_oldest") == [("default", 5, 5)]
    burst = spawn_worker("--burst", "--queues", "default")
    assert burst.wait(60) == 0, burst.log()
    assert rows(db, "SELECT count(*) FROM pgjobs.queue_oldest") == [(0,)]
    assert rows(
        db,
        "SELECT succeeded, failed, cancelled, failure_rate FROM pgjobs.throughput "
        "WHERE queue = 'default' AND period = '1 minute'",
    ) == [(3, 2, 0, 0.4)]
    assert rows(
        db,
        "SELECT task, dead_letters, top_error_type, top_error_count FROM "
        "pgjobs.dead_letters_by_task",
    ) == [("fail", 2, "ValueError", 2)]

    worker = spawn_worker("--queues", "default", "--heartbeat-interval", "0.2", "--lease-ttl", "5")
    job = sample_app.sleep.enqueue(3.0)

    def running() -> list[tuple[Any, ...]]:
        return rows(
            db, "SELECT job_id, task, hostname, pid, heartbeat_stale FROM pgjobs.running_jobs"
        )

    wait_for(lambda: bool(running()), timeout=30)
    assert running() == [(job.id, "sleep", socket.gethostname(), worker.proc.pid, False)]
    alive = rows(db, "SELECT pid, running_jobs, lease_seconds FROM pgjobs.workers_alive")
    assert alive == [(worker.proc.pid, 1, 5.0)]
    assert job.wait(timeout=30) == 3.0
    assert running() == []
    assert worker.stop() == 0
    assert rows(db, "SELECT count(*) FROM pgjobs.workers_alive") == [(0,)]


def test_the_views_read_only_the_rows_they_are_about(db: psycopg.Connection[Any]) -> None:
    """With a long finished history, the frequent views go through their partial indexes."""
    db.execute(
        "INSERT INTO pgjobs.jobs (id, task, queue, status, run_at, finished_at) "
        "SELECT gen_random_uuid(), 't', 'q' || g % 3, 'succeeded', now(), "
        "now() - make_interval(secs => g) FROM generate_series(1, 30000) g"
    )
    for status in ("pending", "pending", "scheduled", "retrying"):
        add_job(db, status, ready_ago=1 if status == "pending" else -60)
    add_job(db, "pending", limited=True)
    add_job(db, "running", worker_id="w")
    db.execute("ANALYZE pgjobs.jobs")

    def plan_of(view: str) -> tuple[set[str], set[str]]:
        """The scan types on pgjobs.jobs, and every index the plan reads."""
        plan = db.execute(f"EXPLAIN (FORMAT JSON) SELECT * FROM pgjobs.{view}").fetchone()
        assert plan is not None
        scans: set[str] = set()
        indexes: set[str] = set()

        def walk(node: dict[str, Any]) -> None:
            if node.get("Relation Name") == "jobs":
                scans.add(node["Node Type"])
            if "Index Name" in node:
                indexes.add(node["Index Name"])
            for child in node.get("Plans", []):
                walk(child)

        walk(plan[0][0]["Plan"])
        return scans, indexes

    scans, indexes = plan_of("queue_oldest")
    assert "Seq Scan" not in scans
    assert indexes >= {"jobs_claim_idx", "jobs_limited_claim_idx", "jobs_due_idx"}
    for view, index in (
        ("throughput", "jobs_finished_idx"),
        ("running_jobs", "jobs_running_idx"),
        ("workers_alive", "jobs_running_idx"),
    ):
        scans, indexes = plan_of(view)
        assert "Seq Scan" not in scans and index in indexes, (view, scans, indexes)
    # The answers are right too, with all that history around them.
    assert rows(db, "SELECT depth, pending FROM pgjobs.queue_oldest") == [(5, 3)]
    got = rows(db, "SELECT sum(finished) FROM pgjobs.throughput WHERE period = '1 minute'")
    assert 55 <= got[0][0] <= 60  # one a second, less the time since the insert


# -- sql/inspect --------------------------------------------------------------------


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> Iterator[dict[str, Any]]:
    """Rows for every inspect query to find, and a session that holds back the xmin horizon."""
    add_worker(db, "w-live", queues=("obs-q",))
    waiting = add_job(db, "pending", queue="obs-q", ready_ago=45)
    add_job(db, "pending", queue="orphan-q", ready_ago=5)
    add_job(db, "scheduled", queue="obs-q", ready_ago=600)  # overdue: not released
    running = add_job(db, "running", queue="obs-q", task="crunch", worker_id="w-live")
    lost = add_job(db, "running", queue="obs-q", task="crunch", worker_id="w-gone")
    failed = add_job(
        db,
        "failed",
        queue="obs-q",
        task="explode",
        finished_ago=20,
        error={"type": "ValueError", "message": "bad input", "traceback": "Traceback: here"},
    )
    db.execute(
        "INSERT INTO pgjobs.attempts (job_id, attempt, worker_id, started_at, finished_at,"
        " outcome, error) VALUES (%s, 1, 'w-live', now() - interval '22 s',"
        ' now() - interval \'20 s\', \'failed\', \'{"type": "ValueError", "message": "bad"}\')',
        (failed,),
    )
    db.execute(
        "INSERT INTO pgjobs.dead_letters (job_id, task, queue, args, kwargs, error, attempts)"
        " SELECT id, task, queue, args, kwargs, error, attempt FROM pgjobs.jobs WHERE id = %s",
        (failed,),
    )
    with psycopg.connect(db.info.dsn, application_name="obs-holder") as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pgjobs.jobs")  # takes the snapshot
        yield {"waiting": waiting, "running": running, "lost": lost, "failed": failed}
        holder.rollback()


#: What each inspect query must show, given the seeded rows.
EXPECTED: dict[str, list[str]] = {
    "queue_depth.sql": ["obs-q", "orphan-q"],
    "oldest_pending.sql": ["{waiting}", "orphan-q"],
    "throughput.sql": ["obs-q", "1 minute", "5 minutes", "1 hour"],
    "running_jobs.sql": ["{running}", "{lost}", "host-w-live"],
    "stuck_jobs.sql": ["{lost}", "worker gone", "orphan-q", "scheduled"],
    "dead_letters.sql": ["explode", "ValueError", "bad input"],
    "slowest_tasks.sql": ["explode", "2.000"],
    "job_history.sql": ["attempt 1 failed", "dead-lettered", "Traceback: here"],
    "table_bloat.sql": ["jobs_claim_idx", "dead_letters", "fillfactor=80"],
    "xmin_horizon.sql": ["obs-holder", "idle in transaction"],
    "workers.sql": ["w-live", "obs-q"],
}


def test_every_inspect_query_is_documented_and_expected() -> None:
    files = sorted(p.name for p in INSPECT.glob("*.sql"))
    assert files == sorted(EXPECTED)
    for name in files:
        text = (INSPECT / name).read_text()
        header = text.split("\n\n", 1)[0]
        assert all(line.startswith("--") for line in header.splitlines()), name
        assert 'psql "$PGJOBS_URL"' in header and f"sql/inspect/{name}" in header, name
        for var in set(re.findall(r"(?<!:):'?(\w+)", _sql_only(text))):
            # Documented under "Variables:", with a default unless it is the job's id.
            assert f"--   {var} " in header, (name, var)
            assert var in _defaults(text) or var == "job_id", (name, var)


def _sql_only(text: str) -> str:
    """The statements of an inspect file: no comments, no psql meta-commands."""
    return "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith(("--", "\\"))
    )


def _defaults(text: str) -> dict[str, str]:
    """The psql variables a file sets when the caller did not (\\set name value)."""
    found = {}
    for name, value in re.findall(r"^\s*\\set (\w+) (.+?)\s*$", text, re.MULTILINE):
        found[name] = value[1:-1] if value.startswith("'") else value
    return found


def run_with_psycopg(url: str, path: Path, variables: dict[str, str]) -> str:
    """Run an inspect file without psql: meta-commands dropped, variables substituted."""
    text = path.read_text()
    values = {**_defaults(text), **variables}
    script = _sql_only(text)
    with psycopg.connect(url, autocommit=True) as conn:

        def substitute(match: re.Match[str]) -> str:
            quoted, name = match.group(1), match.group(2)
            if name not in values:
                return match.group(0)
            if quoted:
                return psql.Literal(values[name]).as_string(conn)
            return values[name]

        script = re.sub(r"(?<!:):(')?(\w+)'?", substitute, script)
        out = []
        cur = conn.execute(script)
        while True:
            if cur.description:
                out.append(repr(cur.fetchall()))
            if not cur.nextset():
                break
    return "\n".join(out)


def run_with_psql(url: str, path: Path, variables: dict[str, str]) -> str:
    psql_bin = shutil.which("psql")
    assert psql_bin is not None
    args = [psql_bin, url, "-X", "-v", "ON_ERROR_STOP=1", "-P", "pager=off"]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    done = subprocess.run(
        [*args, "-f", str(path)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.processes
def test_inspect_query_runs_and_shows_what_it_is_about(
    name: str, db_url: str, seeded: dict[str, Any]
) -> None:
    variables = {"job_id": str(seeded["failed"])}
    # psql where it is installed (it runs the \if/\set defaults), else psycopg.
    if shutil.which("psql"):
        out = run_with_psql(db_url, INSPECT / name, variables)
    else:
        out = run_with_psycopg(db_url, INSPECT / name, variables)
    for expected in EXPECTED[name]:
        assert expected.format(**seeded) in out, (expected, out)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inspect_query_runs_without_psql_too(
    name: str, db_url: str, seeded: dict[str, Any]
) -> None:
    out = run_with_psycopg(db_url, INSPECT / name, {"job_id": str(seeded["failed"])})
    for expected in EXPECTED[name]:
        assert expected.format(**seeded) in out, (expected, out)


@pytest.mark.processes
def test_job_history_without_a_job_id_says_how_to_run_it(db_url: str) -> None:
    psql_bin = shutil.which("psql")
    assert psql_bin is not None, "psql is needed for this test"
    done = subprocess.run(
        [psql_bin, db_url, "-X", "-v", "ON_ERROR_STOP=1", "-f", str(INSPECT / "job_history.sql")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: psql") and "-v job_id=" in done.stdout


# -- health evaluation ----------------------------------------------------------------


def test_merge_thresholds_lets_each_limit_of_the_override_win() -> None:
    base = {"emails": Threshold(max_depth=1000, max_age=300), "*": Threshold(max_age=60)}
    override = {"*": Threshold(max_depth=10)}
    merged = merge_thresholds(base, override)
    assert threshold_for(merged, "emails") == Threshold(max_depth=10, max_age=300)
    assert threshold_for(merged, "other") == Threshold(max_depth=10, max_age=60)
    only_emails = merge_thresholds(base, {"emails": Threshold(max_age=5)})
    assert threshold_for(only_emails, "emails") == Threshold(max_depth=1000, max_age=5)
    assert threshold_for(only_emails, "other") == Threshold(max_age=60)


def test_evaluate_reports_each_limit_passed() -> None:
    levels = {
        "emails": QueueLevel("emails", depth=1520, pending=1500, oldest_pending_age=400.0),
        "quiet": QueueLevel("quiet", depth=3, pending=0),
    }
    health = evaluate(
        levels,
        {"*": Threshold(max_depth=1000, max_age=300), "quiet": Threshold(max_age=1)},
        queues=["missing"],
    )
    assert health.breaches == [
        Breach("emails", "max_depth", 1520, 1000),
        Breach("emails", "max_age", 400.0, 300),
    ]
    assert health.summary() == (
        "queue emails has 1520 jobs waiting (max 1000); "
        "queue emails: oldest pending job has waited 400s (max 300s)"
    )
    assert set(health.levels) == {"emails", "quiet", "missing"}
    assert health.levels["missing"].depth == 0
    calm = evaluate(levels, {"quiet": Threshold(max_depth=3, max_age=1)})
    assert calm.ok and calm.summary() == "ok: 1 queue within limits (quiet 3 waiting)"


def test_check_health_reads_the_view_by_url_connection_or_async(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    for _ in range(3):
        add_job(db, "pending", queue="emails", ready_ago=50)
    add_worker(db, "w1", queues=("emails",))
    limits = {"emails": Threshold(max_depth=2, max_age=60)}
    expected = [Breach("emails", "max_depth", 3, 2)]
    assert check_health(db_url, limits).breaches == expected
    assert check_health(db, limits).breaches == expected
    assert asyncio.run(acheck_health(db_url, limits)).breaches == expected
    level = check_health(db, limits).levels["emails"]
    assert level.pending == 3 and level.oldest_pending_age is not None
    assert 50 <= level.oldest_pending_age < 60


def test_check_health_gives_up_on_a_locked_table_within_its_timeout(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    add_job(db, "pending", queue="emails")
    add_worker(db, "w1", queues=("emails",))
    with psycopg.connect(db_url) as locker:
        locker.execute("LOCK TABLE pgjobs.jobs IN ACCESS EXCLUSIVE MODE")  # as a migration does
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="did not answer in time"):
            check_health(db_url, {"*": Threshold(max_depth=5)}, connect_timeout=1)
        assert time.monotonic() - started < 5
        locker.rollback()
    assert check_health(db_url, {"*": Threshold(max_depth=5)}, connect_timeout=1).ok


# -- pgjobs check ---------------------------------------------------------------------


def pgjobs_check(
    *args: str, url: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    environ.pop("PGJOBS_URL", None)
    if url is not None:
        environ["PGJOBS_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", "check", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def breach(result: subprocess.CompletedProcess[str], line: str, code: int = 1) -> None:
    assert result.returncode == code, result
    assert result.stdout == "", result.stdout
    assert result.stderr == f"pgjobs check: {line}\n", result.stderr


@pytest.mark.processes
def test_check_is_ok_within_the_limits(db: psycopg.Connection[Any], db_url: str) -> None:
    for _ in range(3):
        add_job(db, "pending", queue="emails", ready_ago=10)
    add_job(db, "scheduled", queue="emails", ready_ago=-3600)  # waiting, not late
    add_worker(db, "w1", queues=("emails",))
    result = pgjobs_check("--max-depth", "5", "--max-age", "5m", url=db_url)
    assert result.returncode == 0, result
    assert result.stdout.startswith("ok: 1 queue within limits (emails 4 waiting, oldest 1")
    assert result.stdout.count("\n") == 1 and result.stderr == ""


@pytest.mark.processes
def test_check_fails_on_depth(db: psycopg.Connection[Any], db_url: str) -> None:
    for _ in range(7):
        add_job(db, "pending", queue="emails")
    add_worker(db, "w1", queues=("emails",))
    breach(pgjobs_check("--max-depth", "5", url=db_url), "queue emails has 7 jobs waiting (max 5)")
    assert pgjobs_check("--max-depth", "7", url=db_url).returncode == 0


@pytest.mark.processes
def test_check_fails_on_the_age_of_the_oldest_ready_job(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    add_job(db, "pending", queue="emails", ready_ago=600)
    add_job(db, "pending", queue="emails", ready_ago=5)
    add_worker(db, "w1", queues=("emails",))
    for limit, shown in (("5m", "300s"), ("299", "299s"), ("9.5m", "570s")):
        result = pgjobs_check("--max-age", limit, url=db_url)
        assert result.returncode == 1, result
        assert re.fullmatch(
            rf"pgjobs check: queue emails: oldest pending job has waited 60\d(\.\d)?s "
            rf"\(max {shown}\)\n",
            result.stderr,
        ), result.stderr
    assert pgjobs_check("--max-age", "2h", url=db_url).returncode == 0
    assert pgjobs_check("--max-age", "700s", url=db_url).returncode == 0


@pytest.mark.processes
def test_check_limits_apply_to_the_queues_named(db: psycopg.Connection[Any], db_url: str) -> None:
    for _ in range(7):
        add_job(db, "pending", queue="emails")
    for _ in range(2):
        add_job(db, "pending", queue="reports")
    add_worker(db, "w1", queues=("emails", "reports"))
    result = pgjobs_check("--max-depth", "5", "--queue", "reports", url=db_url)
    assert result.returncode == 0 and result.stdout.startswith(
        "ok: 1 queue within limits (reports 2 waiting"
    ), result
    breach(
        pgjobs_check("--max-depth", "5", "--queue", "reports", "--queue", "emails", url=db_url),
        "queue emails has 7 jobs waiting (max 5)",
    )
    nothing = pgjobs_check("--max-depth", "0", "--queue", "nosuch", url=db_url)
    assert nothing.returncode == 0, nothing
    assert nothing.stdout == "ok: 1 queue within limits (nosuch 0 waiting)\n"


@pytest.mark.processes
def test_check_with_an_empty_database_is_ok(db: psycopg.Connection[Any], db_url: str) -> None:
    add_job(db, "succeeded", queue="emails", finished_ago=1)
    result = pgjobs_check("--max-depth", "0", "--max-age", "0", url=db_url)
    assert (result.returncode, result.stdout) == (0, "ok: no queue has jobs waiting\n")


APP_MODULE = """
import os
import pgjobs
from pgjobs.observe.health import Threshold

app = pgjobs.App(
    os.environ["OBS_APP_URL"],
    thresholds={"emails": Threshold(max_depth=5), "*": Threshold(max_age=60)},
)
"""


@pytest.mark.processes
def test_check_uses_the_app_thresholds_and_its_url_and_flags_win(
    db: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "obs_app.py").write_text(APP_MODULE)
    env = {"PYTHONPATH": str(tmp_path), "OBS_APP_URL": db_url}
    for _ in range(7):
        add_job(db, "pending", queue="emails", ready_ago=10)
    add_worker(db, "w1", queues=("emails", "reports"))
    # The App's own URL is used: no --url and no $PGJOBS_URL.
    breach(pgjobs_check("obs_app:app", env=env), "queue emails has 7 jobs waiting (max 5)")
    allowed = pgjobs_check("obs_app:app", "--max-depth", "10", env=env)
    assert allowed.returncode == 0, allowed
    assert allowed.stdout.startswith("ok: 1 queue within limits (emails 7 waiting, oldest 1")
    # The App's "*" age limit still holds for every queue.
    add_job(db, "pending", queue="reports", ready_ago=120)
    result = pgjobs_check("obs_app:app", "--max-depth", "10", env=env)
    assert result.returncode == 1, result
    assert result.stderr.startswith(
        "pgjobs check: queue reports: oldest pending job has waited 12"
    ) and result.stderr.endswith(" (max 60s)\n")
    # A flag for one queue overrides the App there only.
    result = pgjobs_check("obs_app:app", "--max-age", "1h", "--queue", "reports", env=env)
    breach(result, "queue emails has 7 jobs waiting (max 5)")


@pytest.mark.processes
def test_check_cannot_reach_the_database_exit_2(admin_url: str) -> None:
    down = pgjobs_check("--max-depth", "5", url="postgresql://postgres@127.0.0.1:1/x")
    assert down.returncode == 2, down
    assert down.stderr.startswith("pgjobs check: cannot reach Postgres at 127.0.0.1:1/x: ")
    assert down.stderr.count("\n") == 1 and "Traceback" not in down.stderr
    assert down.stdout == ""
    bare = pgjobs_check("--max-depth", "5", "--url", admin_url)
    assert bare.returncode == 2, bare
    assert bare.stderr.startswith("pgjobs check: the database at ")
    assert bare.stderr.endswith("has no pgjobs.queue_oldest view: run `pgjobs migrate`\n")


@pytest.mark.processes
def test_check_flags_a_queue_with_pending_jobs_and_no_live_worker_serving_it(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    for _ in range(2):
        add_job(db, "pending", queue="emails")
    add_job(db, "scheduled", queue="reports", ready_ago=-3600)  # nothing is ready there yet
    add_worker(db, "elsewhere", queues=("default", "reports"))
    add_worker(db, "gone", queues=("emails",), heartbeat_ago=45, lease=30)  # past its lease
    unserved = "queue emails has 2 jobs pending and no live worker serving it"
    breach(pgjobs_check("--max-depth", "100", url=db_url), unserved)
    # Only the queues a check checks: --queue reports leaves emails out.
    assert pgjobs_check("--max-depth", "100", "--queue", "reports", url=db_url).returncode == 0
    health = check_health(db_url, {"*": Threshold(max_depth=100)})
    assert health.breaches == [Breach("emails", "no_worker", 2, 0)]
    assert health.levels["emails"].workers == 0 and health.levels["emails"].unserved
    assert health.levels["reports"].workers == 1 and not health.levels["reports"].unserved
    add_worker(db, "alive", queues=("emails", "sms"))
    result = pgjobs_check("--max-depth", "100", url=db_url)
    assert result.returncode == 0 and result.stdout.startswith("ok: 2 queues within limits")
    assert check_health(db, {"*": Threshold(max_depth=100)}).levels["emails"].workers == 1


@pytest.mark.processes
def test_check_usage_mistakes_exit_2(db_url: str) -> None:
    breach(
        pgjobs_check("--max-age", "soon", url=db_url),
        "--max-age takes seconds or 90s, 5m, 2h, got 'soon'",
        code=2,
    )
    breach(
        pgjobs_check(url=db_url),
        "nothing to check: give --max-depth and/or --max-age, or an APP with thresholds",
        code=2,
    )
    breach(
        pgjobs_check("--max-depth", "5"),
        "no database to check: give --url or set $PGJOBS_URL",
        code=2,
    )
    breach(
        pgjobs_check("tests.nothing:app", "--max-depth", "5", url=db_url),
        "cannot import 'tests.nothing': No module named 'tests.nothing'",
        code=2,
    )
    unknown = pgjobs_check("--max-dept", "5", url=db_url)
    assert unknown.returncode == 2 and "No such option" in unknown.stderr
    assert "--max-dept" in unknown.stderr
    negative = pgjobs_check("--max-depth", "-1", url=db_url)
    assert negative.returncode == 2 and "Invalid value for '--max-depth'" in negative.stderr
    assert "Traceback" not in unknown.stderr + negative.stderr
