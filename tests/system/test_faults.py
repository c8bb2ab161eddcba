"""Fault tests: real worker processes, kill -9, dropped connections, a restarted database.

Each test counts the jobs lost (not ended as they should) and the jobs that ran in
two places at once; both must be zero.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import Status
from tests import sample_app
from tests.support.common import count, wait_for
from tests.support.netcut import NetCut
from tests.support.plans import claim_params

# Short leases so a dead worker's jobs are rescued within seconds.
FAST_LEASE = ("--lease-ttl", "2", "--heartbeat-interval", "0.5", "--poll-interval", "0.5")

RUNNING = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'"
SUCCEEDED = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'"
TERMINAL = "SELECT count(*) FROM pgjobs.jobs WHERE status IN ('succeeded', 'failed', 'cancelled')"


def worker_id(db: psycopg.Connection[Any], pid: int) -> str:
    row = db.execute("SELECT id FROM pgjobs.workers WHERE pid = %s", (pid,)).fetchone()
    assert row is not None, f"no worker row for pid {pid}"
    return str(row[0])


def overlapping_runs(db: psycopg.Connection[Any], killed_at: datetime | None = None) -> int:
    """Pairs of runs of one job whose times overlap (a run cut by kill -9 ends at killed_at)."""
    row = db.execute(
        "SELECT count(*) FROM test_runs r1 JOIN test_runs r2"
        " ON r1.job_id = r2.job_id AND r1.at < r2.at"
        " WHERE COALESCE(r1.ended_at, %s, 'infinity') > r2.at",
        (killed_at,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_kill_9_with_50_jobs_in_flight_loses_none_and_runs_none_twice_at_once(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    sample_app.guarded.enqueue_many([(n, 0.4) for n in range(500)])
    first = spawn_worker("--concurrency", "50", *FAST_LEASE)
    first_id = worker_id(db, first.proc.pid)
    wait_for(lambda: count(db, SUCCEEDED) >= 100 and count(db, RUNNING) == 50, timeout=60)
    first.proc.kill()
    first.wait(10)
    killed_at = db.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    in_flight_ids = {
        row[0]
        for row in db.execute(
            "SELECT id FROM pgjobs.jobs WHERE status = 'running' AND worker_id = %s", (first_id,)
        )
    }
    in_flight = len(in_flight_ids)
    assert in_flight == 50

    second = spawn_worker("--concurrency", "50", *FAST_LEASE)
    wait_for(lambda: count(db, SUCCEEDED) == 500, timeout=90)

    lost = 500 - count(db, SUCCEEDED)
    assert lost == 0
    # The rescuer recorded each cut attempt as lost, under the dead worker.
    assert (
        count(
            db,
            "SELECT count(*) FROM pgjobs.attempts"
            f" WHERE outcome = 'lost' AND worker_id = '{first_id}'",
        )
        == in_flight
    )
    # Every job completed a run. A job completes two only if its first run's body
    # ended after the last outcome the dead worker committed (at-least-once: the
    # kill came before its success was written); that job was one of the 50 in flight.
    assert (
        count(db, "SELECT count(DISTINCT job_id) FROM test_runs WHERE ended_at IS NOT NULL") == 500
    )
    twice = db.execute(
        "SELECT job_id, count(*) FROM test_runs WHERE ended_at IS NOT NULL"
        " GROUP BY job_id HAVING count(*) > 1"
    ).fetchall()
    assert {job_id for job_id, _ in twice} <= in_flight_ids
    assert all(runs == 2 for _, runs in twice)
    # A rerun never reuses its attempt number.
    assert (
        count(
            db,
            "SELECT count(*) FROM (SELECT job_id, attempt FROM test_runs"
            " GROUP BY 1, 2 HAVING count(*) > 1) d",
        )
        == 0
    )
    assert count(db, "SELECT count(*) FROM test_runs WHERE overlap") == 0
    assert overlapping_runs(db, killed_at) == 0
    # The survivor took over the lead (the dead one held it) and rescued them.
    assert "leads maintenance" in second.log()
    assert "rescued from worker" in second.log()


def test_when_the_leader_dies_another_worker_takes_over_maintenance(
    db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    workers = [spawn_worker(*FAST_LEASE) for _ in range(2)]
    wait_for(
        lambda: count(db, "SELECT count(*) FROM pgjobs.workers WHERE leader_pid IS NOT NULL") == 1
    )
    leader_pid = count(db, "SELECT pid FROM pgjobs.workers WHERE leader_pid IS NOT NULL")
    leader = next(w for w in workers if w.proc.pid == leader_pid)
    other = next(w for w in workers if w is not leader)
    leader.proc.kill()
    leader.wait(10)
    wait_for(
        lambda: (
            count(
                db,
                "SELECT count(*) FROM pgjobs.workers"
                f" WHERE leader_pid IS NOT NULL AND pid = {other.proc.pid}",
            )
            == 1
        ),
        timeout=15,
    )
    # Exactly one session holds the maintenance lock.
    assert (
        count(
            db,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        == 1
    )
    # And the new leader cleans the dead one up.
    wait_for(lambda: count(db, "SELECT count(*) FROM pgjobs.workers") == 1, timeout=15)


def test_an_outcome_from_a_worker_that_lost_its_lease_is_ignored_and_logged(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    job = sample_app.guarded.enqueue(1, 1.5)
    paused = spawn_worker(*FAST_LEASE)
    paused_id = worker_id(db, paused.proc.pid)
    wait_for(lambda: count(db, RUNNING) == 1)
    # Alone, it leads: paused, it holds the maintenance lock on a live connection.
    wait_for(lambda: count(db, "SELECT count(*) FROM pgjobs.workers WHERE leader_pid > 0") == 1)
    paused.signal(signal.SIGSTOP)  # alive, but silent: its lease runs out
    try:
        other = spawn_worker(*FAST_LEASE)
        wait_for(lambda: app.get_job(job.id).status.value == "succeeded", timeout=30)
    finally:
        paused.signal(signal.SIGCONT)
    wait_for(
        lambda: "no longer holds its lease" in paused.log() or "abandoned" in paused.log(),
        timeout=15,
    )
    time.sleep(1.0)  # whatever the paused worker still had to say, it has said
    rows = db.execute(
        "SELECT attempt, outcome, worker_id FROM pgjobs.attempts"
        " WHERE job_id = %s ORDER BY attempt",
        (job.id,),
    ).fetchall()
    other_id = worker_id(db, other.proc.pid)
    assert rows == [(1, "lost", paused_id), (2, "succeeded", other_id)]
    # The other worker ended the silent leader's lock session and took over.
    assert "ended its lock session" in other.log() and "leads maintenance" in other.log()
    done = app.get_job(job.id)
    assert done.status.value == "succeeded" and done.attempts == 2
    assert paused.proc.poll() is None  # it carries on, registered again
    wait_for(lambda: count(db, "SELECT count(*) FROM pgjobs.workers") == 2, timeout=10)


def test_finishing_is_fenced_by_worker_and_attempt(app: Any, db: psycopg.Connection[Any]) -> None:
    from pgjobs.db.queries import sql

    job = sample_app.add.enqueue(1, 2)
    db.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency)"
        " VALUES ('w-owner', 'h', 1, '{default}', 1)"
    )
    claimed = db.execute(sql("claim_jobs"), claim_params(1, "w-owner"))
    assert len(claimed.fetchall()) == 1

    def finish(worker: str, attempt: int) -> int:
        cur = db.execute(
            sql("finish_jobs"),
            {
                "worker_id": worker,
                "ids": [job.id],
                "attempts": [attempt],
                "statuses": ["succeeded"],
                "outcomes": ["succeeded"],
                "results": ["3"],
                "errors": [None],
                "progress": [None],
                "retry_in": [None],
            },
        )
        return len(cur.fetchall())

    assert finish("w-stranger", 1) == 0  # not the lease owner
    assert finish("w-owner", 2) == 0  # not this attempt
    assert app.get_job(job.id).status.value == "running"
    assert count(db, "SELECT count(*) FROM pgjobs.attempts") == 0
    assert finish("w-owner", 1) == 1
    assert app.get_job(job.id).result == 3
    assert finish("w-owner", 1) == 0  # a replayed finish changes nothing


def test_finish_and_claim_in_one_statement_is_fenced_and_claims_only_pending_jobs(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    from pgjobs.db.queries import sql

    # Composed from the two statements it joins, each written once.
    combined = sql("finish_and_claim")
    assert sql("claim_jobs") in combined and "{" not in combined.replace("'{}'", "")
    first, flaky, doomed = (sample_app.add.enqueue(n, n) for n in (1, 5, 7))
    db.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency)"
        " VALUES ('w-owner', 'h', 1, '{default}', 3), ('w-stranger', 'h', 2, '{default}', 3)"
    )
    db.execute(sql("claim_jobs"), claim_params(3, "w-owner"))
    waiting = sample_app.add.enqueue_many([(i, i) for i in range(3)])
    error = '{"type": "E", "message": "m", "traceback": null}'

    def finish_and_claim(worker: str, limit: int) -> dict[str, list[Any]]:
        rows = db.execute(
            combined,
            {
                **claim_params(limit, worker),
                "ids": [first.id, flaky.id, doomed.id],
                "attempts": [1, 1, 1],
                "statuses": ["succeeded", "retrying", "retrying"],
                "outcomes": ["succeeded", "failed", "failed"],
                "results": ["2", None, None],
                "errors": [None, error, error],
                "progress": [None, None, None],
                "retry_in": [None, 0.0, 0.0],
            },
        ).fetchall()
        out: dict[str, list[Any]] = {"finished": [], "claimed": []}
        for r in rows:
            out[r[0]].append(r[1] if r[0] == "claimed" else (r[1], r[10], r[9]))
        return out

    # A stranger's outcomes apply to nothing, and each comes back without a
    # status; its claim still claims.
    got = finish_and_claim("w-stranger", 1)
    assert sorted(got["finished"]) == sorted((j.id, None, None) for j in (first, flaky, doomed))
    assert got["claimed"] == [waiting[0].id]
    # The owner's outcomes apply. Of them only those that did not apply as sent
    # come back: the retry of a job whose cancellation was asked for, which is
    # cancelled instead, and a limited job, whose end wakes its queue (the
    # column that makes the call holds `pg_notify() IS NULL`: false).
    db.execute("UPDATE pgjobs.jobs SET cancel_requested_at = now() WHERE id = %s", (doomed.id,))
    db.execute("UPDATE pgjobs.jobs SET limited = true WHERE id = %s", (first.id,))
    db.execute("LISTEN pgjobs")
    got = finish_and_claim("w-owner", 5)
    assert sorted(got["finished"]) == sorted(
        [(first.id, "succeeded", False), (doomed.id, "cancelled", None)]
    )
    assert [n.payload for n in db.notifies(timeout=5, stop_after=1)] == ["default"]
    db.execute("UNLISTEN pgjobs")
    # The job that goes to 'retrying' in the same statement is not claimed again.
    assert sorted(got["claimed"]) == sorted(j.id for j in waiting[1:])
    assert app.get_job(first.id).result == 2
    assert app.get_job(flaky.id).status.value == "retrying"
    assert app.get_job(doomed.id).status.value == "cancelled"
    assert count(db, "SELECT count(*) FROM pgjobs.attempts") == 3


def terminate_worker_connections(db: psycopg.Connection[Any]) -> int:
    return count(
        db,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend') t",
    )


def test_pg_terminate_backend_on_every_worker_connection_loses_no_job(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    sample_app.steady.enqueue_many([(n,) for n in range(2000)])
    workers = [spawn_worker("--concurrency", "10", *FAST_LEASE) for _ in range(2)]
    terminated = 0
    try:
        for threshold in (300, 900, 1500):
            wait_for(lambda t=threshold: count(db, TERMINAL) >= t, timeout=120)  # type: ignore[misc]
            terminated += terminate_worker_connections(db)
    finally:
        app.close()  # this process's pool lost its connections too
    wait_for(lambda: count(db, TERMINAL) == 2000, timeout=120)
    assert terminated >= 6  # each worker had several connections, each time
    assert count(db, SUCCEEDED) == 2000  # lost = 0
    assert count(db, "SELECT count(DISTINCT n) FROM test_runs") == 2000
    for w in workers:
        assert w.proc.poll() is None, w.log()  # they reconnected and carried on
    logs = "".join(w.log() for w in workers)
    assert "terminating connection" in logs or "server closed the connection" in logs
    # Whatever the drops did, both workers still hold live connections and heartbeats.
    wait_for(
        lambda: (
            count(
                db,
                "SELECT count(*) FROM pgjobs.workers WHERE heartbeat_at > now() - interval '2 s'",
            )
            == 2
        ),
        timeout=10,
    )


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_sigterm_lets_short_jobs_finish_and_hands_long_ones_back_unspent(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any, mode: str
) -> None:
    extra = ("--processes", "3") if mode == "processes" else ()
    w = spawn_worker("--grace-period", "1.5", "--concurrency", "3", *extra)
    short = sample_app.sleep.enqueue(0.5)
    long_sync = sample_app.sleep.enqueue(60)
    long_async = sample_app.asleep.enqueue(60)
    wait_for(lambda: count(db, RUNNING) == 3)
    started = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0, w.log()
    assert time.monotonic() - started < 10  # the grace period, not the jobs' 60 s
    assert short.wait(1) == 0.5
    # Handed back unspent: each run keeps its attempt number and its attempts
    # row, and max_attempts moves on by one, so the task's retries are whole.
    for job in (long_sync, long_async):
        back = app.get_job(job.id)
        assert back.status.value == "pending" and back.attempts == 1, back
        assert back.max_attempts == job.max_attempts + 1, back
        assert [a.outcome for a in app.attempts(job.id)] == ["handed_back"]
    assert count(db, "SELECT count(*) FROM pgjobs.attempts") == 3
    assert "handed 2 running jobs back" in w.log()
    assert count(db, "SELECT count(*) FROM pgjobs.workers") == 0


def test_a_second_sigterm_hands_running_jobs_back_at_once(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    w = spawn_worker("--grace-period", "60")
    jobs = [sample_app.sleep.enqueue(60), sample_app.asleep.enqueue(60)]
    wait_for(lambda: count(db, RUNNING) == 2)
    started = time.monotonic()
    w.signal(signal.SIGTERM)
    time.sleep(0.3)
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0, w.log()
    assert time.monotonic() - started < 8
    for job in jobs:
        back = app.get_job(job.id)
        assert back.status.value == "pending" and back.attempts == 1
        assert back.max_attempts == job.max_attempts + 1
    assert "again: handing running jobs back now" in w.log()


def test_a_network_cut_longer_than_the_lease_loses_no_job(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any, netcut: tuple[NetCut, str]
) -> None:
    proxy, through = netcut
    sample_app.steady.enqueue_many([(n,) for n in range(1000)])
    workers = [spawn_worker("--concurrency", "10", *FAST_LEASE, url=through) for _ in range(2)]
    wait_for(lambda: count(db, TERMINAL) >= 200, timeout=60)
    # Hanging calls, silent heartbeats: past the 2 s lease the workers give
    # up their attempts, and once the network is back the leader rescues them.
    proxy.partition(4.0)
    wait_for(lambda: count(db, TERMINAL) == 1000, timeout=120, interval=0.1)
    assert count(db, SUCCEEDED) == 1000  # lost = 0
    assert count(db, "SELECT count(DISTINCT n) FROM test_runs") == 1000
    for w in workers:
        assert w.proc.poll() is None, w.log()
    logs = "".join(w.log() for w in workers)
    assert "heartbeat failed" in logs
    fresh = "SELECT count(*) FROM pgjobs.workers WHERE heartbeat_at > now() - interval '2 s'"
    wait_for(lambda: count(db, fresh) == 2, timeout=20)
    for w in workers:
        assert w.stop() == 0, w.log()


def test_sigterm_with_the_database_unreachable_still_exits_and_loses_nothing(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any, netcut: tuple[NetCut, str]
) -> None:
    proxy, through = netcut
    cut_off = spawn_worker("--grace-period", "1", *FAST_LEASE, url=through)
    jobs = [
        sample_app.sleep.options(retries=1).enqueue(60),
        sample_app.asleep.options(retries=1).enqueue(60),
    ]
    wait_for(lambda: count(db, RUNNING) == 2)
    proxy.cut = True  # and it never heals
    started = time.monotonic()
    cut_off.signal(signal.SIGTERM)
    assert cut_off.wait(30) == 0, cut_off.log()
    # The grace period, then a bounded few seconds to try the database.
    assert time.monotonic() - started < 12, cut_off.log()
    assert "go back when their lease runs out" in cut_off.log()
    # The jobs it could not hand back are rescued by the next worker to lead
    # (one serving another queue, so that they stay pending for the test to see;
    # as it leads, it may remove the silent worker's row before the fixture counts it).
    spawn_worker("--queues", "elsewhere", *FAST_LEASE, wait=False)
    lost = "SELECT count(*) FROM pgjobs.attempts WHERE outcome = 'lost'"
    wait_for(lambda: count(db, lost) == 2, timeout=20)
    for job in jobs:
        rescued = app.get_job(job.id)
        assert rescued.status.value == "pending" and rescued.attempts == 1


def test_a_failing_maintenance_duty_backs_off_instead_of_spinning(
    app: Any, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.workers import start_in_thread

    db.execute("ALTER TABLE pgjobs.workers RENAME COLUMN leader_pid TO leader_pid_gone")
    try:
        with caplog.at_level("WARNING", logger="pgjobs.maintenance"):
            worker, thread = start_in_thread(app, release_interval=0.1)
            time.sleep(2.0)
            worker.stop()
            thread.join(30)
    finally:
        db.execute("ALTER TABLE pgjobs.workers RENAME COLUMN leader_pid_gone TO leader_pid")
    failures = [r for r in caplog.records if "maintenance failed" in r.getMessage()]
    # 0.1 s doubling: about five tries in two seconds, not one every few milliseconds.
    assert 2 <= len(failures) <= 7, len(failures)


def test_each_worker_is_judged_by_its_own_lease(
    app: Any, db: psycopg.Connection[Any], db_url: str
) -> None:
    import asyncio

    from pgjobs.maintenance import rescuer

    patient, hasty = (sample_app.steady.enqueue(1), sample_app.steady.enqueue(2))  # retries=10
    for worker, lease, job in (("w-patient", 60, patient), ("w-hasty", 2, hasty)):
        db.execute(
            "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, lease_seconds,"
            " heartbeat_at) VALUES (%s, 'h', 1, '{default}', 1, %s, now() - interval '10 s')",
            (worker, lease),
        )
        db.execute(
            "UPDATE pgjobs.jobs SET status = 'running', worker_id = %s, attempt = 1,"
            " started_at = now() WHERE id = %s",
            (worker, job.id),
        )

    async def rescue() -> int:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            return await rescuer.run_once(conn)

    assert asyncio.run(rescue()) == 1
    assert app.get_job(patient.id).status is Status.RUNNING  # 10 s silent, within its 60 s
    assert app.get_job(hasty.id).status is Status.PENDING  # past its 2 s
    workers = {r[0] for r in db.execute("SELECT id FROM pgjobs.workers").fetchall()}
    assert workers == {"w-patient"}


def test_the_app_pool_does_not_hand_out_connections_the_server_closed(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    first = sample_app.add.enqueue(1, 1)  # the pool now holds open connections
    with sample_app.app.connection() as a, sample_app.app.connection() as b:
        assert a is not b  # two idle connections in the sync pool
    assert terminate_worker_connections(db) >= 2
    time.sleep(0.2)
    # Each call gets a live connection at its first try: the pool's check sees
    # that the server closed the idle ones (without a round trip) and replaces them.
    after = [sample_app.add.enqueue(2, 2) for _ in range(3)]

    async def async_pool() -> list[Any]:
        made = [await sample_app.aadd.aenqueue(1, 1)]
        assert terminate_worker_connections(db) >= 1
        await asyncio.sleep(0.2)
        made += [await sample_app.aadd.aenqueue(2, 2) for _ in range(3)]
        return made

    after += asyncio.run(async_pool())
    stored = {r[0] for r in db.execute("SELECT id FROM pgjobs.jobs")}
    assert {first.id, *(j.id for j in after)} <= stored


def test_kill_9_with_40_jobs_of_no_retries_in_flight_runs_all_40_again(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    # retries=0, the default: a lost attempt spends the crash budget, not retries.
    jobs = sample_app.guarded_once.enqueue_many([(n, 1.0) for n in range(40)])
    first = spawn_worker("--concurrency", "40", *FAST_LEASE)
    wait_for(lambda: count(db, "SELECT count(*) FROM test_runs") == 40, timeout=30)
    first.proc.kill()
    first.wait(10)
    killed_at = db.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    spawn_worker("--concurrency", "40", *FAST_LEASE)
    wait_for(lambda: count(db, SUCCEEDED) == 40, timeout=60)
    for job in jobs:
        back = app.get_job(job.id)
        assert back.status is Status.SUCCEEDED and back.attempts == 2 and back.max_attempts == 2
        assert [a.outcome for a in app.attempts(job.id)] == ["lost", "succeeded"]
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0
    assert count(db, "SELECT count(*) FROM test_runs") == 80  # each ran twice, in turn
    assert overlapping_runs(db, killed_at) == 0


def test_a_job_that_kills_its_worker_stops_after_the_crash_budget_whatever_its_retries(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    job = sample_app.poison.enqueue("exit")  # retries=2: three attempts, were they spent
    lease = ("--lease-ttl", "1", "--heartbeat-interval", "0.2", "--poll-interval", "0.2")
    for _ in range(2):
        w = spawn_worker(*lease, "--max-lost", "2")
        assert w.wait(30) == 3  # the job killed it
    survivor = spawn_worker(*lease, "--max-lost", "2")
    wait_for(lambda: app.get_job(job.id).is_terminal, timeout=20)
    failed = app.get_job(job.id)
    assert failed.status is Status.FAILED and failed.attempts == 2
    assert failed.error is not None and failed.error["type"] == "WorkerLost"
    assert "2 attempts in a row were lost" in failed.error["message"]
    assert [a.outcome for a in app.attempts(job.id)] == ["lost", "lost"]
    assert app.get_dead_letter(job.id).attempts == 2
    assert survivor.proc.poll() is None


def test_threads_stuck_past_their_hard_limit_hold_their_slots_and_restart_the_worker(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    w = spawn_worker(
        "--concurrency", "4", "--max-stuck-threads", "1", "--heartbeat-interval", "0.2",
        "--poll-interval", "0.2",
    )  # fmt: skip
    first = sample_app.thread_overrun.enqueue(6)
    with pytest.raises(pgjobs.JobFailed):
        first.wait(10)
    # The job failed at its hard limit; its thread runs on and holds its slot,
    # and every report of the worker's capacity says so.
    wait_for(lambda: [(x.running, x.stuck, x.busy) for x in app.workers()] == [(0, 1, 1)])
    row = db.execute("SELECT running_jobs, stuck_threads, busy_slots FROM pgjobs.workers_alive")
    assert row.fetchall() == [(0, 1, 1)]
    sample_app.thread_overrun.enqueue(6)
    # Two stuck, more than it tolerates: it stops claiming and exits to be restarted.
    assert w.wait(30) == 75, w.log()
    assert "threads are stuck past their hard time limit" in w.log()
    assert count(db, "SELECT count(*) FROM pgjobs.workers") == 0


def test_a_worker_that_compares_its_claims_often_reports_no_lost_claim_reply(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    # Every heartbeat interval the worker compares what the database says it
    # runs with what it runs. Jobs finished while that read was on its way are
    # not claims whose reply was lost: nothing is handed back or reported for
    # them. A trickle of short jobs keeps outcomes on their way all the time.
    w = spawn_worker("--heartbeat-interval", "0.05", "--lease-ttl", "2", "--concurrency", "20")
    jobs = []
    for _ in range(60):
        jobs += sample_app.sleep.enqueue_many([(0.005,)] * 25)
        time.sleep(0.05)
    wait_for(lambda: count(db, SUCCEEDED) == len(jobs), timeout=120)
    assert "claim reply was lost" not in w.log()
    assert count(db, "SELECT count(*) FROM pgjobs.attempts WHERE outcome <> 'succeeded'") == 0
    assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE attempt <> 1") == 0
