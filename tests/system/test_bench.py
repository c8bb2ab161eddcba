"""The benchmark harness: it runs end to end, and its ceiling row measures pgjobs' own rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.common import ROOT

# Every column but the ones each insert makes anew (the id, and the times of its transaction).
ROWS = """
SELECT to_jsonb(j) - 'id' - 'created_at' - 'run_at' AS row FROM pgjobs.jobs j
ORDER BY j.args->>0
"""


def _rows(db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [r[0] for r in db.execute(ROWS).fetchall()]


def test_the_sql_alone_row_inserts_the_rows_that_pgjobs_inserts(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    from bench.peers import pgjobs_peer, pgjobs_sql_peer
    from bench.peers._common import parse

    peer = pgjobs_sql_peer.PgjobsSqlPeer()
    noop = pgjobs_peer.app.tasks["noop"]
    try:
        # Bulk: 250 rows by COPY, in chunks, against enqueue_many() of the same items.
        peer.setup(parse(["bulk", "--count", "250", "--pg-url", db_url]))
        peer.enqueue_bulk("noop", 250, 1000)
        by_ceiling = _rows(db)
        db.execute("TRUNCATE pgjobs.jobs")
        noop.enqueue_many([(i,) for i in range(250)])
        by_pgjobs = _rows(db)
        assert len(by_ceiling) == 250
        assert by_ceiling == by_pgjobs

        # Single: the setup's jobs one statement each, against enqueue() one at a time.
        peer.setup(parse(["single", "--count", "3", "--pg-url", db_url]))
        for i in range(4):
            peer.enqueue_one("noop", i)
        by_ceiling = _rows(db)
        db.execute("TRUNCATE pgjobs.jobs")
        for i in range(4):
            noop.enqueue(i)
        assert len(by_ceiling) == 4
        assert by_ceiling == _rows(db)
    finally:
        peer.close()
        pgjobs_peer.app.close()


def test_the_harness_runs_pgjobs_its_ceiling_and_the_floor_and_writes_the_report(
    admin_url: str, tmp_path: Path
) -> None:
    prefix = f"bench_test_{os.getpid()}_"
    out = subprocess.run(
        [
            sys.executable,
            "bench/bench.py",
            "--quick",
            "--peers",
            "pgjobs,postgres",
            "--scenarios",
            "bulk,single",
            "--url",
            admin_url,
            "--out",
            str(tmp_path),
            "--no-chart",
            "--db-prefix",
            prefix,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "quick.json").read_text())
    peers = report["results"]
    assert set(peers) == {"pgjobs", "pgjobs SQL alone", "postgres (bare SQL)"}
    for name, by_scenario in peers.items():
        for key in ("bulk", "single"):
            entry = by_scenario[key]
            assert "error" not in entry, (name, key, entry)
            assert entry["median"]["jobs_per_s"] > 0, (name, key)
    table = (tmp_path / "quick.md").read_text()
    for name in peers:
        assert f"| {name} | " in table
    assert not (tmp_path / "quick.png").exists()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    assert left == []


def test_the_instruction_count_cases_enqueue_what_they_say(db_url: str) -> None:
    from bench.instructions import child_command

    # Each case as callgrind runs it, without callgrind: it must enqueue its calls' jobs,
    # or its count would be of less work than it claims.
    for case, jobs in (
        ("enqueue", 4),
        ("enqueue_job", 4),
        ("enqueue_many", 2000),
        ("copy_jobs", 2000),
    ):
        calls = 4 if jobs == 4 else 2
        run = subprocess.run(
            child_command(case, calls, calls, db_url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == f"{case}: {jobs} jobs inserted"


def test_the_instruction_count_says_what_it_needs_without_valgrind(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "bench/instructions.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": str(tmp_path)},  # no valgrind on it
    )
    assert run.returncode == 2
    assert "needs valgrind" in run.stderr


def test_the_throughput_count_is_read_often_only_near_the_end() -> None:
    from bench.peers._common import FAR_POLL, POLL, Progress

    counts = iter([7, 7, 107, 507, 1007])  # 7 before the run: jobs left from another
    progress = Progress(lambda: next(counts), 1000)
    assert progress.interval() == POLL  # nothing done yet: the start is timed to 20 ms
    assert not progress.finished() and progress.first is None
    assert not progress.finished() and progress.first is not None
    t0, n0 = progress.first
    assert n0 == 100
    progress.last = (t0 + 1.0, 200)  # 100 jobs a second: 800 left is 8 s
    assert progress.interval() == FAR_POLL
    progress.last = (t0 + 1.0, 999)  # 1 left at 899/s
    assert progress.interval() == POLL
    progress.last = (t0 + 1.0, 960)  # 40 left at 860/s: 47 ms, and half of it
    assert progress.interval() == pytest.approx(40 / 860 / 2)
    assert not progress.finished()
    assert progress.finished()  # 1,000 counted since the baseline
