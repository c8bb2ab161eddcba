"""One transition pipeline: whoever moves a job (a worker, the leader's rescuer or
scheduler, an administrator), the move reaches the log and the App's hooks, after commit."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import Status, chain
from tests import pipeline_app
from tests.support.common import count, wait_for
from tests.support.workers import WorkerProcess

APP = "tests.pipeline_app:app"
# Short leases so a dead worker's jobs are rescued within seconds.
LEASE = ("--lease-ttl", "1", "--heartbeat-interval", "0.2", "--poll-interval", "0.2")


@pytest.fixture
def log_table(db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    db.execute(
        "CREATE TABLE IF NOT EXISTS transition_log (name text, job_id uuid, by text,"
        " previous text, seen_status text, error_type text, reason text, pid int)"
    )
    db.execute("TRUNCATE transition_log")
    yield db
    pipeline_app.app.close()


def seen(db: psycopg.Connection[Any], job_id: Any) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT name, by, previous, seen_status, error_type, reason, pid FROM transition_log"
        " WHERE job_id = %s ORDER BY name",
        (job_id,),
    ).fetchall()


def test_a_job_that_kills_its_worker_is_failed_by_the_rescuer_and_the_failed_hook_fires(
    log_table: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    db = log_table
    job = pipeline_app.poison.enqueue()
    victim = spawn_worker(*LEASE, "--max-lost", "1", app=APP)
    assert victim.wait(30) == 3  # the job killed it (its exit status)
    survivor = spawn_worker(*LEASE, "--max-lost", "1", app=APP)
    wait_for(lambda: count(db, "SELECT count(*) FROM transition_log") >= 1, timeout=30)
    [(name, by, previous, status, error_type, reason, pid)] = seen(db, job.id)
    # The leader's rescuer failed it, and its hook ran in that worker, after commit.
    assert (name, by, previous, status, error_type) == (
        "job.failed",
        "rescuer",
        "running",
        "failed",
        "WorkerLost",
    )
    assert "the crash budget is spent" in reason and pid == survivor.proc.pid
    assert pipeline_app.app.get_job(job.id).status is Status.FAILED
    assert "running -> failed" in survivor.log()  # and the log line, in the same worker


def test_the_schedulers_release_of_a_due_job_reaches_the_hooks_and_the_log(
    log_table: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    db = log_table
    job = pipeline_app.noop.options(delay=1.0).enqueue()  # scheduled: the scheduler releases it
    w = spawn_worker(*LEASE, "--log-format", "json", app=APP)
    wait_for(lambda: pipeline_app.app.get_job(job.id).is_terminal, timeout=30)
    wait_for(lambda: bool(seen(db, job.id)), timeout=10)
    [(name, by, previous, status, _, _, pid)] = seen(db, job.id)
    assert (name, by, previous, pid) == ("job.pending", "scheduler", "scheduled", w.proc.pid)
    assert status in ("pending", "running", "succeeded")  # committed before the hook read it
    assert f'"job_id": "{job.id}", "task": "noop"' in w.log()
    assert '"from": "scheduled", "to": "pending"' in w.log()


def test_an_administrators_cancel_and_replay_reach_the_hooks_of_their_process_after_commit(
    log_table: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    db = log_table
    app = pipeline_app.app
    waiting = pipeline_app.noop.enqueue()
    failed = pipeline_app.fails.enqueue()
    db.execute("UPDATE pgjobs.jobs SET status = 'failed', finished_at = now() WHERE id = %s",
               (failed.id,))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="pgjobs.jobs"):
        assert app.cancel(waiting.id).status is Status.CANCELLED
        [replayed] = app.replay_many([failed.id])
        with pytest.raises(pgjobs.IllegalTransition):  # rolled back: nothing is reported
            app.replay_many([replayed.id])
    wait_for(lambda: count(db, "SELECT count(*) FROM transition_log") >= 2, timeout=10)
    me = os.getpid()
    assert seen(db, waiting.id) == [
        ("job.cancelled", "admin", "pending", "cancelled", None, None, me)
    ]
    # The hook's own connection saw the replay: it ran after the transaction committed.
    assert seen(db, failed.id) == [
        ("job.pending", "admin", "failed", "pending", None, "replayed", me)
    ]
    moves = [(r.__dict__["pgjobs"]["from"], r.__dict__["pgjobs"]["to"]) for r in caplog.records]
    assert moves == [("pending", "cancelled"), ("failed", "pending")]


def test_the_async_replay_of_dead_letters_reaches_the_hooks(
    log_table: psycopg.Connection[Any],
) -> None:
    db = log_table
    app = pipeline_app.app
    jobs = [pipeline_app.fails.enqueue() for _ in range(2)]
    for job in jobs:
        db.execute("UPDATE pgjobs.jobs SET status = 'failed', finished_at = now() WHERE id = %s",
                   (job.id,))  # fmt: skip
        db.execute("INSERT INTO pgjobs.dead_letters (job_id, task, queue, args, kwargs, error,"
                   " attempts) VALUES (%s, 'fails', 'default', '[]', '{}',"
                   " '{}', 1)", (job.id,))  # fmt: skip

    async def replay() -> list[Any]:
        try:
            return await app.areplay_dead_letters(task="fails")
        finally:
            await app.aclose()

    assert sorted(asyncio.run(replay())) == sorted(j.id for j in jobs)
    wait_for(lambda: count(db, "SELECT count(*) FROM transition_log") >= 2, timeout=10)
    for job in jobs:
        assert [r[:4] for r in seen(db, job.id)] == [("job.pending", "admin", "failed", "pending")]


def test_cancel_workflow_reports_each_step_it_cancels_after_commit_and_asks_running_ones(
    log_table: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    db = log_table
    app = pipeline_app.app
    wf = chain(pipeline_app.step.s(), pipeline_app.step.s(), pipeline_app.step.s()).enqueue()
    first, second, third = app.get_workflow(wf.id).steps
    # The first step runs (a worker holds it): it is asked to stop, and it is its worker's
    # to report; the two blocked steps end now.
    db.execute("UPDATE pgjobs.jobs SET status = 'running', attempt = 1, started_at = now()"
               " WHERE id = %s", (first.id,))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="pgjobs.jobs"):
        assert app.cancel_workflow(wf.id) == (2, 1)
    wait_for(lambda: count(db, "SELECT count(*) FROM transition_log") >= 2, timeout=10)
    me = os.getpid()
    for step in (second, third):
        # The hook's own connection saw the step cancelled: it ran after the commit.
        assert seen(db, step.id) == [
            ("job.cancelled", "admin", "blocked", "cancelled", "WorkflowCancelled",
             "its workflow was cancelled", me)
        ]  # fmt: skip
    assert seen(db, first.id) == []
    moves = [(r.__dict__["pgjobs"]["job_id"], r.__dict__["pgjobs"]["from"],
              r.__dict__["pgjobs"]["to"]) for r in caplog.records]  # fmt: skip
    assert sorted(moves) == sorted([(str(s.id), "blocked", "cancelled") for s in (second, third)])
    assert app.get_job(first.id).cancel_requested
    # Nothing left to cancel: nothing more is reported.
    assert asyncio.run(_acancel_workflow(app, wf.id)) == (0, 0)
    assert count(db, "SELECT count(*) FROM transition_log") == 2
    # Workflow.cancel() reports the same way.
    other = chain(pipeline_app.step.s(), pipeline_app.step.s()).enqueue()
    assert other.cancel() == (2, 0)
    wait_for(lambda: count(db, "SELECT count(*) FROM transition_log") >= 4, timeout=10)
    assert sorted(r[2] for s in app.get_workflow(other.id).steps for r in seen(db, s.id)) == [
        "blocked",
        "pending",
    ]


async def _acancel_workflow(app: pgjobs.App, workflow_id: Any) -> tuple[int, int]:
    try:
        return await app.acancel_workflow(workflow_id)
    finally:
        await app.aclose()


def test_a_job_of_a_task_no_worker_knows_fails_past_the_timeout_and_the_failed_hook_fires(
    log_table: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    db = log_table
    # A rolling deploy: newer code enqueued a task this worker's code does not have.
    job_id = uuid.uuid4()
    db.execute("INSERT INTO pgjobs.jobs (id, task, args) VALUES (%s, 'renamed_task', '[]')",
               (job_id,))  # fmt: skip
    w = spawn_worker(*LEASE, "--unknown-task-timeout", "0", app=APP)
    wait_for(lambda: bool(seen(db, job_id)), timeout=30)
    [(name, by, previous, status, error_type, reason, pid)] = seen(db, job_id)
    assert (name, by, previous, status, error_type, pid) == (
        "job.failed", "worker", "running", "failed", "UnknownTask", w.proc.pid
    )  # fmt: skip
    assert reason == "no task of that name is registered in this worker"
    job = pipeline_app.app.get_job(job_id)
    assert job.status is Status.FAILED and job.error is not None
    assert job.error["type"] == "UnknownTask"
    assert "running -> failed" in w.log()


def test_the_steps_the_workflow_trigger_moves_are_not_reported_only_the_step_that_ended(
    log_table: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    # What docs/guides/events.md says is not reported: the workflow trigger
    # releases and cancels steps inside the worker's finish statement, and no
    # process reports those moves. Should they ever be, this test and that
    # page change together.
    db = log_table
    app = pipeline_app.app
    wf = chain(
        pipeline_app.step.s(), pipeline_app.broken_step.s(), pipeline_app.step.s(),
        pipeline_app.step.s(),
    ).enqueue()  # fmt: skip
    first, broken, third, fourth = app.get_workflow(wf.id).steps
    w = spawn_worker(*LEASE, app=APP)
    wait_for(lambda: app.get_workflow(wf.id).is_terminal, timeout=30)
    wait_for(lambda: bool(seen(db, broken.id)), timeout=10)
    # The step that failed: its worker's transition, to the hooks and the log.
    assert [r[:5] for r in seen(db, broken.id)] == [
        ("job.failed", "worker", "running", "failed", "ValueError")
    ]
    assert "running -> failed" in w.log()
    # Released by the trigger when the first step succeeded (blocked -> pending),
    # cancelled by it when the second failed (blocked -> cancelled): no job.pending,
    # no job.cancelled, no log line.
    info = app.get_workflow(wf.id)
    for step in info.steps[2:]:
        assert step.status is Status.CANCELLED and step.error is not None
        assert step.error["type"] == "UpstreamFailed"
    w.stop()
    assert seen(db, first.id) == seen(db, third.id) == seen(db, fourth.id) == []
    assert count(db, "SELECT count(*) FROM transition_log") == 1
    assert "blocked -> " not in w.log()


def test_cancel_workflow_with_a_running_step_reports_each_step_once_admin_and_worker(
    log_table: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    db = log_table
    app = pipeline_app.app
    wf = chain(pipeline_app.slow_step.s(), pipeline_app.step.s()).enqueue()
    running, blocked = app.get_workflow(wf.id).steps
    w = spawn_worker(*LEASE, app=APP)
    wait_for(lambda: app.get_job(running.id).status is Status.RUNNING, timeout=30)
    assert app.cancel_workflow(wf.id) == (1, 1)
    wait_for(lambda: app.get_workflow(wf.id).is_terminal, timeout=30)
    wait_for(lambda: count(db, "SELECT count(*) FROM transition_log") >= 2, timeout=10)
    # The blocked step: ended by the call, in this process; the running one: by its
    # worker once it stopped it, in that worker. Once each.
    assert [r[:5] for r in seen(db, blocked.id)] == [
        ("job.cancelled", "admin", "blocked", "cancelled", "WorkflowCancelled")
    ]
    assert [(r[0], r[1], r[2], r[3], r[6]) for r in seen(db, running.id)] == [
        ("job.cancelled", "worker", "running", "cancelled", w.proc.pid)
    ]
    w.stop()
    assert count(db, "SELECT count(*) FROM transition_log") == 2
