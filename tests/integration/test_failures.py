"""Retries, time limits, cancellation and poison jobs, with real workers."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import Backoff, HardTimeout, Permanent, Retry, RetryPolicy, SoftTimeout, Status
from pgjobs.core.retry import Backoff as _Backoff
from tests import sample_app
from tests.support.common import count, wait_for
from tests.support.workers import drain, start_in_thread

RUNNING = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'"


def attempts_of(db: psycopg.Connection[Any], job_id: Any) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT attempt, outcome, error->>'type' FROM pgjobs.attempts WHERE job_id = %s"
        " ORDER BY attempt",
        (job_id,),
    ).fetchall()


# -- the retry decision --------------------------------------------------------------


def test_backoff_is_exponential_with_a_cap_and_full_jitter() -> None:
    b = Backoff(base=2, factor=3, cap=100)
    assert [b.ceiling(n) for n in range(1, 6)] == [2, 6, 18, 54, 100]
    for n in range(1, 6):
        delays = [b.delay(n) for _ in range(2000)]
        assert min(delays) >= 0 and max(delays) <= b.ceiling(n)
        # Full jitter: spread over the whole range, not bunched at the top.
        assert min(delays) < 0.1 * b.ceiling(n) and max(delays) > 0.9 * b.ceiling(n)


def test_the_retry_decision_follows_retry_on_fail_on_retry_and_permanent() -> None:
    policy = RetryPolicy(retries=3, backoff=_Backoff(base=1, cap=1), retry_on=(ConnectionError,))
    assert policy.next_delay(ConnectionError(), 1, 4) is not None
    assert policy.next_delay(ValueError(), 1, 4) is None  # not in retry_on
    assert policy.next_delay(ConnectionError(), 4, 4) is None  # attempts spent
    assert policy.next_delay(Retry(delay=7), 1, 4) == 7
    assert policy.next_delay(Permanent("no"), 1, 4) is None
    assert policy.next_delay(HardTimeout(), 1, 4) is not None  # a timeout is retryable
    strict = RetryPolicy(retries=3, fail_on=(SoftTimeout, KeyError))
    assert strict.next_delay(SoftTimeout(), 1, 4) is None  # unless the task says otherwise
    assert strict.next_delay(KeyError(), 1, 4) is None
    assert strict.next_delay(ValueError(), 1, 4) is not None  # default: any exception


def test_retries_follow_the_backoff_within_its_jitter_bounds(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    backoff = sample_app.always_down.policy.backoff  # base 0.4 s, factor 3: ceilings 0.4, 1.2, 3.6
    jobs = sample_app.always_down.enqueue_many([(n,) for n in range(12)])
    worker, thread = start_in_thread(app, release_interval=0.02, concurrency=12)
    try:
        wait_for(
            lambda: count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'failed'") == 12,
            timeout=30,
        )
    finally:
        worker.stop()
        thread.join(30)
    gaps: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for job in jobs:
        rows = db.execute(
            "SELECT attempt, started_at, finished_at, outcome FROM pgjobs.attempts"
            " WHERE job_id = %s ORDER BY attempt",
            (job.id,),
        ).fetchall()
        assert [r[0] for r in rows] == [1, 2, 3, 4]
        assert [r[3] for r in rows] == ["failed"] * 4
        for before, after in itertools.pairwise(rows):
            gaps[before[0]].append((after[1] - before[2]).total_seconds())
    # The wait after attempt n is drawn from [0, ceiling(n)]; the scheduler's tick
    # and the claim add a little on top.
    slack = 0.35
    for n, observed in gaps.items():
        assert min(observed) >= 0
        assert max(observed) <= backoff.ceiling(n) + slack, (n, observed)
    # It grows: some wait after attempt 3 is longer than any allowed after attempt 2.
    assert max(gaps[3]) > backoff.ceiling(2)
    # And it is jittered: the twelve jobs did not come back together.
    assert max(gaps[3]) - min(gaps[3]) > 0.5
    failed = app.get_job(jobs[0].id)
    assert failed.status is Status.FAILED and failed.attempts == 4
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 12


def test_between_attempts_the_job_is_retrying_with_its_next_run_time(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.later.enqueue(1.0)
    worker, thread = start_in_thread(app, release_interval=0.05)
    try:
        wait_for(lambda: app.get_job(job.id).status is Status.RETRYING)
        waiting = app.get_job(job.id)
        assert waiting.error is not None and waiting.error["type"] == "Retry"
        assert waiting.run_at is not None and waiting.started_at is not None
        assert 0.9 <= (waiting.run_at - waiting.started_at).total_seconds() <= 1.5
        assert job.wait(10) == 2
    finally:
        worker.stop()
        thread.join(30)
    rows = db.execute(
        "SELECT finished_at FROM pgjobs.attempts WHERE job_id = %s AND attempt = 1", (job.id,)
    ).fetchone()
    second = app.get_job(job.id)
    assert rows is not None and second.started_at is not None
    assert (second.started_at - rows[0]).total_seconds() >= 1.0  # Retry(delay=1.0) held


def test_a_fail_on_error_dead_letters_on_the_first_attempt(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.charge.enqueue(42)  # retries=3, fail_on=(PaymentDeclined,)
    drain(app)
    failed = app.get_job(job.id)
    assert failed.status is Status.FAILED and failed.attempts == 1
    assert attempts_of(db, job.id) == [(1, "failed", "PaymentDeclined")]
    letter = app.get_dead_letter(job.id)
    assert letter.attempts == 1 and letter.error is not None
    assert letter.error["message"] == "card declined for 42"
    assert "Traceback" in letter.error["traceback"]


def test_permanent_fails_at_once_and_retry_on_limits_what_is_retried(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    permanent = sample_app.give_up.enqueue()
    not_transient = sample_app.picky.enqueue("value")
    transient = sample_app.picky.enqueue("transient")
    worker, thread = start_in_thread(app, release_interval=0.05)
    try:
        assert transient.wait(10) == "ok"
        wait_for(lambda: app.get_job(not_transient.id).is_terminal)
        wait_for(lambda: app.get_job(permanent.id).is_terminal)
    finally:
        worker.stop()
        thread.join(30)
    assert attempts_of(db, permanent.id) == [(1, "failed", "Permanent")]
    assert attempts_of(db, not_transient.id) == [(1, "failed", "ValueError")]
    assert attempts_of(db, transient.id) == [
        (1, "failed", "ConnectionError"),
        (2, "succeeded", None),
    ]
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 2


def test_replay_from_the_dead_letters_runs_the_job_again_and_keeps_its_history(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.fixable.enqueue(77)  # retries=1: two attempts, both fail
    worker, thread = start_in_thread(app, release_interval=0.05)
    try:
        wait_for(lambda: app.get_job(job.id).status is Status.FAILED)
        assert [d.job_id for d in app.dead_letters(task="fixable")] == [job.id]
        db.execute("INSERT INTO test_runs (job_id, n) VALUES (gen_random_uuid(), 77)")  # the fix
        replayed = app.replay(job.id)
        assert replayed.status is Status.PENDING
        assert job.wait(10) == 77
    finally:
        worker.stop()
        thread.join(30)
    assert attempts_of(db, job.id) == [
        (1, "failed", "LookupError"),
        (2, "failed", "LookupError"),
        (3, "succeeded", None),
    ]
    assert app.dead_letters(task="fixable") == []


# -- time limits -----------------------------------------------------------------------


def test_an_async_task_sees_its_soft_time_limit_and_wraps_up(app: Any) -> None:
    job = sample_app.soft_wrap.enqueue(10)  # soft 0.3 s, hard 5 s
    started = time.monotonic()
    drain(app)
    assert job.wait(1) == "wrapped up"
    assert time.monotonic() - started < 4


def test_a_def_task_reads_its_deadline(app: Any) -> None:
    job = sample_app.deadline_aware.enqueue()  # soft 2 s
    drain(app)
    seen = job.wait(1)
    assert 1.0 < seen["left"] <= 2.0
    assert seen["deadline"] is not None


def test_the_hard_limit_cancels_an_async_task(app: Any, db: psycopg.Connection[Any]) -> None:
    job = sample_app.async_overrun.enqueue(30)  # hard 0.3 s, no retries
    started = time.monotonic()
    drain(app)
    assert time.monotonic() - started < 5
    assert attempts_of(db, job.id) == [(1, "failed", "HardTimeout")]


def test_the_hard_limit_fails_a_thread_run_attempt_at_its_deadline(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.thread_overrun.enqueue(2.0)  # hard 0.3 s
    worker, thread = start_in_thread(app, concurrency=2)
    try:
        wait_for(lambda: app.get_job(job.id).is_terminal, timeout=10)
        failed = app.get_job(job.id)
        assert failed.error is not None and failed.error["type"] == "HardTimeout"
        assert "--processes" in failed.error["message"]  # a thread cannot be killed
        assert failed.finished_at is not None and failed.started_at is not None
        assert (failed.finished_at - failed.started_at).total_seconds() < 1.5
        # The thread runs on and keeps its slot until it ends.
        assert worker.abandoned_threads == 1
        wait_for(lambda: worker.abandoned_threads == 0, timeout=10)
    finally:
        worker.stop()
        thread.join(30)


def children(pid: int) -> set[int]:
    """The task processes of a worker (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    found = set()
    for child in out.stdout.split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.add(int(child))
    return found


def test_the_hard_limit_kills_a_busy_looping_task_in_process_mode_and_replaces_the_child(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    w = spawn_worker("--processes", "1")
    before = children(w.proc.pid)
    assert len(before) == 1
    job = sample_app.spin.enqueue(60)  # hard 1 s
    wait_for(lambda: app.get_job(job.id).is_terminal, timeout=15)
    failed = app.get_job(job.id)
    assert failed.status is Status.FAILED
    assert failed.error is not None and failed.error["type"] == "HardTimeout"
    assert "its process was killed" in failed.error["message"]
    assert (failed.finished_at - failed.started_at).total_seconds() < 3  # type: ignore[operator]
    # The child that ran it is gone, and a new one took its place.
    wait_for(lambda: len(children(w.proc.pid)) == 1 and not children(w.proc.pid) & before)
    assert sample_app.add.enqueue(2, 2).wait(30) == 4  # and it works


# -- cancellation ----------------------------------------------------------------------


def test_cancelling_a_waiting_job_ends_it_at_once(app: Any, db: psycopg.Connection[Any]) -> None:
    pending = sample_app.add.enqueue(1, 1)
    scheduled = sample_app.add.options(delay=60).enqueue(1, 1)
    for job in (pending, scheduled):
        cancelled = app.cancel(job.id)
        assert cancelled.status is Status.CANCELLED and cancelled.finished_at is not None
        with pytest.raises(pgjobs.JobCancelled):
            job.wait(1)
    drain(app)
    assert count(db, "SELECT count(*) FROM pgjobs.attempts") == 0


def test_cancelling_a_retrying_job_ends_it(app: Any) -> None:
    job = sample_app.later.enqueue(60)
    drain(app)
    assert app.get_job(job.id).status is Status.RETRYING
    assert app.cancel(job.id).status is Status.CANCELLED


@pytest.mark.parametrize(
    ("task", "worker_args"),
    [
        ("cancellable_async", ()),  # async: the coroutine is cancelled
        ("cancellable_thread", ()),  # def on a thread: current_job().cancelled turns true
        ("busy", ("--processes", "1")),  # def in a child process: killed
    ],
)
def test_cancelling_a_running_job_of_each_kind_ends_it_cancelled(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any, task: str, worker_args: Any
) -> None:
    spawn_worker(*worker_args)
    job = app.tasks[task].enqueue(60)
    wait_for(lambda: count(db, "SELECT count(*) FROM test_runs") == 1, timeout=30)
    asked = app.cancel(job.id)  # from this process: the worker hears of it through Postgres
    assert asked.status is Status.RUNNING and asked.cancel_requested
    wait_for(lambda: app.get_job(job.id).is_terminal, timeout=10)
    done = app.get_job(job.id)
    assert done.status is Status.CANCELLED and not done.cancel_requested
    assert attempts_of(db, job.id) == [(1, "cancelled", "CancelledByRequest")]
    with pytest.raises(pgjobs.JobCancelled):
        job.wait(1)


def test_a_cancellation_whose_notification_was_lost_still_arrives(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    spawn_worker("--heartbeat-interval", "0.5", "--lease-ttl", "5")
    job = sample_app.cancellable_async.enqueue(60)
    wait_for(lambda: count(db, RUNNING) == 1)
    db.execute("UPDATE pgjobs.jobs SET cancel_requested_at = now() WHERE id = %s", (job.id,))
    wait_for(lambda: app.get_job(job.id).status is Status.CANCELLED, timeout=10)


# -- poison jobs -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["exit", "segfault"])
def test_a_poison_job_in_a_child_process_spends_its_attempts_and_is_dead_lettered(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any, how: str
) -> None:
    w = spawn_worker("--processes", "1", "--poll-interval", "0.2")
    job = sample_app.poison.enqueue(how)  # retries=2: three attempts
    # The backoff's default base is 1 s: three attempts take a few seconds.
    wait_for(lambda: app.get_job(job.id).is_terminal, timeout=40)
    assert [r[1:] for r in attempts_of(db, job.id)] == [("failed", "WorkerCrashed")] * 3
    assert app.get_dead_letter(job.id).attempts == 3
    assert count(db, "SELECT count(*) FROM test_runs") == 3
    assert w.proc.poll() is None  # the worker itself is fine
    assert sample_app.add.enqueue(1, 2).wait(30) == 3


def test_a_poison_job_that_kills_its_worker_is_dead_lettered_after_its_last_attempt(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    job = sample_app.poison.enqueue("exit")  # retries=2: three attempts
    lease = ("--lease-ttl", "1", "--heartbeat-interval", "0.2", "--poll-interval", "0.2")
    for attempt in (1, 2, 3):
        w = spawn_worker(*lease)
        assert w.wait(30) == 3  # the job killed it
        assert count(db, "SELECT count(*) FROM test_runs") == attempt
    survivor = spawn_worker(*lease)
    wait_for(lambda: app.get_job(job.id).is_terminal, timeout=20)
    failed = app.get_job(job.id)
    assert failed.status is Status.FAILED and failed.attempts == 3
    assert failed.error is not None and failed.error["type"] == "WorkerLost"
    assert [r[1:] for r in attempts_of(db, job.id)] == [("lost", "WorkerLost")] * 3
    assert app.get_dead_letter(job.id).attempts == 3
    assert survivor.proc.poll() is None
