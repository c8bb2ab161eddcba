"""Hooks on transitions (after commit, in the worker) and durable publish/subscribe."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgjobs
from tests import events_app
from tests.support.common import count, wait_for
from tests.support.workers import WorkerProcess

APP = "tests.events_app:app"


@pytest.fixture
def log_table(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    db.execute(
        "CREATE TABLE IF NOT EXISTS event_log (kind text, name text, job_id uuid, task text,"
        " attempt int, seen_status text, detail text, pid int)"
    )
    db.execute("TRUNCATE event_log")
    yield db
    events_app.app.close()


def logged(db: psycopg.Connection[Any], job_id: Any) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT kind, name, attempt, seen_status, detail FROM event_log WHERE job_id = %s"
        " ORDER BY attempt, name",
        (job_id,),
    ).fetchall()


def test_hooks_run_after_commit_in_the_worker(
    log_table: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    db = log_table
    ok = events_app.double.enqueue(21)
    bad = events_app.double.enqueue(-1)  # fails, is retried once, then fails for good
    w = spawn_worker("--concurrency", "4", app=APP)
    wait_for(lambda: count(db, "SELECT count(*) FROM event_log") >= 3, timeout=30)
    # Each hook saw, from a connection of its own, the status the transition had
    # committed: it did not run inside the transaction that made it.
    assert logged(db, ok.id) == [("hook", "job.succeeded", 1, "succeeded", "42")]
    assert logged(db, bad.id) == [
        ("async-hook", "job.retrying", 1, "retrying", logged(db, bad.id)[0][4]),
        ("hook", "job.failed", 2, "failed", "negative: -1"),
    ]
    assert 0 < float(logged(db, bad.id)[0][4]) <= 0.1  # retry_in of the backoff
    assert {r[0] for r in db.execute("SELECT DISTINCT pid FROM event_log")} == {w.proc.pid}
    # The hook that raises is logged, and changed nothing about any job.
    assert "hook broken_hook for job.succeeded of job" in w.log()
    assert "RuntimeError: a hook that always raises" in w.log()
    assert events_app.app.get_job(ok.id).status is pgjobs.Status.SUCCEEDED


def test_an_unknown_hook_event_is_refused_at_registration() -> None:
    with pytest.raises(pgjobs.ConfigurationError, match=r"unknown event 'job\.exploded'"):
        events_app.app.on("job.exploded")


def test_publish_in_a_rolled_back_transaction_creates_no_jobs(
    log_table: psycopg.Connection[Any], db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        jobs = events_app.app.publish(
            "user.signed_up", {"user_id": 7, "email": "a@example.com"}, conn=conn
        )
        assert len(jobs) == 3
        conn.rollback()
    assert count(log_table) == 0


def test_publish_in_a_committed_transaction_makes_one_job_per_subscriber_each_on_its_own(
    log_table: psycopg.Connection[Any], db_url: str, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    db = log_table
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id int)")
        conn.execute("INSERT INTO users VALUES (7)")
        jobs = events_app.app.publish(
            "user.signed_up", {"user_id": 7, "email": "a@example.com"}, conn=conn
        )
        conn.commit()
    by_task = {j.task: j for j in jobs}
    assert set(by_task) == {
        "user.signed_up:send_welcome",
        "user.signed_up:sync_crm",
        "user.signed_up:count_signup",
    }
    assert count(db) == 3
    spawn_worker("--concurrency", "4", app=APP)
    app = events_app.app
    assert (
        app.get_job(by_task["user.signed_up:send_welcome"].id).wait(20) == "welcome a@example.com"
    )
    assert app.get_job(by_task["user.signed_up:count_signup"].id).wait(20) == 7
    # The CRM subscriber retries on its own and dead-letters on its own.
    crm = by_task["user.signed_up:sync_crm"]
    with pytest.raises(pgjobs.JobFailed, match="the CRM is down"):
        app.get_job(crm.id).wait(20)
    assert app.get_job(crm.id).attempts == 2
    assert app.get_dead_letter(crm.id).args == [{"user_id": 7, "email": "a@example.com"}]
    assert [d.job_id for d in app.dead_letters()] == [crm.id]


def test_publish_checks_the_payload_for_every_subscriber_first(
    log_table: psycopg.Connection[Any],
) -> None:
    with pytest.raises(pgjobs.InvalidArguments, match="user_id"):
        events_app.app.publish("user.signed_up", {"email": "no id"})
    with pytest.raises(pgjobs.InvalidArguments, match="non-empty string"):
        events_app.app.publish("", {})
    assert events_app.app.publish("nobody.listens", {"x": 1}) == []
    assert count(log_table) == 0


def test_apublish_is_the_async_twin(log_table: psycopg.Connection[Any]) -> None:
    async def main() -> list[pgjobs.Job]:
        try:
            return await events_app.app.apublish(
                "user.signed_up", {"user_id": 1, "email": "b@example"}
            )
        finally:
            await events_app.app.aclose()

    assert len(asyncio.run(main())) == 3 and count(log_table) == 3
