"""Helpers the tests share: the repository root, counting rows, waiting for a condition."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent.parent

#: Every pgjobs table a test empties before it starts.
TABLES = (
    "pgjobs.jobs, pgjobs.attempts, pgjobs.dedup_keys, pgjobs.dead_letters, pgjobs.workers,"
    " pgjobs.task_limits, pgjobs.periodic, pgjobs.workflows, pgjobs.job_deps"
)


#: One row per run of a sample task: which job, which attempt, when, whether it overlapped another.
TEST_RUNS = (
    "CREATE TABLE test_runs (job_id uuid NOT NULL, n int, pid int, attempt int,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp(),"
    " overlap boolean NOT NULL DEFAULT false, ended_at timestamptz)"
)


def count(conn: psycopg.Connection[Any], query: str = "SELECT count(*) FROM pgjobs.jobs") -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def wait_for(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.02) -> None:
    """Poll until `predicate()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def numbered(query: str) -> tuple[str, list[str]]:
    """A pgjobs statement with $1, $2, ... for its named placeholders, for PREPARE, and the
    names in their order."""
    names: list[str] = []

    def placeholder(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)[sb]", placeholder, query), names


def register(conn: psycopg.Connection[Any], worker_id: str, concurrency: int = 10) -> None:
    """A row in pgjobs.workers for `worker_id`: claims by a worker without one claim nothing."""
    conn.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency)"
        " VALUES (%s, 'test', 1, '{default}', %s) ON CONFLICT (id) DO NOTHING",
        (worker_id, concurrency),
    )


def migrated_database(cluster: Any, name: str = "pgjobs") -> str:
    """A migrated database on a private cluster, with the test_runs table; its URL."""
    from pgjobs.migrations import upgrade

    url = cluster.create_database(name)
    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TEST_RUNS)
    return url


def with_dbname(url: str, dbname: str) -> str:
    """`url` with another database name."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)
