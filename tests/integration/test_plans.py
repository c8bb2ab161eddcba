"""The busy worker's one statement is planned once and its plan stays cheap.

A worker with a backlog records each batch of outcomes and claims the next
jobs with finish_and_claim. It runs that statement on connections of its own,
set up by reuse_plans, on a generic plan (made once per connection) instead of
planning it for every batch; these tests show that it does, that its other
connections plan as usual, and that the generic plan reaches every job
through the primary key even when the table's statistics know nothing of
running jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from pgjobs import App, Worker
from pgjobs.db.driver import AsyncPoolConnection
from pgjobs.db.queries import sql
from pgjobs.worker.completer import unless_all_null as _unless_all_null
from pgjobs.worker.ops import finish_and_claim, reuse_plans
from tests import sample_app
from tests.support.common import count, numbered, register
from tests.support.plans import BATCH, WORKER, claim_params


def _outcomes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Success for each of `rows` (claimed jobs), as the worker sends it."""
    n = len(rows)
    return {
        "worker_id": WORKER,
        "ids": [r["id"] for r in rows],
        "attempts": [r["attempt"] for r in rows],
        "statuses": ["succeeded"] * n,
        "outcomes": ["succeeded"] * n,
        "results": ["null"] * n,
        # As the worker sends them: no errors, progress or retries at all is
        # an empty array each, which the statement's unnest() pads with NULLs.
        "errors": _unless_all_null([None] * n),
        "progress": _unless_all_null([None] * n),
        "retry_in": _unless_all_null([None] * n),
    }


def _backlog(db: psycopg.Connection[Any], jobs: int, running: int) -> list[dict[str, Any]]:
    """`jobs` pending jobs, statistics taken while none runs, then `running` claimed."""
    for start in range(0, jobs, 1000):
        sample_app.record.enqueue_many([(n,) for n in range(start, min(jobs, start + 1000))])
    # The statistics a worker meets at the start of a backlog: every job
    # pending, no worker id in sight.
    db.execute("ANALYZE pgjobs.jobs")
    register(db, WORKER)
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql("claim_jobs"), claim_params(running)).fetchall()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_the_busy_worker_statement_runs_on_one_generic_plan(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    claimed = _backlog(db, 1000, BATCH)
    assert len(claimed) == BATCH

    async def batches() -> tuple[list[int], list[int], dict[str, Any]]:
        finished, started = [], []
        conn = await AsyncPoolConnection.connect(db_url, autocommit=True, row_factory=dict_row)
        async with conn:
            await reuse_plans(conn)
            rows = claimed
            for _ in range(4):
                got = await finish_and_claim(conn, {**_outcomes(rows), **claim_params(BATCH)})
                # The claim runs first, right after the snapshot (Postgres runs
                # the parts of a UNION ALL in order): run last, it locked jobs
                # the other writer had just claimed and made its finish wait.
                kinds = [r["kind"] for r in got]
                assert kinds == sorted(kinds), kinds  # 'claimed' rows, then 'finished'
                finished.append(sum(r["kind"] == "finished" for r in got))
                rows = [r for r in got if r["kind"] == "claimed"]
                started.append(len(rows))
            # The text as psycopg prepared it, with $n for each parameter.
            cur = await conn.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'WITH outcome AS%'"
            )
            plans = await cur.fetchone()
            assert plans is not None
            return finished, started, plans

    finished, started, plans = asyncio.run(batches())
    assert finished == [0] * 4  # every outcome applied as sent: none comes back
    assert started == [BATCH] * 4
    # Planned once, then the same plan for every batch; never a plan per batch.
    assert plans == {"generic_plans": 4, "custom_plans": 0}
    assert db.execute(
        "SELECT count(*) FROM pgjobs.attempts WHERE worker_id = %s", (WORKER,)
    ).fetchone() == (4 * BATCH,)
    assert db.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded' AND result = 'null'"
        " AND error IS NULL AND progress IS NULL AND finished_at IS NOT NULL"
    ).fetchone() == (4 * BATCH,)
    assert db.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running' AND worker_id = %s", (WORKER,)
    ).fetchone() == (BATCH,)


def test_a_busy_worker_reuses_the_plan_and_plans_its_other_statements_as_usual(
    db: psycopg.Connection[Any], db_url: str
) -> None:
    # An app without rate- or concurrency-limited tasks (which tests.sample_app
    # has): its busy worker claims with finish_and_claim alone.
    app = App(db_url)

    @app.task
    async def nothing(n: int) -> None:
        """Does nothing."""

    jobs = 600
    nothing.enqueue_many([(n,) for n in range(jobs)])

    async def run() -> tuple[list[dict[str, Any]], list[str], str]:
        worker = Worker(app, concurrency=20)
        runner = asyncio.create_task(worker.arun(install_signal_handlers=False))
        try:
            while count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") < jobs:
                assert not runner.done()
                await asyncio.sleep(0.05)
            plans: list[dict[str, Any]] = []
            modes: list[str] = []
            # Both of the busy statement's connections at once.
            async with worker.busy_pool.connection() as one, worker.busy_pool.connection() as two:
                for conn in (one, two):
                    cur = await conn.execute(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                        " WHERE statement LIKE 'WITH outcome AS%'"
                    )
                    plans += await cur.fetchall()
                    cur = await conn.execute("SELECT current_setting('plan_cache_mode') AS m")
                    modes += [r["m"] for r in await cur.fetchall()]
            async with worker.pool.connection() as conn:
                cur = await conn.execute("SELECT current_setting('plan_cache_mode') AS m")
                row = await cur.fetchone()
                assert row is not None
        finally:
            worker.stop()
            await runner
        return plans, modes, row["m"]

    try:
        plans, modes, other = asyncio.run(run())
    finally:
        app.close()
    assert modes == ["force_generic_plan"] * 2
    # Every batch on the one plan; 600 jobs in batches of at most 10 make
    # dozens of statements, nearly all of them finish_and_claim.
    assert all(p["custom_plans"] == 0 for p in plans), plans
    assert sum(p["generic_plans"] for p in plans) >= 20, plans
    # The worker's other statements are planned for their values, as usual.
    assert other == "auto"
    assert count(db, "SELECT count(*) FROM pgjobs.attempts") == jobs


def test_the_generic_plan_reaches_each_job_by_its_primary_key(
    db: psycopg.Connection[Any],
) -> None:
    # Twice as many running jobs as outcomes: a plan that walked this worker's
    # running jobs and matched them against the outcomes would show here.
    running = _backlog(db, 3000, 2 * BATCH)
    done = running[:BATCH]
    params = {**_outcomes(done), **claim_params(BATCH)}
    # A server-side prepared statement, so EXPLAIN can show the generic plan.
    text, order = numbered(sql("finish_and_claim"))
    args = pgsql.SQL(", ").join(pgsql.Literal(params[name]) for name in order)
    db.execute("BEGIN")
    try:
        db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        db.execute(f"PREPARE fc AS {text}")
        explain = pgsql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE fc({})").format(args)
        row = db.execute(explain).fetchone()
        assert row is not None
        plan = row[0][0]["Plan"]
        kinds = db.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'fc'"
        ).fetchone()
    finally:
        db.execute("ROLLBACK")
        db.execute("DEALLOCATE ALL")
    assert kinds == (1, 0)
    nodes = list(_nodes(plan))
    updates = [n for n in nodes if n.get("Operation") == "Update"]
    assert [n["Relation Name"] for n in updates] == ["jobs", "jobs"]
    assert [n["Actual Rows"] for n in updates] == [BATCH, BATCH]
    for update in updates:
        scans = [
            (n["Node Type"], n.get("Index Name"))
            for n in _nodes(update)
            if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]
        ]
        # The finish finds its rows by id; the claim's row lookups too, below
        # the claim index scan that picks them.
        assert ("Index Scan", "jobs_pkey") in scans, scans
        assert {index for _, index in scans} <= {"jobs_pkey", "jobs_claim_idx"}, scans
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"]
    # No outcome compared with every running job.
    assert not [n for n in nodes if n.get("Rows Removed by Join Filter")]


def test_an_array_of_outcome_values_goes_empty_only_when_every_value_is_null() -> None:
    assert _unless_all_null([None, None]) == []
    assert _unless_all_null([None, "x", None]) == [None, "x", None]
    assert _unless_all_null([0.0, None]) == [0.0, None]  # a zero is a value
    assert _unless_all_null([]) == []


def test_a_frontier_claim_reads_its_priority_from_its_time_on_and_a_sweep_reads_the_rest(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC)
    behind = sample_app.record.enqueue(1)
    # Due 10 s ago, as a job handed back or a workflow step released keeps its old run_at.
    db.execute(
        "UPDATE pgjobs.jobs SET run_at = run_at - interval '10 s' WHERE id = %s", (behind.id,)
    )
    ahead = sample_app.record.enqueue(2)
    urgent = sample_app.record.options(priority=5).enqueue(3)
    register(db, WORKER)
    front = {
        "from_queues": ["default"],
        "from_priorities": [0],
        "from_times": [(now - timedelta(seconds=1)).timestamp()],
    }
    with db.cursor(row_factory=dict_row) as cur:
        got = cur.execute(sql("claim_jobs"), claim_params(10, front=front)).fetchall()
        # Only priority 0, due from a second ago on: the job behind and the priority
        # the frontier does not know wait for a sweep.
        assert [r["id"] for r in got] == [ahead.id]
        assert (got[0]["priority"], got[0]["queue"]) == (0, "default")
        assert abs(got[0]["due"] - app.get_job(ahead.id).run_at.timestamp()) < 1e-3
        swept = cur.execute(sql("claim_jobs"), claim_params(10)).fetchall()
    assert {r["id"] for r in swept} == {urgent.id, behind.id}

    # Both forms keep their index range in the one generic plan a busy worker uses.
    text, names = numbered(sql("claim_jobs"))
    db.execute("SET plan_cache_mode = force_generic_plan")
    db.execute(f"PREPARE frontier_claim AS {text}")
    try:
        values = {**claim_params(10, front=front), "worker_id": WORKER}
        literals = pgsql.SQL(", ").join(pgsql.Literal(values[n]) for n in names)
        query = pgsql.SQL("EXPLAIN (FORMAT JSON) EXECUTE frontier_claim({})").format(literals)
        row = db.execute(query).fetchone()
    finally:
        db.execute("DEALLOCATE frontier_claim")
        db.execute("RESET plan_cache_mode")
    assert row is not None
    conds = [
        n.get("Index Cond", "")
        for n in _nodes(row[0][0]["Plan"])
        if n.get("Index Name") == "jobs_claim_idx"
    ]
    assert len(conds) == 2, conds
    assert any("priority = " in c and "run_at >= " in c for c in conds), conds
    assert any("priority" not in c for c in conds), conds
