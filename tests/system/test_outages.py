"""Outages longer than the lease, on a Postgres cluster of the test's own.

The fencing model: every run that starts gets its own attempt number, never
used again, and its own attempts row; an outcome applies only to the attempt
that is current; a worker the rescuer took for dead stops its runs and claims
nothing until it has registered again. These tests count what would break it:
jobs lost, attempt numbers used twice, runs without an attempts row, and runs
of one job that overlap. All must be zero.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.common import ROOT, migrated_database, wait_for
from tests.support.netcut import NetCut
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.system

LEASE = ("--lease-ttl", "1", "--heartbeat-interval", "0.25", "--poll-interval", "0.5")


def _spawn(url: str, runs: Path, log: Path, *args: str) -> WorkerProcess:
    env = {**os.environ, "PGJOBS_URL": url, "PGJOBS_TEST_RUNS": str(runs), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgjobs", "worker", "tests.outage_app:app", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    return WorkerProcess(proc, log)


def _scalar(url: str, query: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _runs(path: Path) -> dict[tuple[str, int], list[float]]:
    """(job, attempt) -> [start, end] of each run, from the task's own notes."""
    runs: dict[tuple[str, int], list[float]] = {}
    starts: dict[tuple[str, int], int] = defaultdict(int)
    for line in path.read_text().splitlines():
        kind, job, attempt, at, _pid = line.split()
        key = (job, int(attempt))
        if kind == "start":
            starts[key] += 1
            runs[key] = [float(at), float("inf")]
        else:
            runs[key][1] = float(at)
    reused = {k: n for k, n in starts.items() if n > 1}
    assert not reused, f"attempt numbers used by more than one run: {reused}"
    return runs


def _succeeded(url: str) -> int:
    return int(_scalar(url, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'"))


def _progress(url: str, more: int, jobs: int) -> None:
    """Wait until `more` jobs have succeeded since now (or all of them)."""
    target = min(jobs, _succeeded(url) + more)
    wait_for(lambda: _succeeded(url) >= target, timeout=60)


def test_five_outages_longer_than_the_lease_lose_nothing_and_reuse_no_attempt_number(
    private_cluster: Any, tmp_path: Path
) -> None:
    cluster = private_cluster()
    url = migrated_database(cluster)

    jobs = 4000
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgjobs.jobs (id, task, args)"
            " SELECT gen_random_uuid(), 'tick', jsonb_build_array(n, 0.02)"
            " FROM generate_series(1, %s) n",
            (jobs,),
        )
    runs_file = tmp_path / "runs.txt"
    # One worker reaches the database through a proxy that can cut its
    # network alone: while it is cut off the other takes it for dead and
    # rescues its jobs, and it must notice and give way when it is back.
    proxy = NetCut("127.0.0.1", cluster.port)
    through = psycopg.conninfo.make_conninfo(url, port=str(proxy.port))
    workers = [
        _spawn(through, runs_file, tmp_path / "cut-off.log", *LEASE),
        _spawn(url, runs_file, tmp_path / "direct.log", *LEASE),
    ]
    try:
        for w in workers:
            wait_for(lambda w=w: "started:" in w.log(), timeout=30)
        for _ in range(5):
            _progress(url, 150, jobs)
            cluster.stop("fast")  # every connection drops; back after 2.5 leases
            time.sleep(2.5)
            cluster.start()
            _progress(url, 150, jobs)
            proxy.partition(3.0)  # one worker cut off for three leases
            time.sleep(3.5)
        wait_for(lambda: _succeeded(url) == jobs, timeout=120)
        for w in workers:
            assert w.proc.poll() is None, w.log()
    finally:
        for w in workers:
            w.stop()
        proxy.close()
    logs = "".join(w.log() for w in workers)
    assert "rescued from worker" in logs  # the cut-off worker's jobs were rescued
    assert "its row was gone; registering again" in logs
    runs = _runs(runs_file)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT job_id::text, attempt, outcome FROM pgjobs.attempts").fetchall()
        statuses = conn.execute("SELECT status, count(*) FROM pgjobs.jobs GROUP BY 1").fetchall()
    assert dict(statuses) == {"succeeded": jobs}  # lost: 0
    recorded = {(r[0], r[1]): r[2] for r in rows}
    # Every run that started has its own attempts row.
    assert set(runs) - set(recorded) == set()
    # An attempts row without a run is a claim whose reply never reached its
    # worker (the network was cut): given back by that worker ('unstarted') or
    # rescued with it ('lost'). It used its number up all the same.
    never_ran = {k: v for k, v in recorded.items() if k not in runs}
    assert set(never_ran.values()) <= {"lost", "unstarted"}, never_ran
    assert len(never_ran) < 50
    # No two runs of one job overlap in time.
    by_job: dict[str, list[list[float]]] = defaultdict(list)
    for (job, _attempt), span in runs.items():
        by_job[job].append(span)
    overlaps = 0
    for spans in by_job.values():
        spans.sort()
        overlaps += sum(1 for a, b in itertools.pairwise(spans) if a[1] > b[0])
    assert overlaps == 0
    # Each job's attempt numbers run 1..n with none missing.
    numbers: dict[str, list[int]] = defaultdict(list)
    for job, attempt in recorded:
        numbers[job].append(attempt)
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in numbers.values())


def test_work_resumes_within_2_s_of_the_database_coming_back(
    private_cluster: Any, tmp_path: Path
) -> None:
    cluster = private_cluster()
    url = migrated_database(cluster)
    runs_file = tmp_path / "runs.txt"
    # A 30 s lease, the default: the outage below is shorter, and nothing is rescued.
    w = _spawn(url, runs_file, tmp_path / "worker.log", "--poll-interval", "60")
    try:
        wait_for(lambda: "started:" in w.log(), timeout=30)
        cluster.stop("fast")
        time.sleep(12)  # longer than the pools' 10 s wait for a connection
        cluster.start()
        back = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('pgjobs', 'default')")  # what an enqueue sends
            conn.execute(
                "INSERT INTO pgjobs.jobs (id, task, args)"
                " VALUES (gen_random_uuid(), 'tick', '[1, 0.0]')"
            )
            conn.execute("SELECT pg_notify('pgjobs', 'default')")
        wait_for(lambda: _succeeded(url) == 1, timeout=10, interval=0.05)
        took = time.monotonic() - back
        assert took < 2.0, (took, w.log())
        assert w.proc.poll() is None
    finally:
        w.stop()


def test_a_worker_started_while_the_database_is_down_waits_for_it(
    private_cluster: Any, tmp_path: Path
) -> None:
    cluster = private_cluster()
    url = migrated_database(cluster)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgjobs.jobs (id, task, args)"
            " VALUES (gen_random_uuid(), 'tick', '[1, 0.0]')"
        )
    cluster.stop("fast")
    w = _spawn(url, tmp_path / "runs.txt", tmp_path / "worker.log", "--poll-interval", "0.5")
    try:
        wait_for(lambda: "cannot reach the database" in w.log(), timeout=30)
        time.sleep(3)
        assert w.proc.poll() is None, w.log()  # still waiting, not exited
        assert w.log().count("cannot reach the database") == 1  # said once, not per try
        cluster.start()
        wait_for(lambda: "started:" in w.log(), timeout=15)
        wait_for(lambda: _succeeded(url) == 1, timeout=15)
    finally:
        w.stop()


def test_a_server_full_at_shutdown_delays_the_goodbye_but_does_not_skip_it(
    private_cluster: Any, tmp_path: Path
) -> None:
    cluster = private_cluster({"max_connections": "20"})
    url = migrated_database(cluster)
    w = _spawn(url, tmp_path / "runs.txt", tmp_path / "worker.log", *LEASE)
    fillers: list[psycopg.Connection[Any]] = []
    try:
        wait_for(lambda: "started:" in w.log(), timeout=30)
        assert _scalar(url, "SELECT count(*) FROM pgjobs.workers") == 1
        # Every connection slot taken: the goodbye's new connection is refused.
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            while True:
                fillers.append(psycopg.connect(url, autocommit=True))
        w.proc.terminate()
        wait_for(lambda: "got SIGTERM" in w.log(), timeout=10)
        time.sleep(1.5)  # longer than a refused goodbye takes, shorter than its 5 s budget
        assert w.proc.poll() is None, w.log()  # still trying
        fillers.pop().close()  # a slot comes free
        assert w.wait(timeout=15) == 0, w.log()
        assert "say goodbye" not in w.log()
        rows = fillers[0].execute("SELECT count(*) FROM pgjobs.workers").fetchone()
        assert rows == (0,)  # unregistered
    finally:
        for conn in fillers:
            conn.close()
        w.stop()
