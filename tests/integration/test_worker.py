"""The worker: claims, runs and records jobs; real processes share one database."""

from __future__ import annotations

import logging
import signal
import time
import uuid
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import JobFailed, Status, WaitTimeout, Worker
from tests import sample_app
from tests.support.common import count, wait_for
from tests.support.workers import drain, start_in_thread


def test_four_worker_processes_drain_20000_jobs_each_exactly_once(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    # steady: record() with retries. The server is shared with other tests; a connection
    # it refuses ("too many clients") fails the run before its insert and is retried, so a
    # refusal is not taken for a lost job.
    for start in range(0, 20_000, 5_000):
        sample_app.steady.enqueue_many([(n,) for n in range(start, start + 5_000)])
    workers = [spawn_worker("--burst", "--concurrency", "10", wait=False) for _ in range(4)]
    for w in workers:
        assert w.wait(timeout=240) == 0, w.log()

    runs = db.execute(
        "SELECT count(*), count(DISTINCT job_id), count(DISTINCT n), count(DISTINCT pid) "
        "FROM test_runs"
    ).fetchone()
    assert runs is not None
    total, distinct_jobs, distinct_n, pids = runs
    assert (total, distinct_jobs, distinct_n) == (20_000, 20_000, 20_000)  # none lost, none twice
    assert pids == 4  # every process took a share
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 20_000
    assert (
        count(
            db,
            "SELECT count(*) FROM pgjobs.jobs WHERE NOT "
            "(created_at <= started_at AND started_at <= finished_at)",
        )
        == 0
    )
    # Each run happened inside its job's recorded start and finish.
    assert (
        count(
            db,
            "SELECT count(*) FROM test_runs r JOIN pgjobs.jobs j ON j.id = r.job_id "
            "WHERE NOT (r.at BETWEEN j.started_at AND j.finished_at)",
        )
        == 0
    )
    attempts = db.execute(
        "SELECT count(DISTINCT job_id), "
        "count(*) FILTER (WHERE outcome = 'succeeded' AND started_at <= finished_at) "
        "FROM pgjobs.attempts"
    ).fetchone()
    assert attempts == (20_000, 20_000)
    # Every other attempt is one the server refused a connection to, and was retried.
    assert (
        count(
            db,
            "SELECT count(*) FROM pgjobs.attempts WHERE outcome <> 'succeeded'"
            " AND NOT (outcome = 'retrying' AND error::text LIKE '%too many clients%')",
        )
        == 0
    )
    assert count(db, "SELECT count(*) FROM pgjobs.workers") == 0  # all unregistered


def test_sync_and_async_results_are_recorded(app: Any, db: psycopg.Connection[Any]) -> None:
    sync_job = sample_app.add.enqueue(2, 3)
    async_job = sample_app.aadd.enqueue(4, 5)
    drain(app)
    assert sync_job.wait(5) == 5
    assert async_job.wait(5) == 9
    done = app.get_job(sync_job.id)
    assert done.status is Status.SUCCEEDED and done.is_terminal and done.attempts == 1
    assert done.created_at <= done.started_at <= done.finished_at
    assert done.worker_id is None
    view = done.status_view()
    assert view["result"] == 5 and view["error"] is None and view["is_terminal"] is True


def test_arguments_arrive_as_the_declared_types(app: Any) -> None:
    job = sample_app.typed.enqueue("2026-03-04T05:06:07Z", {"street": "s", "city": "Oslo"}, ["t"])
    drain(app)
    assert job.wait(5) == {
        "when_type": "datetime",
        "year": 2026,
        "where_type": "Address",
        "city": "Oslo",
        "tags": ["t"],
        "note": None,
    }


def test_current_job_tells_the_task_about_its_job(app: Any) -> None:
    job = sample_app.whoami.enqueue()
    keyed = sample_app.whoami.options(dedup_key="invoice-7").enqueue()
    drain(app)
    assert job.wait(5) == {
        "id": str(job.id),
        "task": "whoami",
        "queue": "default",
        "attempt": 1,
        "max_attempts": 1,
        "idempotency_key": f"pgjobs-{job.id}",
    }
    assert keyed.wait(5)["idempotency_key"] == "invoice-7"


def test_current_job_outside_a_task_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="only available inside a running task"):
        pgjobs.current_job()


@pytest.mark.parametrize("task", ["progress", "aprogress"])
def test_progress_is_visible_while_the_job_runs_and_kept_after(app: Any, task: str) -> None:
    job = app.tasks[task].enqueue(10, 0.1)
    worker, thread = start_in_thread(app)
    seen: list[float] = []

    def running_with_progress() -> bool:
        now = app.get_job(job.id)
        if now.status is Status.RUNNING and now.progress:
            seen.append(now.progress["current"])
        return now.is_terminal

    wait_for(running_with_progress, timeout=15, interval=0.05)
    worker.stop()
    thread.join(30)
    assert seen and 0 < min(seen) < 10  # readers saw it part-way
    final = app.get_job(job.id)
    assert final.progress == {"current": 10, "total": 10, "percent": 100.0, "message": "step 10"}


@pytest.mark.parametrize("task", ["fail", "afail"])
def test_a_failure_records_type_message_traceback_an_attempt_and_a_dead_letter(
    app: Any, db: psycopg.Connection[Any], task: str
) -> None:
    job = app.tasks[task].enqueue("disk full")
    drain(app)
    with pytest.raises(JobFailed, match="disk full") as info:
        job.wait(5)
    error = info.value.error
    assert error["type"] in ("ValueError", "RuntimeError")
    assert error["message"] == "disk full"
    assert "Traceback" in error["traceback"] and "sample_app.py" in error["traceback"]
    failed = app.get_job(job.id)
    assert failed.status is Status.FAILED and failed.finished_at is not None
    assert failed.status_view()["error"]["message"] == "disk full"
    assert failed.status_view()["result"] is None
    attempt = db.execute(
        "SELECT attempt, outcome, error->>'message' FROM pgjobs.attempts WHERE job_id = %s",
        (job.id,),
    ).fetchall()
    assert attempt == [(1, "failed", "disk full")]
    dead = db.execute(
        "SELECT task, args, attempts, error->>'type' FROM pgjobs.dead_letters WHERE job_id = %s",
        (job.id,),
    ).fetchone()
    assert dead == (task, ["disk full"], 1, error["type"])


def test_a_failed_attempt_with_retries_left_waits_then_runs_again(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.flaky.enqueue(1)  # retries=2, backoff base 0.05 s, cap 0.1 s
    worker, thread = start_in_thread(app, release_interval=0.05)
    wait_for(lambda: app.get_job(job.id).is_terminal, timeout=10)
    worker.stop()
    thread.join(30)
    assert job.wait(1) == 2
    rows = db.execute(
        "SELECT attempt, outcome, error->>'type' FROM pgjobs.attempts WHERE job_id = %s "
        "ORDER BY attempt",
        (job.id,),
    ).fetchall()
    assert rows == [(1, "failed", "ConnectionError"), (2, "succeeded", None)]
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0


def test_a_retrying_job_shows_its_next_run_time(app: Any, db: psycopg.Connection[Any]) -> None:
    slow = pgjobs.App(app.url)

    @slow.task(retries=1, backoff=pgjobs.Backoff(base=600, cap=600))
    def once() -> None:
        raise TimeoutError("upstream")

    job = once.enqueue()
    drain(slow)
    now = slow.get_job(job.id)
    assert now.status is Status.RETRYING and now.attempts == 1
    assert now.error is not None and now.error["type"] == "TimeoutError"
    assert now.run_at is not None and now.started_at is not None
    assert 0 <= (now.run_at - now.started_at).total_seconds() <= 601
    slow.close()


def test_jobs_of_a_task_the_worker_does_not_know_wait_for_one_that_does_without_spending_a_retry(
    app: Any, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # A rolling deploy: new code enqueued 'renamed_task', an old worker claims it.
    ids = [uuid.uuid4() for _ in range(3)]
    for job_id in ids:
        db.execute(
            "INSERT INTO pgjobs.jobs (id, task, args) VALUES (%s, 'renamed_task', '[1]')", (job_id,)
        )
    with caplog.at_level(logging.WARNING, logger="pgjobs.worker"):
        drain(app)
    warnings = [r for r in caplog.records if "renamed_task" in r.getMessage()]
    assert len(warnings) == 1  # one per task name, however many jobs
    for job_id in ids:
        job = app.get_job(job_id)
        # Back to wait, after a back-off; the attempt is recorded, its number
        # used up, and the task's retries untouched (max_attempts moved on).
        assert job.status is Status.RETRYING and job.attempts == 1 and job.max_attempts == 2
        assert job.error is not None and job.error["type"] == "UnknownTask"
        assert job.run_at is not None and job.started_at is not None
        assert 4 <= (job.run_at - job.started_at).total_seconds() <= 6
        assert [a.outcome for a in app.attempts(job_id)] == ["unknown_task"]
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0
    # A worker that knows the task runs the jobs at their next attempt.
    db.execute("UPDATE pgjobs.jobs SET task = 'add', args = '[1, 2]', run_at = now()")
    drain(app)
    for job_id in ids:
        job = app.get_job(job_id)
        assert job.status is Status.SUCCEEDED and job.result == 3 and job.attempts == 2
        assert [a.outcome for a in app.attempts(job_id)] == ["unknown_task", "succeeded"]


def test_jobs_of_an_unknown_task_are_dead_lettered_once_no_worker_knew_it_for_the_timeout(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job_id = uuid.uuid4()
    db.execute(
        "INSERT INTO pgjobs.jobs (id, task, args) VALUES (%s, 'renamed_task', '[1]')", (job_id,)
    )
    drain(app, unknown_task_timeout=60)
    # Its first such attempt was over a minute ago: the next one gives up.
    db.execute("UPDATE pgjobs.attempts SET started_at = started_at - interval '61 seconds'")
    db.execute("UPDATE pgjobs.jobs SET run_at = now()")
    drain(app, unknown_task_timeout=60)
    job = app.get_job(job_id)
    assert job.status is Status.FAILED and job.attempts == 2
    assert job.error is not None and job.error["type"] == "UnknownTask"
    assert [a.outcome for a in app.attempts(job_id)] == ["unknown_task", "unknown_task"]
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 1


def test_a_result_that_is_not_json_fails_the_job(app: Any) -> None:
    job = sample_app.unserialisable.enqueue()
    drain(app)
    with pytest.raises(JobFailed, match="return value cannot be stored as JSON"):
        job.wait(5)


def test_a_result_or_progress_jsonb_refuses_is_refused_in_its_task_not_in_the_batch(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    """NaN, infinity, NUL and lone surrogates are not jsonb: refused in the task, not the batch."""
    import math

    local = pgjobs.App(db_url)

    @local.task
    def number(kind: str) -> float:
        return {"nan": math.nan, "inf": -math.inf}.get(kind, 1.5)

    @local.task
    def undecodable(kind: str) -> str:
        # What surrogateescape makes of a file name's undecodable byte.
        name = b"report-\xff.csv".decode("utf-8", "surrogateescape")
        if kind == "raise":
            raise RuntimeError(f"cannot open {name}\x00")
        return name

    @local.task
    def report(kind: str) -> str:
        try:
            if kind == "nul":
                pgjobs.current_job().set_progress(1, 2, "half\x00way")
            elif kind == "surrogate":
                pgjobs.current_job().set_progress(1, 2, "\udcff")
            else:
                pgjobs.current_job().set_progress(
                    *((math.nan, 2) if kind == "nan" else (1, math.inf))
                )
        except ValueError as exc:
            return str(exc)
        return "reported"

    bad = [number.enqueue("nan"), number.enqueue("inf")]
    good = [number.enqueue("ok") for _ in range(20)]
    reports = [report.enqueue(k) for k in ("nan", "inf", "nul", "surrogate")]
    odd = [undecodable.enqueue("return"), undecodable.enqueue("raise")]
    worker, thread = start_in_thread(local, burst=True, grace_period=1.0)
    thread.join(20)
    # A refused batch write is retried for good, and a burst worker never ends.
    ended = not thread.is_alive()
    if not ended:
        worker.stop()
        thread.join(30)
    assert ended, "the worker could not record the batch"
    for job in bad:
        with pytest.raises(JobFailed, match="return value cannot be stored as JSON"):
            job.wait(1)
    assert all(j.wait(1) == 1.5 for j in good)
    assert [j.wait(1) for j in reports] == [
        "progress must be finite numbers, got current=nan, total=2",
        "progress must be finite numbers, got current=1, total=inf",
        "a progress message must not contain a NUL character (\\u0000)",
        "a progress message must not contain an unpaired surrogate character",
    ]
    with pytest.raises(JobFailed, match="return value contains an unpaired surrogate"):
        odd[0].wait(1)
    # An error is always stored: what jsonb cannot hold is kept as its escape.
    with pytest.raises(JobFailed) as raised:
        odd[1].wait(1)
    assert raised.value.error["message"] == "cannot open report-\\udcff.csv\\x00"
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'") == 0
    local.close()


def test_a_worker_runs_only_its_queues(app: Any, db: psycopg.Connection[Any]) -> None:
    mine = sample_app.elsewhere.enqueue()
    theirs = sample_app.add.enqueue(1, 1)
    drain(app, queues=["other"])
    assert app.get_job(mine.id).status is Status.SUCCEEDED
    assert app.get_job(theirs.id).status is Status.PENDING


def test_a_scheduled_job_waits_for_its_time(app: Any) -> None:
    job = sample_app.add.options(delay=1.5).enqueue(1, 1)
    worker, thread = start_in_thread(app, release_interval=0.1)
    time.sleep(1.0)
    assert app.get_job(job.id).status is Status.SCHEDULED
    assert job.wait(5) == 2
    worker.stop()
    thread.join(30)
    done = app.get_job(job.id)
    assert done.started_at is not None and done.run_at is not None
    assert done.started_at >= done.run_at


def test_wait_times_out_on_a_job_nobody_runs(app: Any) -> None:
    job = sample_app.add.enqueue(1, 1)
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"still pending after 0\.3 s"):
        job.wait(timeout=0.3)
    assert time.monotonic() - started < 2


def test_claims_never_exceed_free_capacity(app: Any, db: psycopg.Connection[Any]) -> None:
    sample_app.sleep.enqueue_many([(0.3,)] * 12)
    worker, thread = start_in_thread(app, concurrency=3)
    peak = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'")
        peak = max(peak, running)
        if count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 12:
            break
        time.sleep(0.02)
    worker.stop()
    thread.join(30)
    assert peak == 3
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 12


def _count_statements(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count a worker's statements: claims alone, outcomes alone, both at once."""
    counts = {"claims_alone": 0, "finishes_alone": 0, "both": 0}
    claim, finish = worker.producer.claim, worker.completer.finish

    async def counting_claim(limit: int) -> list[dict[str, Any]]:
        counts["claims_alone"] += 1
        return await claim(limit)

    async def counting_finish(batch: list[Any], claim: int = 0) -> list[dict[str, Any]]:
        counts["both" if claim else "finishes_alone"] += 1
        return await finish(batch, claim)

    monkeypatch.setattr(worker.producer, "claim", counting_claim)
    monkeypatch.setattr(worker.completer, "finish", counting_finish)
    return counts


def test_a_busy_worker_claims_with_every_batch_and_never_past_its_capacity(
    db: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At the end of every statement that changes jobs, the database's count of
    # running jobs (what other sessions see once it commits) goes in a table.
    db.execute("CREATE TABLE running_seen (n int)")
    db.execute(
        "CREATE FUNCTION note_running() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO running_seen SELECT count(*) FROM pgjobs.jobs WHERE status = 'running';"
        " RETURN NULL; END $$"
    )
    db.execute(
        "CREATE TRIGGER note_running AFTER UPDATE ON pgjobs.jobs"
        " FOR EACH STATEMENT EXECUTE FUNCTION note_running()"
    )
    # No limited tasks: a busy worker records and claims with one statement.
    app = pgjobs.App(db_url)

    @app.task
    async def nothing(n: int) -> None:
        """Does nothing."""

    try:
        nothing.enqueue_many([(n,) for n in range(2000)])
        worker = Worker(app, concurrency=20, burst=True)
        counts = _count_statements(worker, monkeypatch)
        worker.run(install_signal_handlers=False)
        peak = db.execute("SELECT max(n) FROM running_seen").fetchone()
    finally:
        app.close()
        db.execute("DROP TRIGGER note_running ON pgjobs.jobs")
        db.execute("DROP FUNCTION note_running()")
        db.execute("DROP TABLE running_seen")
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 2000
    assert count(db, "SELECT count(*) FROM pgjobs.attempts") == 2000
    # Full, and never over: each writer's claim takes back the slots its own
    # batch frees, and nothing the other writer holds.
    assert peak == (20,)
    # 2000 jobs in batches of 10: every batch of outcomes but the last few
    # claims the next jobs in the same statement. Counting a batch's slots
    # twice (as outcomes on their way and as the claim that refills them)
    # left the other writer's claim empty: two in five batches went alone.
    assert counts["both"] >= 190, counts
    assert counts["claims_alone"] + counts["finishes_alone"] <= 6, counts


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_an_idle_worker_cleanly(
    db: psycopg.Connection[Any], spawn_worker: Any, sig: int
) -> None:
    w = spawn_worker()
    assert count(db, "SELECT count(*) FROM pgjobs.workers") == 1
    w.signal(sig)
    assert w.wait(15) == 0, w.log()
    assert "stopped after 0 jobs" in w.log()
    assert count(db, "SELECT count(*) FROM pgjobs.workers") == 0


def test_sigterm_lets_running_jobs_finish(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    w = spawn_worker()
    jobs = [sample_app.sleep.enqueue(1.0), sample_app.asleep.enqueue(1.0)]
    wait_for(lambda: count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'") == 2)
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0, w.log()
    assert [j.wait(1) for j in jobs] == [1.0, 1.0]
    assert "stopped after 2 jobs" in w.log()


def test_a_job_whose_notification_was_lost_is_found_by_the_poll(
    app: Any, db_url: str, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    spawn_worker("--poll-interval", "0.5")
    time.sleep(0.3)
    with psycopg.connect(db_url) as conn:
        # Triggers off for this session: the insert sends no NOTIFY.
        conn.execute("SET session_replication_role = replica")
        job = sample_app.record.enqueue(7, conn=conn)
        conn.commit()
    wait_for(lambda: app.get_job(job.id).status is Status.SUCCEEDED, timeout=5)
    assert count(db, "SELECT count(*) FROM test_runs WHERE n = 7") == 1


def test_await_result_is_the_async_twin_of_wait(app: Any) -> None:
    import asyncio

    ok = sample_app.aadd.enqueue(20, 22)
    bad = sample_app.afail.enqueue("no")
    drain(app)

    async def main() -> tuple[Any, str]:
        result = await ok.await_result(timeout=5)
        try:
            await bad.await_result(timeout=5)
        except JobFailed as exc:
            return result, str(exc)
        finally:
            await app.aclose()
        return result, ""

    result, failure = asyncio.run(main())
    assert result == 42
    assert "RuntimeError: no" in failure


def test_a_worker_warns_once_of_registered_tasks_on_queues_it_does_not_serve(
    db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    # Without --queues a worker serves `default` only; sample_app has tasks on fast and other.
    alone = spawn_worker("--burst", wait=False)
    assert alone.wait(60) == 0, alone.log()
    warned = [line for line in alone.log().splitlines() if "serves none of the queues" in line]
    assert len(warned) == 1, alone.log()
    assert "WARNING" in warned[0]
    assert "fast (arecord); other (elsewhere)" in warned[0]
    assert "default" not in warned[0].split("registered tasks:")[1]
    everything = spawn_worker("--burst", "--queues", "default,fast,other", wait=False)
    assert everything.wait(60) == 0, everything.log()
    assert "serves none of the queues" not in everything.log()
    assert "started:" in everything.log()
