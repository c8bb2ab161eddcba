"""Exactly-once effects and time: dedup keys, scheduling, cron, limits and retention."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import Status, Worker
from pgjobs.maintenance import pruner
from pgjobs.maintenance.periodic import CronEnqueuer
from tests import cron_app, sample_app
from tests.support.common import ROOT, count, wait_for
from tests.support.workers import drain, start_in_thread

# -- dedup keys -------------------------------------------------------------------------


@pytest.mark.processes
def test_eight_processes_enqueue_the_same_1000_dedup_keys_and_get_1000_jobs(
    app: Any, db: psycopg.Connection[Any], db_url: str
) -> None:
    start_at = time.time() + 3.0
    env = {**os.environ, "PGJOBS_URL": db_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.dedup_race", "1000", str(start_at)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append([json.loads(line) for line in out.splitlines()])
    assert count(db) == 1000
    assert count(db, "SELECT count(*) FROM pgjobs.dedup_keys") == 1000
    by_key: dict[int, set[str]] = {}
    fresh = deduplicated = 0
    for per_process in results:
        assert len(per_process) == 1000
        for r in per_process:
            by_key.setdefault(r["key"], set()).add(r["id"])
            if r["deduplicated"]:
                deduplicated += 1
            else:
                fresh += 1
    # Every process got the same job back for each key: the one that exists.
    assert all(len(ids) == 1 for ids in by_key.values())
    stored = {str(r[0]) for r in db.execute("SELECT id FROM pgjobs.jobs").fetchall()}
    assert {next(iter(ids)) for ids in by_key.values()} == stored
    assert (fresh, deduplicated) == (1000, 7000)


def test_a_dedup_key_holds_while_the_job_lives_and_for_its_window_after(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    keyed = sample_app.add.options(dedup_key="invoice-1", dedup_window=1.0)
    first = keyed.enqueue(1, 1)
    again = keyed.enqueue(1, 1)
    assert again.id == first.id and again.deduplicated and not first.deduplicated
    drain(app)
    assert first.wait(1) == 2
    within = keyed.enqueue(1, 1)  # ended less than a second ago
    assert within.id == first.id and within.deduplicated
    assert within.status is Status.SUCCEEDED
    time.sleep(1.2)
    after = keyed.enqueue(1, 1)
    assert after.id != first.id and not after.deduplicated
    assert count(db) == 2


def test_a_dedup_key_without_a_window_holds_as_long_as_its_job_is_kept(app: Any) -> None:
    keyed = sample_app.add.options(dedup_key="welcome-42")
    first = keyed.enqueue(1, 1)
    drain(app)
    time.sleep(0.2)
    again = keyed.enqueue(1, 1)
    assert again.id == first.id and again.deduplicated


def test_a_failed_job_holds_its_key_for_the_window_and_a_replay_holds_it_again(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    keyed = sample_app.fail.options(dedup_key="k-failed", dedup_window=0.5)
    first = keyed.enqueue("no")
    drain(app)
    assert keyed.enqueue("no").id == first.id
    app.replay(first.id)  # live again: the key holds with no end
    expires = db.execute("SELECT expires_at FROM pgjobs.dedup_keys").fetchone()
    assert expires == (None,)
    time.sleep(0.6)
    assert keyed.enqueue("no").id == first.id


def test_a_dedup_key_in_a_rolled_back_outbox_transaction_is_gone_with_it(
    app: Any, db_url: str, db: psycopg.Connection[Any]
) -> None:
    keyed = sample_app.add.options(dedup_key="order-9")
    with psycopg.connect(db_url) as conn:
        keyed.enqueue(1, 2, conn=conn)
        conn.rollback()
    assert count(db, "SELECT count(*) FROM pgjobs.dedup_keys") == 0
    with psycopg.connect(db_url) as conn:
        kept = keyed.enqueue(1, 2, conn=conn)
        twin = keyed.enqueue(1, 2, conn=conn)  # the same transaction sees its own key
        conn.commit()
    assert twin.id == kept.id and twin.deduplicated
    assert count(db) == 1


def test_the_same_key_twice_in_one_batch_makes_one_job(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    jobs = sample_app.add.options(dedup_key="batch-key").enqueue_many([(1, 1), (2, 2)])
    assert jobs[0].id == jobs[1].id and jobs[1].deduplicated and not jobs[0].deduplicated
    assert count(db) == 1


def test_bad_dedup_options_are_refused_before_anything_is_written(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    with pytest.raises(pgjobs.InvalidArguments, match="dedup_window needs a dedup_key"):
        sample_app.add.options(dedup_window=10).enqueue(1, 1)
    with pytest.raises(pgjobs.InvalidArguments, match="dedup_window must be between 0 and"):
        sample_app.add.options(dedup_key="k", dedup_window=-1).enqueue(1, 1)
    with pytest.raises(pgjobs.InvalidArguments, match="dedup_window must be between 0 and"):
        sample_app.add.options(dedup_key="k", dedup_window=float("inf")).enqueue(1, 1)
    with pytest.raises(pgjobs.InvalidArguments, match="non-empty"):
        sample_app.add.options(dedup_key="").enqueue(1, 1)
    assert count(db) == 0 and count(db, "SELECT count(*) FROM pgjobs.dedup_keys") == 0


# -- scheduling and order ------------------------------------------------------------------


def run_order(db: psycopg.Connection[Any]) -> list[int]:
    return [r[0] for r in db.execute("SELECT n FROM test_runs ORDER BY at").fetchall()]


def test_priorities_run_first_then_the_oldest(app: Any, db: psycopg.Connection[Any]) -> None:
    sample_app.record.options(priority=0).enqueue(1)
    sample_app.record.options(priority=5).enqueue(2)
    sample_app.record.options(priority=0).enqueue(3)
    sample_app.record.options(priority=9).enqueue(4)
    sample_app.record.options(priority=-3).enqueue(5)
    drain(app, concurrency=1)
    assert run_order(db) == [4, 2, 1, 3, 5]


def test_run_at_orders_what_runs_and_no_scheduled_job_starts_early(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC)
    sample_app.record.options(run_at=now + timedelta(seconds=1.2)).enqueue(3)
    sample_app.record.options(delay=0.6).enqueue(2)
    sample_app.record.options(run_at=now + timedelta(seconds=0.3), priority=-5).enqueue(1)
    worker, thread = start_in_thread(app, release_interval=0.05, concurrency=4)
    try:
        wait_for(lambda: count(db, "SELECT count(*) FROM test_runs") == 3, timeout=10)
    finally:
        worker.stop()
        thread.join(30)
    assert run_order(db) == [1, 2, 3]
    early = count(
        db,
        "SELECT count(*) FROM test_runs r JOIN pgjobs.jobs j ON j.id = r.job_id"
        " WHERE r.at < j.run_at OR j.started_at < j.run_at",
    )
    assert early == 0


def queue_order(db: psycopg.Connection[Any]) -> list[str]:
    rows = db.execute(
        "SELECT j.queue FROM test_runs r JOIN pgjobs.jobs j ON j.id = r.job_id ORDER BY r.at"
    ).fetchall()
    return [r[0] for r in rows]


def test_strict_order_drains_the_first_queue_before_the_next(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    sample_app.record.options(queue="bulk", priority=9).enqueue_many([(n,) for n in range(5)])
    sample_app.record.options(queue="urgent").enqueue_many([(n,) for n in range(5)])
    drain(app, queues=["urgent", "bulk"], queue_order="strict", concurrency=1)
    assert queue_order(db) == ["urgent"] * 5 + ["bulk"] * 5


def test_weighted_queues_share_the_worker_by_weight(app: Any, db: psycopg.Connection[Any]) -> None:
    sample_app.record.options(queue="b").enqueue_many([(n,) for n in range(40)])
    sample_app.record.options(queue="a").enqueue_many([(n,) for n in range(40)])
    drain(app, queues={"a": 3, "b": 1}, concurrency=1)
    order = queue_order(db)
    assert len(order) == 80
    assert 14 <= order[:20].count("a") <= 16  # three to one while both have work
    assert order[-10:] == ["b"] * 10  # and all of b once a is empty


def test_without_a_queue_order_priority_decides_across_queues(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    sample_app.record.options(queue="a", priority=1).enqueue(1)
    sample_app.record.options(queue="b", priority=7).enqueue(2)
    sample_app.record.options(queue="a", priority=3).enqueue(3)
    drain(app, queues=["a", "b"], concurrency=1)
    assert run_order(db) == [2, 3, 1]


def test_bad_queue_plans_are_refused(app: Any) -> None:
    with pytest.raises(pgjobs.ConfigurationError, match="queue_order must be one of"):
        Worker(app, queues=["a"], queue_order="random")
    with pytest.raises(pgjobs.ConfigurationError, match="weight must be positive"):
        Worker(app, queues={"a": 0})
    with pytest.raises(pgjobs.ConfigurationError, match="at least one queue"):
        Worker(app, queues=[])


# -- cron --------------------------------------------------------------------------------


def cron_slots(db: psycopg.Connection[Any], name: str = "tick") -> list[datetime]:
    rows = db.execute(
        "SELECT (meta->>'slot')::timestamptz FROM pgjobs.jobs WHERE meta->>'periodic' = %s"
        " ORDER BY 1",
        (name,),
    ).fetchall()
    return [r[0] for r in rows]


def test_cron_with_4_workers_makes_one_job_per_slot_and_one_catch_up_after_downtime(
    db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    lease = ("--lease-ttl", "2", "--heartbeat-interval", "0.5")
    workers = [spawn_worker(*lease, "--queues", "cron", app="tests.cron_app:app") for _ in range(4)]
    wait_for(lambda: len(cron_slots(db)) >= 6, timeout=30)
    for w in workers:
        assert w.stop() == 0, w.log()
    before = cron_slots(db)
    # One job per slot: every second, no slot twice, none skipped.
    assert len(set(before)) == len(before)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(before))
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") >= 6

    time.sleep(10.5)  # ten slots pass with no worker at all
    spawn_worker(*lease, "--queues", "cron", app="tests.cron_app:app")
    wait_for(lambda: len(cron_slots(db)) >= len(before) + 3, timeout=20)
    after = cron_slots(db)[len(before) :]
    # The ten missed slots became one catch-up job (for the latest of them),
    # then one job a second again.
    assert (after[0] - before[-1]).total_seconds() >= 10
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(after))


async def _run_cron_once(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await CronEnqueuer(cron_app.app, cron_app.app.periodics).run_once(conn)


def test_the_database_decides_cron_slots_when_many_enqueuers_race(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    asyncio.run(_run_cron_once(db_url))  # first sight: slots start now
    db.execute("UPDATE pgjobs.periodic SET last_slot = last_slot - interval '10 seconds'")

    async def race() -> list[int]:
        return await asyncio.gather(*(_run_cron_once(db_url) for _ in range(8)))

    made = asyncio.run(race())
    # 'tick' folds its missed slots into one job; 'every_other_second' (catch_up="all")
    # makes one per missed slot: about five in ten seconds. Each exactly once.
    tick = cron_slots(db, "tick")
    other = cron_slots(db, "every_other_second")
    assert len(tick) == 1
    assert 5 <= len(other) <= 6 and len(set(other)) == len(other)
    assert sum(made) == len(tick) + len(other)


def test_a_periodic_task_with_bad_arguments_fails_at_registration() -> None:
    other = pgjobs.App("postgresql://localhost/unused")

    @other.task
    def needs(n: int) -> int:
        return n

    with pytest.raises(pgjobs.InvalidArguments, match="missing a required argument"):
        other.periodic("*/5 * * * *")(needs)
    with pytest.raises(ValueError, match="cron field"):
        other.periodic("61 * * * *")(needs)
    with pytest.raises(pgjobs.ConfigurationError, match="catch_up must be one of"):
        other.periodic("* * * * *", args=(1,), catch_up="some")(needs)
    assert other.periodics == {}


# -- limits ------------------------------------------------------------------------------


def peak_overlap(db: psycopg.Connection[Any]) -> int:
    """The most runs that were in progress at one moment."""
    row = db.execute(
        "SELECT max(c) FROM (SELECT (SELECT count(*) FROM test_runs r2"
        "  WHERE r2.at <= r1.at AND (r2.ended_at IS NULL OR r2.ended_at > r1.at)) AS c"
        " FROM test_runs r1) t"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_concurrency_3_holds_across_4_workers_of_20_slots(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    sample_app.fragile_api.enqueue_many([(n, 0.3) for n in range(30)])
    sample_app.add.enqueue_many([(n, n) for n in range(20)])  # unlimited work is not held up
    for _ in range(4):
        spawn_worker("--concurrency", "20", "--poll-interval", "0.2")
    wait_for(
        lambda: count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 50,
        timeout=60,
    )
    assert peak_overlap(db) == 3  # never more, and the limit was used
    assert count(db, "SELECT count(*) FROM pgjobs.attempts WHERE attempt > 1") == 0
    assert count(db, "SELECT count(DISTINCT pid) FROM test_runs") >= 2


def test_a_rate_limit_holds_within_one_period(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    sample_app.rated.enqueue_many([(n,) for n in range(20)])  # 5 a second
    for _ in range(2):
        spawn_worker("--concurrency", "20", "--poll-interval", "0.1")
    wait_for(
        lambda: count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 20,
        timeout=30,
    )
    # When each claim took its job, as the claim stamped it: the clock the windows are
    # counted on (when each function began adds its own start-up time).
    starts = [r[0] for r in db.execute("SELECT started_at FROM pgjobs.jobs ORDER BY 1").fetchall()]
    assert len(starts) == 20 and count(db, "SELECT count(*) FROM test_runs") == 20
    # Fixed windows of one second: any 11 starts span three windows, so more than a second.
    assert all((starts[i + 10] - starts[i]).total_seconds() >= 1.0 for i in range(len(starts) - 10))
    # 20 starts take four windows; the first opened when the first worker registered the
    # limit, before its first claim, so the span is over two seconds (not always three:
    # a worker 15 ms slow to its first claim made it 2.985 s).
    assert (starts[-1] - starts[0]).total_seconds() > 2.0
    assert count(db, "SELECT count(*) FROM pgjobs.attempts WHERE attempt > 1") == 0


def test_jobs_over_their_limit_wait_pending_without_spending_attempts(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    sample_app.fragile_api.enqueue_many([(n, 1.0) for n in range(6)])
    worker, thread = start_in_thread(app, concurrency=10)
    try:
        wait_for(
            lambda: count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'") == 3
        )
        time.sleep(0.3)
        waiting = db.execute(
            "SELECT count(*), max(attempt) FROM pgjobs.jobs WHERE status = 'pending'"
        ).fetchone()
        assert waiting == (3, 0)
    finally:
        worker.stop()
        thread.join(30)


def test_bad_limits_are_refused_at_registration() -> None:
    other = pgjobs.App("postgresql://localhost/unused")
    with pytest.raises(pgjobs.ConfigurationError, match="rate_limit must look like"):
        other.task(rate_limit="fast")(lambda: None)
    with pytest.raises(pgjobs.ConfigurationError, match="concurrency must be at least 1"):
        other.task(concurrency=0)(lambda: None)


# -- start times ------------------------------------------------------------------------
# A claim's transaction starts (and now() is fixed) before the claim takes its snapshot,
# so a job committed in between can be claimed by it. Stamped with now(), such a job
# would start before it was created, or an attempt before the previous one ended.


def start_after_creation(db: psycopg.Connection[Any], job_id: Any) -> timedelta:
    """How long after it was created a job started; its attempt row says the same start."""
    row = db.execute(
        "SELECT j.started_at - j.created_at, a.started_at = j.started_at"
        " FROM pgjobs.jobs j JOIN pgjobs.attempts a ON a.job_id = j.id WHERE j.id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None and row[1] is True
    return row[0]  # type: ignore[no-any-return]


def test_a_claim_stamps_the_start_when_it_takes_the_job_not_when_its_transaction_began(
    app: Any, db: psycopg.Connection[Any], db_url: str
) -> None:
    from pgjobs.db.queries import sql
    from tests.support.common import register
    from tests.support.plans import WORKER, claim_params

    register(db, WORKER)
    with psycopg.connect(db_url) as claimer:
        began = claimer.execute("SELECT now()").fetchone()
        time.sleep(0.05)
        job = sample_app.add.enqueue(1, 2)  # committed after the claim's transaction began
        rows = claimer.execute(sql("claim_jobs"), claim_params(1)).fetchall()
        claimer.commit()
    assert began is not None and [r[0] for r in rows] == [job.id]
    assert rows[0][7] >= 0  # how long it waited: never negative
    row = db.execute(
        "SELECT started_at - created_at, started_at - %s FROM pgjobs.jobs WHERE id = %s",
        (began[0], job.id),
    ).fetchone()
    assert row is not None
    assert row[0] >= timedelta(0) and row[1] >= timedelta(seconds=0.05)


def test_a_limited_claim_that_waited_for_its_task_lock_stamps_the_start_when_it_took_the_job(
    app: Any, db: psycopg.Connection[Any], db_url: str
) -> None:
    worker, thread = start_in_thread(app, concurrency=4, poll_interval=0.05)
    try:
        wait_for(
            lambda: (
                count(db, "SELECT count(*) FROM pgjobs.task_limits WHERE task = 'fragile_api'") == 1
            )
        )
        with psycopg.connect(db_url) as holder:
            # Every claimer of the task queues behind this lock, as behind a busy peer's claim.
            holder.execute("SELECT 1 FROM pgjobs.task_limits WHERE task = 'fragile_api' FOR UPDATE")
            wait_for(
                lambda: (
                    count(
                        db,
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                        " AND query LIKE '%claim_limited%'",
                    )
                    == 1
                )
            )
            job = sample_app.fragile_api.enqueue(1, 0.0)
            time.sleep(0.05)
        wait_for(lambda: app.get_job(job.id).status == Status.SUCCEEDED)
    finally:
        worker.stop()
        thread.join(30)
    assert start_after_creation(db, job.id) >= timedelta(seconds=0.05)


# -- retention ---------------------------------------------------------------------------


def age_everything(db: psycopg.Connection[Any], days: float) -> None:
    """Move every job's past back by `days`: ended jobs end earlier, live ones were made
    earlier (their next run time stays, so nothing becomes due by it)."""
    db.execute(
        "UPDATE pgjobs.jobs SET created_at = created_at - make_interval(days => %(d)s),"
        " started_at = started_at - make_interval(days => %(d)s),"
        " finished_at = finished_at - make_interval(days => %(d)s)",
        {"d": days},
    )


async def _prune(url: str, keep_succeeded: float | None, keep_failed: float | None) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await pruner.run_once(conn, keep_succeeded, keep_failed, batch=1000)


def keep_all(app: Any) -> None:
    """Drain without the worker's own pruning, which would race the test's."""
    drain(app, keep_succeeded=None, keep_failed=None)


def test_pruning_removes_old_ended_jobs_and_never_a_live_one(
    app: Any, db: psycopg.Connection[Any], db_url: str
) -> None:
    done = sample_app.add.enqueue_many([(n, n) for n in range(2500)])
    keyed = sample_app.add.options(dedup_key="old-key").enqueue(9, 9)
    failed = sample_app.fail.enqueue("old")
    retrying = sample_app.later.enqueue(3600)
    keep_all(app)
    age_everything(db, 10)
    fresh = sample_app.add.enqueue(3, 3)
    keep_all(app)  # a succeeded job of today
    # Live jobs of every kind, just as old.
    pending = sample_app.add.enqueue(1, 1)
    scheduled = sample_app.add.options(delay=3600).enqueue(1, 1)
    running = sample_app.add.enqueue(2, 2)
    db.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency)"
        " VALUES ('w', 'h', 1, '{default}', 1)"
    )
    db.execute(
        "UPDATE pgjobs.jobs SET status = 'running', worker_id = 'w', attempt = 1,"
        " started_at = now() WHERE id = %s",
        (running.id,),
    )
    db.execute(
        "UPDATE pgjobs.jobs SET created_at = created_at - interval '10 days'"
        " WHERE finished_at IS NULL"
    )

    pruned = asyncio.run(_prune(db_url, keep_succeeded=86400, keep_failed=30 * 86400))
    assert pruned == 2501  # in three batches; the failed one is within its 30 days
    ids = {r[0] for r in db.execute("SELECT id FROM pgjobs.jobs").fetchall()}
    assert done[0].id not in ids and keyed.id not in ids
    assert count(db, "SELECT count(*) FROM pgjobs.dedup_keys") == 0
    assert count(db, "SELECT count(*) FROM pgjobs.attempts WHERE outcome = 'succeeded'") == 1
    for job in (failed, pending, scheduled, retrying, running, fresh):
        app.get_job(job.id)  # still there
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 1

    age_everything(db, 30)
    pruned = asyncio.run(_prune(db_url, keep_succeeded=86400, keep_failed=30 * 86400))
    assert pruned == 2  # the failed one, with its dead letter, and today's (now old) success
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0
    assert count(db, "SELECT count(*) FROM pgjobs.attempts") == 1  # the retrying job's
    left = {r[0] for r in db.execute("SELECT status FROM pgjobs.jobs").fetchall()}
    assert left == {"pending", "scheduled", "retrying", "running"}


def test_pruning_deletes_in_batches_and_skips_rows_others_hold(
    app: Any, db: psycopg.Connection[Any], db_url: str
) -> None:
    sample_app.add.enqueue_many([(n, n) for n in range(2500)])
    keep_all(app)
    age_everything(db, 2)
    with psycopg.connect(db_url) as holder:
        held = holder.execute(
            "SELECT id FROM pgjobs.jobs ORDER BY id LIMIT 1 FOR UPDATE"
        ).fetchone()
        started = time.monotonic()
        pruned = asyncio.run(_prune(db_url, keep_succeeded=86400, keep_failed=None))
        assert time.monotonic() - started < 10  # it did not wait for the lock
        assert pruned == 2499
        holder.rollback()
    assert held is not None
    assert count(db) == 1 and app.get_job(held[0]).status is Status.SUCCEEDED
    assert asyncio.run(_prune(db_url, keep_succeeded=None, keep_failed=None)) == 0


def test_a_worker_prunes_by_its_retention_options(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    sample_app.add.enqueue_many([(n, n) for n in range(10)])
    drain(app)
    age_everything(db, 1)
    spawn_worker("--keep-succeeded", "2h", "--keep-failed", "forever")
    wait_for(lambda: count(db) == 0, timeout=20)


def test_a_pruning_round_stops_at_its_budget_and_says_it_is_behind(
    app: Any, db: psycopg.Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample_app.add.enqueue_many([(n, n) for n in range(2500)])
    keep_all(app)
    age_everything(db, 10)
    monkeypatch.setattr(pruner, "BUDGET", 0.0)  # one batch per round
    rounds = []
    while not rounds or pruner.behind(rounds[-1]):
        rounds.append(asyncio.run(_prune(db_url, 86400, None)))
    # Stopped by the budget twice, then ran out: rounds that the leader follows at
    # once while they delete a batch or more, then one a prune interval later.
    assert rounds == [1000, 1000, 500]
    assert not pruner.behind(999)
    assert count(db, "SELECT count(*) FROM pgjobs.jobs") == 0
