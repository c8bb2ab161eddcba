"""A big backlog on a Postgres with the server's default settings (jit on).

The worker's statements touch a few rows each, through indexes: their speed must
not depend on how many jobs wait. Measured as a ratio within one run, so that the
machine's speed cancels out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.common import ROOT, migrated_database, wait_for

pytestmark = pytest.mark.system

MEASURED = 20_000
WARM_UP = 2_000


def _fill(url: str, jobs: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for start in range(0, jobs, 250_000):
            conn.execute(
                "INSERT INTO pgjobs.jobs (id, task, args)"
                " SELECT gen_random_uuid(), 'noop', jsonb_build_array(n)"
                " FROM generate_series(%s::int, %s::int) n",
                (start + 1, min(jobs, start + 250_000)),
            )
        conn.execute("VACUUM ANALYZE pgjobs.jobs")


def _succeeded(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'")
        got = row.fetchone()
    assert got is not None
    return int(got[0])


def _throughput(url: str, log: Path) -> float:
    """Jobs per second of one worker over MEASURED jobs, after WARM_UP."""
    env = {**os.environ, "PGJOBS_URL": url, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgjobs", "worker", "tests.outage_app:app",
         "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: _succeeded(url) >= WARM_UP, timeout=120, interval=0.05)
        start, done = time.monotonic(), _succeeded(url)
        wait_for(lambda: _succeeded(url) >= done + MEASURED, timeout=300, interval=0.05)
        rate = (_succeeded(url) - done) / (time.monotonic() - start)
    finally:
        proc.terminate()
        proc.wait(30)
    return rate


def test_a_million_pending_jobs_with_jit_on_keep_the_workers_pace(
    private_cluster: Any, tmp_path: Path
) -> None:
    cluster = private_cluster()  # the server's defaults: jit on, autovacuum on
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_jit_available(), current_setting('jit')").fetchone()
    assert row == (True, "on"), row  # else this would measure nothing
    small = migrated_database(cluster, "small")
    big = migrated_database(cluster, "big")
    _fill(small, 2 * WARM_UP + MEASURED)  # never drained: the tail is not measured
    _fill(big, 1_000_000)
    small_rate = _throughput(small, tmp_path / "small.log")
    big_rate = _throughput(big, tmp_path / "big.log")
    assert big_rate >= 0.7 * small_rate, (big_rate, small_rate)
