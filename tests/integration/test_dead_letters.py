"""Dead letters and replay: listing, filters, replay with history, purge; API, async and CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import IllegalTransition, InvalidArguments, JobNotFound, Status, Worker
from tests import sample_app
from tests.support.common import ROOT, count

APP = "tests.sample_app:app"
QUEUES = ["default", "fast", "other", "billing"]


# -- helpers ---------------------------------------------------------------------------


def drain(app: Any) -> None:
    """Run an in-process worker until the ready jobs are done."""
    Worker(app, burst=True, queues=QUEUES).run(install_signal_handlers=False)


def settle(app: Any, *jobs: pgjobs.Job, timeout: float = 15) -> None:
    """Drain until every job has ended, waiting out retry backoffs between bursts."""
    deadline = time.monotonic() + timeout
    while True:
        drain(app)
        if all(app.get_job(j.id).is_terminal for j in jobs):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs did not end within {timeout} s")
        time.sleep(0.03)


def db_now(db: psycopg.Connection[Any]) -> datetime:
    row = db.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def status_of(db: psycopg.Connection[Any], job_id: uuid.UUID) -> str:
    row = db.execute("SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def dead_ids(db: psycopg.Connection[Any]) -> set[uuid.UUID]:
    return {r[0] for r in db.execute("SELECT job_id FROM pgjobs.dead_letters").fetchall()}


def attempt_rows(db: psycopg.Connection[Any], job_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT attempt, outcome, error->>'type' FROM pgjobs.attempts WHERE job_id = %s "
        "ORDER BY attempt",
        (job_id,),
    ).fetchall()


def snapshot(db: psycopg.Connection[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """Every row of the jobs, attempts and dead letters, to show that nothing changed."""
    return (
        db.execute("SELECT to_jsonb(j) FROM pgjobs.jobs j ORDER BY id").fetchall(),
        db.execute("SELECT to_jsonb(a) FROM pgjobs.attempts a ORDER BY job_id, attempt").fetchall(),
        db.execute("SELECT to_jsonb(d) FROM pgjobs.dead_letters d ORDER BY job_id").fetchall(),
    )


def failed(app: Any, *jobs: pgjobs.Job) -> list[pgjobs.Job]:
    """Run the jobs until they end, and check that each failed for good."""
    settle(app, *jobs)
    for j in jobs:
        assert app.get_job(j.id).status is Status.FAILED
    return list(jobs)


def pgjobs_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result
    assert result.stderr == "", result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.startswith("Error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result
    assert expected in result.stderr, result.stderr


# -- listing and reading ---------------------------------------------------------------


def test_a_job_that_fails_for_good_is_a_dead_letter_with_its_call_and_error(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    start = db_now(db)
    declined = sample_app.charge.enqueue(amount=42)  # retries=3, but fail_on: one attempt
    broken = sample_app.fail.enqueue("disk full")
    failed(app, declined, broken)
    end = db_now(db)

    letters = {d.job_id: d for d in app.dead_letters()}
    assert set(letters) == {declined.id, broken.id}

    d = letters[declined.id]
    assert isinstance(d, pgjobs.DeadLetter)
    assert (d.task, d.queue, d.args, d.kwargs, d.attempts) == (
        "charge",
        "default",
        [],
        {"amount": 42},
        1,
    )
    assert d.error is not None
    assert d.error["type"] == "PaymentDeclined"
    assert d.error["message"] == "card declined for 42"
    assert d.error["traceback"].startswith("Traceback (most recent call last)")
    assert "sample_app.py" in d.error["traceback"] and "PaymentDeclined" in d.error["traceback"]
    assert d.failed_at.tzinfo is not None and start <= d.failed_at <= end

    b = letters[broken.id]
    assert (b.task, b.args, b.kwargs, b.attempts) == ("fail", ["disk full"], {}, 1)
    assert b.error is not None and (b.error["type"], b.error["message"]) == (
        "ValueError",
        "disk full",
    )
    assert "Traceback" in b.error["traceback"]

    assert app.get_dead_letter(declined.id) == d
    assert app.get_dead_letter(str(broken.id)) == b
    assert app.get_job(declined.id).error == d.error


def test_a_job_with_retries_left_is_not_a_dead_letter_until_they_are_spent(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    slow = pgjobs.App(app.url)

    @slow.task(retries=1, backoff=pgjobs.Backoff(base=600, cap=600))
    def patient(n: int) -> None:
        raise TimeoutError(f"upstream {n}")

    job = patient.enqueue(7001)
    drain(slow)
    assert slow.get_job(job.id).status is Status.RETRYING
    assert slow.dead_letters() == []
    with pytest.raises(JobNotFound):
        slow.get_dead_letter(job.id)
    with pytest.raises(IllegalTransition, match="is retrying"):
        slow.replay(job.id)

    db.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job.id,))
    drain(slow)
    assert slow.get_job(job.id).status is Status.FAILED
    (d,) = slow.dead_letters()
    assert (d.job_id, d.task, d.attempts, d.args) == (job.id, "patient", 2, [7001])
    assert d.error is not None and d.error["message"] == "upstream 7001"
    assert attempt_rows(db, job.id) == [
        (1, "failed", "TimeoutError"),
        (2, "failed", "TimeoutError"),
    ]
    slow.close()


def test_unknown_ids_raise_job_not_found(app: Any) -> None:
    done = sample_app.add.enqueue(1, 2)
    drain(app)
    with pytest.raises(JobNotFound, match="no dead letter"):
        app.get_dead_letter(uuid.uuid4())
    with pytest.raises(JobNotFound, match="no dead letter"):
        app.get_dead_letter(done.id)  # a job, but one that succeeded
    with pytest.raises(JobNotFound, match="is not a job id"):
        app.get_dead_letter("banana")


def test_task_and_queue_filters_include_and_exclude(app: Any) -> None:
    a = sample_app.fail.enqueue("a")
    b = sample_app.fail.options(queue="billing").enqueue("b")
    c = sample_app.charge.options(queue="billing").enqueue(3)
    failed(app, a, b, c)

    def ids(**filters: Any) -> set[uuid.UUID]:
        return {d.job_id for d in app.dead_letters(**filters)}

    assert ids() == {a.id, b.id, c.id}
    assert ids(task="fail") == {a.id, b.id}
    assert ids(task="charge") == {c.id}
    assert ids(queue="billing") == {b.id, c.id}
    assert ids(queue="default") == {a.id}
    assert ids(task="fail", queue="billing") == {b.id}
    assert ids(task="charge", queue="default") == set()
    assert ids(task="no_such_task") == set()


def test_since_and_before_split_dead_letters_by_their_failure_time(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    early = sample_app.fail.enqueue("early")
    failed(app, early)
    middle = db_now(db)
    late = sample_app.fail.enqueue("late")
    failed(app, late)
    early_at = app.get_dead_letter(early.id).failed_at
    late_at = app.get_dead_letter(late.id).failed_at
    assert early_at < middle < late_at

    def ids(**filters: Any) -> list[uuid.UUID]:
        return [d.job_id for d in app.dead_letters(**filters)]

    assert ids(since=middle) == [late.id]
    assert ids(before=middle) == [early.id]
    assert ids(since=early_at) == [late.id, early.id]  # since is inclusive
    assert ids(before=late_at) == [early.id]  # before is exclusive
    assert ids(since=early_at, before=late_at) == [early.id]
    assert ids(since=late_at + timedelta(seconds=1)) == []
    assert ids(before=early_at) == []
    # The same moment in another time zone is the same filter.
    plus_five = middle.astimezone(timezone(timedelta(hours=5)))
    assert ids(since=plus_five) == [late.id]
    assert ids(before=plus_five) == [early.id]
    assert ids(task="fail", since=middle, before=datetime.now(UTC) + timedelta(hours=1)) == [
        late.id
    ]


def test_limit_and_cursor_page_through_newest_first_without_overlap(app: Any) -> None:
    jobs = sample_app.fail.enqueue_many([(f"m{i}",) for i in range(5)])
    failed(app, *jobs)
    newest_first = [j.id for j in reversed(jobs)]

    pages: list[list[uuid.UUID]] = []
    cursor: uuid.UUID | None = None
    while True:
        page = app.dead_letters(limit=2, cursor=cursor)
        if not page:
            break
        assert len(page) <= 2
        pages.append([d.job_id for d in page])
        cursor = page[-1].job_id
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]
    assert app.dead_letters(limit=50) == app.dead_letters()
    assert [d.job_id for d in app.dead_letters(limit=3, cursor=str(newest_first[0]))] == (
        newest_first[1:4]
    )


def test_naive_datetimes_are_refused_and_change_nothing(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.fail.enqueue("x")
    failed(app, job)
    before = snapshot(db)
    naive = datetime.now()
    with pytest.raises(InvalidArguments, match="since must be timezone-aware"):
        app.dead_letters(since=naive)
    with pytest.raises(InvalidArguments, match="before must be timezone-aware"):
        app.dead_letters(before=naive)
    with pytest.raises(InvalidArguments, match="timezone-aware"):
        app.replay_dead_letters(since=naive)
    with pytest.raises(InvalidArguments, match="timezone-aware"):
        app.purge_dead_letters(before=naive)
    assert snapshot(db) == before


# -- replay ------------------------------------------------------------------------------


def test_replay_runs_the_job_again_and_keeps_its_attempt_history(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.fixable.enqueue(7101)  # retries=1: two attempts, then a dead letter
    failed(app, job)
    assert attempt_rows(db, job.id) == [(1, "failed", "LookupError"), (2, "failed", "LookupError")]
    assert dead_ids(db) == {job.id}

    db.execute("INSERT INTO test_runs (job_id, n) VALUES (%s, %s)", (job.id, 7101))
    replayed = app.replay(job.id)
    assert replayed.id == job.id and replayed.status is Status.PENDING
    assert dead_ids(db) == set()
    assert app.dead_letters() == []
    with pytest.raises(JobNotFound):
        app.get_dead_letter(job.id)
    now = app.get_job(job.id)
    assert now.status is Status.PENDING and now.finished_at is None

    drain(app)
    assert job.wait(5) == 7101
    assert app.get_job(job.id).attempts == 3
    assert attempt_rows(db, job.id) == [
        (1, "failed", "LookupError"),
        (2, "failed", "LookupError"),
        (3, "succeeded", None),
    ]
    assert dead_ids(db) == set()


def test_a_replay_gives_a_fresh_allowance_of_attempts(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.fixable.enqueue(7201)  # never fixed: every attempt fails
    failed(app, job)
    assert app.get_dead_letter(job.id).attempts == 2

    app.replay(job.id)
    failed(app, job)
    assert attempt_rows(db, job.id) == [(n, "failed", "LookupError") for n in (1, 2, 3, 4)]
    again = app.get_dead_letter(job.id)
    assert again.attempts == 4
    assert again.error is not None and again.error["message"] == "nothing for 7201 yet"
    assert app.get_job(job.id).attempts == 4

    app.replay(job.id)
    failed(app, job)
    assert [r[0] for r in attempt_rows(db, job.id)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("status", ["succeeded", "pending", "scheduled"])
def test_replaying_a_job_that_did_not_fail_is_an_illegal_transition(
    app: Any, db: psycopg.Connection[Any], status: str
) -> None:
    if status == "scheduled":
        job = sample_app.add.options(delay=600).enqueue(1, 2)
    else:
        job = sample_app.add.enqueue(1, 2)
        if status == "succeeded":
            drain(app)
    assert status_of(db, job.id) == status
    before = snapshot(db)
    with pytest.raises(IllegalTransition, match=f"is {status}"):
        app.replay(job.id)
    assert snapshot(db) == before


def test_replaying_an_unknown_job_raises_job_not_found(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    with pytest.raises(JobNotFound, match="no job with id"):
        app.replay(uuid.uuid4())
    with pytest.raises(JobNotFound, match="is not a job id"):
        app.replay("banana")
    assert count(db) == 0


def test_a_cancelled_job_can_be_replayed(app: Any, db: psycopg.Connection[Any]) -> None:
    job = sample_app.add.enqueue(20, 22)
    assert app.cancel(job.id).status is Status.CANCELLED
    drain(app)
    assert app.get_job(job.id).status is Status.CANCELLED
    assert dead_ids(db) == set()

    replayed = app.replay(job.id)
    assert replayed.status is Status.PENDING
    drain(app)
    assert job.wait(5) == 42
    assert attempt_rows(db, job.id) == [(1, "succeeded", None)]


# -- replay and purge in bulk ------------------------------------------------------------


def test_replay_dead_letters_replays_only_the_matching_ones(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    fails = [sample_app.fail.enqueue("f1"), sample_app.fail.enqueue("f2")]
    declined = sample_app.charge.enqueue(5)
    billed = sample_app.charge.options(queue="billing").enqueue(6)
    failed(app, *fails, declined, billed)

    assert app.replay_dead_letters(task="no_such_task") == []
    ids = app.replay_dead_letters(task="fail")
    assert sorted(ids) == sorted(j.id for j in fails)
    assert all(isinstance(i, uuid.UUID) for i in ids)
    assert [status_of(db, j.id) for j in fails] == ["pending", "pending"]
    assert dead_ids(db) == {declined.id, billed.id}
    assert status_of(db, declined.id) == status_of(db, billed.id) == "failed"

    assert app.replay_dead_letters(queue="billing") == [billed.id]
    assert status_of(db, billed.id) == "pending"
    assert dead_ids(db) == {declined.id}

    failed(app, *fails, billed)
    assert [len(attempt_rows(db, j.id)) for j in fails] == [2, 2]
    assert dead_ids(db) == {fails[0].id, fails[1].id, declined.id, billed.id}


def test_purge_removes_only_the_matching_dead_letters_and_the_jobs_stay_failed(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    fails = [sample_app.fail.enqueue("p1"), sample_app.fail.enqueue("p2")]
    charges = [sample_app.charge.enqueue(1), sample_app.charge.enqueue(2)]
    everything = [*fails, *charges]
    failed(app, *everything)

    assert app.purge_dead_letters([]) == 0
    assert app.purge_dead_letters([uuid.uuid4()]) == 0
    assert app.purge_dead_letters([fails[0].id]) == 1
    assert dead_ids(db) == {fails[1].id, charges[0].id, charges[1].id}
    assert app.purge_dead_letters([fails[0].id]) == 0  # already gone
    assert app.purge_dead_letters(task="no_such_task") == 0
    assert app.purge_dead_letters(task="charge") == 2
    assert dead_ids(db) == {fails[1].id}
    assert [d.job_id for d in app.dead_letters()] == [fails[1].id]

    for j in everything:
        now = app.get_job(j.id)
        assert now.status is Status.FAILED and now.error is not None
        assert len(attempt_rows(db, j.id)) == 1
    with pytest.raises(JobNotFound):
        app.get_dead_letter(charges[0].id)


# -- the async twins ---------------------------------------------------------------------


def test_the_async_twins_give_the_same_answers(app: Any, db: psycopg.Connection[Any]) -> None:
    fails = [sample_app.fail.enqueue("a1"), sample_app.fail.enqueue("a2")]
    declined = sample_app.charge.options(queue="billing").enqueue(9)
    fixable = sample_app.fixable.enqueue(7301)
    done = sample_app.add.enqueue(1, 1)
    failed(app, *fails, declined, fixable)
    settle(app, done)
    middle = app.get_dead_letter(fails[1].id).failed_at

    expected = {
        "all": app.dead_letters(),
        "task": app.dead_letters(task="fail"),
        "queue": app.dead_letters(queue="billing"),
        "since": app.dead_letters(since=middle),
        "before": app.dead_letters(before=middle),
        "page": app.dead_letters(limit=2, cursor=fixable.id),
        "one": app.get_dead_letter(declined.id),
    }
    assert len(expected["all"]) == 4

    async def main() -> dict[str, Any]:
        try:
            got: dict[str, Any] = {
                "all": await app.adead_letters(),
                "task": await app.adead_letters(task="fail"),
                "queue": await app.adead_letters(queue="billing"),
                "since": await app.adead_letters(since=middle),
                "before": await app.adead_letters(before=middle),
                "page": await app.adead_letters(limit=2, cursor=fixable.id),
                "one": await app.aget_dead_letter(declined.id),
            }
            with pytest.raises(JobNotFound):
                await app.aget_dead_letter(uuid.uuid4())
            with pytest.raises(InvalidArguments):
                await app.adead_letters(since=datetime.now())
            with pytest.raises(JobNotFound):
                await app.areplay(uuid.uuid4())
            unchanged = snapshot(db)
            with pytest.raises(IllegalTransition):
                await app.areplay(done.id)
            got["unchanged"] = snapshot(db) == unchanged

            got["replayed"] = await app.areplay(fixable.id)
            got["bulk"] = await app.areplay_dead_letters(task="fail")
            got["purged_ids"] = await app.apurge_dead_letters([uuid.uuid4()])
            got["purged_task"] = await app.apurge_dead_letters(task="charge")
            got["left"] = await app.adead_letters()
            return got
        finally:
            await app.aclose()

    got = asyncio.run(main())
    for key, value in expected.items():
        assert got[key] == value, key
    assert got["unchanged"] is True
    assert got["replayed"].id == fixable.id and got["replayed"].status is Status.PENDING
    assert sorted(got["bulk"]) == sorted(j.id for j in fails)
    assert got["purged_ids"] == 0 and got["purged_task"] == 1
    assert got["left"] == []
    assert [status_of(db, j.id) for j in (*fails, fixable)] == ["pending"] * 3
    assert status_of(db, declined.id) == "failed"


# -- the command line --------------------------------------------------------------------


@pytest.mark.processes
def test_cli_lists_dead_letters_as_a_table_and_as_json_with_filters(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    old = sample_app.fail.enqueue("disk full")
    new = sample_app.charge.options(queue="billing").enqueue(42)
    failed(app, old, new)
    db.execute(
        "UPDATE pgjobs.dead_letters SET failed_at = now() - interval '3 hours' WHERE job_id = %s",
        (old.id,),
    )

    table = ok(pgjobs_cli("dead-letters", "list"))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["job", "id", "task", "queue"]
    assert str(new.id) in lines[1] and "charge" in lines[1] and "billing" in lines[1]
    assert "PaymentDeclined: card declined for 42" in lines[1]
    assert str(old.id) in lines[2] and "ValueError: disk full" in lines[2]
    assert len(lines) == 3

    listed = json.loads(ok(pgjobs_cli("dead-letters", "list", "--json")))
    assert [d["job_id"] for d in listed] == [str(new.id), str(old.id)]
    first = listed[0]
    assert (first["task"], first["queue"], first["args"], first["kwargs"]) == (
        "charge",
        "billing",
        [42],
        {},
    )
    assert first["attempts"] == 1 and first["error"]["type"] == "PaymentDeclined"
    assert "Traceback" in first["error"]["traceback"]
    assert datetime.fromisoformat(first["failed_at"]).tzinfo is not None

    def listed_ids(*filters: str) -> list[str]:
        out = json.loads(ok(pgjobs_cli("dead-letters", "list", "--json", *filters)))
        return [d["job_id"] for d in out]

    assert listed_ids("--task", "fail") == [str(old.id)]
    assert listed_ids("--queue", "billing") == [str(new.id)]
    assert listed_ids("--since", "1h") == [str(new.id)]
    assert listed_ids("--before", "1h") == [str(old.id)]
    cut = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert listed_ids("--since", "4h", "--before", cut, "--task", "fail") == [str(old.id)]

    assert "(no dead letters)" in ok(pgjobs_cli("dead-letters", "list", "--task", "nope"))


@pytest.mark.processes
def test_cli_show_prints_the_call_the_error_and_its_traceback(app: Any) -> None:
    job = sample_app.charge.enqueue(amount=42)
    failed(app, job)
    out = ok(pgjobs_cli("dead-letters", "show", str(job.id)))
    assert f"job_id: {job.id}" in out
    assert "task: charge" in out
    assert 'kwargs: {"amount": 42}' in out
    assert "attempts: 1" in out
    assert "error: PaymentDeclined: card declined for 42" in out
    assert "Traceback (most recent call last)" in out and "sample_app.py" in out


@pytest.mark.processes
def test_cli_replays_one_job_and_all_of_a_task(app: Any, db: psycopg.Connection[Any]) -> None:
    one = sample_app.fixable.enqueue(7401)
    fails = [sample_app.fail.enqueue("r1"), sample_app.fail.enqueue("r2")]
    declined = sample_app.charge.enqueue(1)
    failed(app, one, *fails, declined)
    db.execute("INSERT INTO test_runs (job_id, n) VALUES (%s, %s)", (one.id, 7401))

    out = ok(pgjobs_cli("dead-letters", "replay", str(one.id)))
    assert out.strip() == f"{one.id} replayed: pending"
    assert status_of(db, one.id) == "pending"
    assert dead_ids(db) == {fails[0].id, fails[1].id, declined.id}

    out = ok(pgjobs_cli("dead-letters", "replay", "--task", "fail"))
    assert out.strip() == "replayed 2 jobs"
    assert [status_of(db, j.id) for j in fails] == ["pending", "pending"]
    assert dead_ids(db) == {declined.id}
    assert status_of(db, declined.id) == "failed"

    drain(app)
    assert one.wait(5) == 7401
    assert [r[0] for r in attempt_rows(db, one.id)] == [1, 2, 3]


@pytest.mark.processes
def test_cli_purges_by_task_and_by_id(app: Any, db: psycopg.Connection[Any]) -> None:
    fails = [sample_app.fail.enqueue("p1"), sample_app.fail.enqueue("p2")]
    declined = sample_app.charge.enqueue(1)
    failed(app, *fails, declined)

    assert ok(pgjobs_cli("dead-letters", "purge", "--task", "fail")).strip() == (
        "purged 2 dead letters"
    )
    assert dead_ids(db) == {declined.id}
    assert ok(pgjobs_cli("dead-letters", "purge", str(declined.id))).strip() == (
        "purged 1 dead letters"
    )
    assert dead_ids(db) == set()
    assert [status_of(db, j.id) for j in (*fails, declined)] == ["failed"] * 3


@pytest.mark.processes
def test_cli_mistakes_are_one_line_and_change_nothing(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.fail.enqueue("m")
    done = sample_app.add.enqueue(1, 2)
    failed(app, job)
    settle(app, done)
    before = snapshot(db)
    jid = str(job.id)
    unknown = str(uuid.uuid4())

    need = "name job ids, give a filter"
    both = "give job ids or filters, not both"
    one_line_error(pgjobs_cli("dead-letters", "purge"), need)
    one_line_error(pgjobs_cli("dead-letters", "replay"), need)
    one_line_error(pgjobs_cli("dead-letters", "purge", jid, "--task", "fail"), both)
    one_line_error(pgjobs_cli("dead-letters", "replay", jid, "--task", "fail"), both)
    one_line_error(pgjobs_cli("dead-letters", "purge", jid, "--all"), both)
    one_line_error(pgjobs_cli("dead-letters", "replay", jid, "--all"), both)
    not_a_time = "--since takes an ISO time"
    one_line_error(pgjobs_cli("dead-letters", "list", "--since", "yesterday"), not_a_time)
    one_line_error(pgjobs_cli("dead-letters", "replay", "--since", "yesterday"), not_a_time)
    one_line_error(pgjobs_cli("dead-letters", "purge", "--since", "yesterday"), not_a_time)
    one_line_error(pgjobs_cli("dead-letters", "show", unknown), "no dead letter for job")
    one_line_error(pgjobs_cli("dead-letters", "replay", unknown), "no job with id")
    one_line_error(pgjobs_cli("dead-letters", "replay", str(done.id)), "is succeeded")
    one_line_error(pgjobs_cli("dead-letters", "show", "banana"), "is not a job id")
    one_line_error(pgjobs_cli("dead-letters", "replay", "banana"), "is not a job id")
    one_line_error(pgjobs_cli("dead-letters", "purge", "banana"), "is not a job id")
    one_line_error(pgjobs_cli("cancel", "banana"), "is not a job id")
    one_line_error(pgjobs_cli("cancel", unknown), "no job with id")
    assert snapshot(db) == before


@pytest.mark.processes
def test_cli_replay_of_several_ids_with_a_bad_one_changes_nothing(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.fail.enqueue("several")
    failed(app, job)
    result = pgjobs_cli("dead-letters", "replay", str(job.id), "banana")
    one_line_error(result, "is not a job id")
    assert status_of(db, job.id) == "failed"
    assert dead_ids(db) == {job.id}
    assert result.stdout == ""


@pytest.mark.processes
def test_cli_cancel_of_a_pending_job(app: Any, db: psycopg.Connection[Any]) -> None:
    job = sample_app.add.enqueue(1, 2)
    out = ok(pgjobs_cli("cancel", str(job.id)))
    assert out.strip() == f"{job.id} cancelled"
    now = app.get_job(job.id)
    assert now.status is Status.CANCELLED and now.finished_at is not None
    drain(app)
    assert app.get_job(job.id).status is Status.CANCELLED
    assert count(db, "SELECT count(*) FROM pgjobs.attempts") == 0


def test_bulk_replay_and_purge_without_a_filter_need_everything_true(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    jobs = [sample_app.fail.enqueue("a"), sample_app.fail.enqueue("b")]
    settle(app, *jobs)
    with pytest.raises(InvalidArguments, match="everything=True"):
        app.purge_dead_letters()
    with pytest.raises(InvalidArguments, match="everything=True"):
        app.replay_dead_letters()
    assert dead_ids(db) == {j.id for j in jobs}
    assert sorted(app.replay_dead_letters(everything=True)) == sorted(j.id for j in jobs)
    settle(app, *jobs)
    assert app.purge_dead_letters(everything=True) == 2
    assert dead_ids(db) == set()
