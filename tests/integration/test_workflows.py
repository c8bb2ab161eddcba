"""Workflows against a real database and real workers: chain, group, chord, nesting, faults."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import chain, chord, group
from tests import sample_app
from tests.sample_app import add, collect, fail, fixable, inc, total
from tests.support.common import ROOT, count, wait_for
from tests.support.workers import WorkerProcess, drain

FAST_LEASE = ("--lease-ttl", "2", "--heartbeat-interval", "0.5", "--poll-interval", "0.5")
SUCCEEDED = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'"
RUNNING = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'"


def steps(app: pgjobs.App, wf: pgjobs.Workflow) -> list[tuple[str, str]]:
    return [(s.task, s.status.value) for s in app.get_workflow(wf.id).steps]


def burst(spawn_worker: Callable[..., WorkerProcess], *args: str) -> None:
    w = spawn_worker("--burst", "--concurrency", "8", *args, wait=False)
    assert w.wait(120) == 0, w.log()


def test_a_chain_passes_each_result_to_the_next_step(
    app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    wf = chain(add.s(1, 2), add.s(10), add.s(100)).enqueue(name="sums")
    info = app.get_workflow(wf.id)
    assert info.kind == "chain" and info.name == "sums" and info.status == "running"
    assert [s.status.value for s in info.steps] == ["pending", "blocked", "blocked"]
    assert [s.waiting_for for s in info.steps] == [None, 1, 1]
    burst(spawn_worker)
    assert wf.wait(10) == 113
    done = app.get_workflow(wf.id)
    assert done.status == "succeeded" and [s.result for s in done.steps] == [3, 13, 113]
    # The result arrived as the first argument; the step's own arguments follow it.
    second = app.get_job(done.steps[1].job_id)
    assert second.args == [3, 10]


@pytest.mark.processes
def test_each_step_of_a_workflow_is_a_job_with_every_field_and_call_of_one(
    app: pgjobs.App, db_url: str
) -> None:
    wf = group(chain(add.s(1, 2), inc.s()), fail.s("boom")).enqueue()
    waiting = app.get_workflow(wf.id).steps
    assert all(isinstance(s, pgjobs.Job) for s in waiting)
    first, second, failing = waiting
    assert first.job_id == first.id and first.workflow_id == wf.id
    assert (first.task, first.queue, first.args, first.kwargs) == ("add", "default", [1, 2], {})
    assert first.status is pgjobs.Status.PENDING and first.attempts == 0
    assert first.created_at is not None and first.started_at is None and first.result is None
    assert second.status is pgjobs.Status.BLOCKED and second.waiting_for == 1
    drain(app)
    first, second, failing = app.get_workflow(wf.id).steps
    # Read as a job is read: the same fields, with the same values.
    for step in (first, second, failing):
        assert step.model_dump() == app.get_job(step.id).model_dump()
    assert first.status is pgjobs.Status.SUCCEEDED and first.result == 3 and first.attempts == 1
    assert first.started_at is not None and first.finished_at is not None
    assert first.started_at <= first.finished_at
    assert second.args == [3] and second.result == 4
    assert failing.status is pgjobs.Status.FAILED and failing.is_terminal
    assert failing.error is not None and failing.error["message"] == "boom"
    # Bound to the App, as app.get_job()'s jobs are.
    assert second.wait(1) == 4 and second.refresh().status is pgjobs.Status.SUCCEEDED
    with pytest.raises(pgjobs.JobFailed, match="boom"):
        failing.wait(1)
    shown = run_cli("workflow", "show", str(wf.id), "--json")
    assert shown.returncode == 0, shown.stderr
    step = json.loads(shown.stdout)["steps"][0]
    assert step["job_id"] == str(first.id) and step["args"] == [1, 2] and step["result"] == 3
    assert step["status"] == "succeeded" and step["attempts"] == 1 and step["started_at"]


def test_a_group_runs_in_parallel_and_keeps_the_order_of_its_results(
    app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    wf = group(*(add.s(i, i) for i in range(12))).enqueue()
    assert app.get_workflow(wf.id).kind == "group"
    assert all(s == "pending" for _, s in steps(app, wf))
    burst(spawn_worker)
    assert wf.wait(10) == [2 * i for i in range(12)]


def test_workflows_nest(app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]) -> None:
    # a -> (b1, b2) -> total -> inc, and a group whose member is a chain.
    wf = chain(add.s(1, 1), group(add.s(10), add.s(20)), total.s(), inc.s()).enqueue()
    inner = group(chain(add.s(1, 2), inc.s()), add.s(5, 5), chord([add.s(1, 1)], total.s()))
    wf2 = inner.enqueue()
    burst(spawn_worker)
    assert wf.wait(10) == 12 + 22 + 1
    assert wf2.wait(10) == [4, 10, 2]
    assert app.get_workflow(wf.id).canvas["chain"][1]["group"][0]["task"] == "add"


def test_a_chord_of_1000_over_4_workers_calls_back_once_with_every_result_in_order(
    app: pgjobs.App, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    workers = [spawn_worker("--concurrency", "20") for _ in range(4)]
    wf = chord([add.s(i, 1) for i in range(1000)], collect.s()).enqueue()
    callback = app.get_workflow(wf.id).steps[-1]
    assert callback.task == "collect" and callback.waiting_for in range(1, 1001)
    assert wf.wait(120) == [i + 1 for i in range(1000)]
    # Members finished on four processes at the same moments, and yet: one callback run.
    assert count(db, "SELECT count(*) FROM test_runs WHERE n = -1") == 1
    assert (
        count(db, f"SELECT count(*) FROM pgjobs.attempts WHERE job_id = '{callback.job_id}'") == 1
    )
    ran_on = db.execute(
        "SELECT count(DISTINCT a.worker_id) FROM pgjobs.attempts a JOIN pgjobs.jobs j "
        "ON j.id = a.job_id WHERE j.workflow_id = %s",
        (wf.id,),
    ).fetchone()
    # Several workers finished members at once (how many depends on who woke first).
    assert ran_on is not None and ran_on[0] >= 2
    assert all(w.proc.poll() is None for w in workers)


def test_a_chord_member_that_fails_for_good_fails_the_chord(
    app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    wf = chord([add.s(1, 1), fail.s("member"), add.s(2, 2)], total.s()).enqueue()
    burst(spawn_worker)
    with pytest.raises(pgjobs.JobFailed, match="member"):
        wf.wait(10)
    info = app.get_workflow(wf.id)
    assert info.status == "failed"
    callback = info.steps[-1]
    assert callback.status is pgjobs.Status.CANCELLED
    assert callback.error is not None and callback.error["type"] == "UpstreamFailed"
    assert "fail" in callback.error["message"]


def test_a_chord_with_allow_failures_passes_the_failures_to_its_callback(
    app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    members = [add.s(1, 1), fail.s("broken"), add.s(2, 2)]
    wf = chord(members, collect.s(), allow_failures=True).enqueue()
    burst(spawn_worker)
    got = wf.wait(10)
    assert got[0] == 2 and got[2] == 4
    failure = got[1]["failed"]
    assert failure["status"] == "failed" and failure["type"] == "ValueError"
    assert failure["message"] == "broken"
    assert app.get_workflow(wf.id).status == "succeeded"


def test_a_failing_callback_of_an_allow_failures_chord_is_the_failure_it_reports(
    app: pgjobs.App,
) -> None:
    # fail() takes the members' list and fails for good: the callback's own failure.
    alone = chord([add.s(1, 1), fail.s("member")], fail.s(), allow_failures=True).enqueue()
    then = chain(
        chord([fail.s("member"), add.s(1, 1)], fail.s(), allow_failures=True), inc.s()
    ).enqueue()
    # A member's failure let pass, and a step cancelled: the workflow was cancelled.
    stopped = group(
        chord([fail.s("member")], collect.s(), allow_failures=True),
        add.options(delay=600).s(1, 1),
    ).enqueue()
    drain(app)
    for wf in (alone, then):
        info = app.get_workflow(wf.id)
        member = next(s for s in info.steps if s.args == ["member"])
        callback = next(s for s in info.steps if s.task == "fail" and s.args != ["member"])
        assert member.status is callback.status is pgjobs.Status.FAILED
        assert info.status == "failed"
        with pytest.raises(pgjobs.JobFailed) as failed:
            wf.wait(1)
        assert failed.value.job_id == callback.id and failed.value.error == callback.error
    # The step after the chord was cancelled by the callback's failure, and says so.
    last = app.get_workflow(then.id).steps[-1]
    assert last.error is not None and last.error["upstream"] == str(callback.id)
    app.cancel_workflow(stopped.id)
    info = app.get_workflow(stopped.id)
    assert info.status == "cancelled"
    with pytest.raises(pgjobs.JobCancelled) as cancelled:
        stopped.wait(1)
    assert cancelled.value.job_id == info.steps[-1].id
    assert [r.status for r in app.workflows()[0] if r.id == stopped.id] == ["cancelled"]


def test_a_dead_lettered_third_step_cancels_the_rest_and_replay_resumes_the_chain(
    app: pgjobs.App, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    wf = chain(add.s(1, 1), add.s(1), fixable.s(), inc.s(), inc.s(), inc.s()).enqueue()
    w = spawn_worker("--concurrency", "4")
    wait_for(lambda: app.get_workflow(wf.id).is_terminal)
    w.stop()
    info = app.get_workflow(wf.id)
    assert info.status == "failed"
    assert [s.status.value for s in info.steps] == [
        "succeeded", "succeeded", "failed", "cancelled", "cancelled", "cancelled",
    ]  # fmt: skip
    third = info.steps[2]
    for before, later in zip(info.steps[2:], info.steps[3:], strict=False):
        assert later.error is not None and later.error["type"] == "UpstreamFailed"
        assert later.error["upstream"] == str(before.job_id)
    assert app.get_dead_letter(third.job_id).task == "fixable"
    with pytest.raises(pgjobs.JobFailed, match="nothing for 3 yet"):
        wf.wait(1)
    # Fix the cause (fixable(3) looks for a row for 3), then replay the dead letter:
    # the steps it cancelled wait again, and the chain goes on from there.
    db.execute("INSERT INTO test_runs (job_id, n) VALUES (%s, 3)", (uuid.uuid4(),))
    app.replay(third.job_id)
    assert [s.status.value for s in app.get_workflow(wf.id).steps] == [
        "succeeded", "succeeded", "pending", "blocked", "blocked", "blocked",
    ]  # fmt: skip
    assert app.get_workflow(wf.id).status == "running"
    spawn_worker("--concurrency", "4")
    assert wf.wait(30) == 6
    assert [s.result for s in app.get_workflow(wf.id).steps] == [2, 3, 3, 4, 5, 6]


def test_cancelling_a_workflow_cancels_every_step_that_has_not_ended(
    app: pgjobs.App, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    wf = chain(sample_app.cancellable_async.s(30), inc.s(), inc.s()).enqueue()
    spawn_worker("--concurrency", "2")
    first = app.get_workflow(wf.id).steps[0].job_id
    wait_for(lambda: app.get_job(first).status is pgjobs.Status.RUNNING)
    assert wf.cancel() == (2, 1)
    wait_for(lambda: app.get_workflow(wf.id).is_terminal, timeout=15)
    info = app.get_workflow(wf.id)
    assert info.status == "cancelled"
    assert {s.status.value for s in info.steps} == {"cancelled"}
    with pytest.raises(pgjobs.JobNotFound):
        app.cancel_workflow(uuid.uuid4())


def test_a_workflow_is_enqueued_in_the_callers_transaction(
    app: pgjobs.App, db: psycopg.Connection[Any], db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        chain(add.s(1, 1), add.s(2)).enqueue(conn=conn)
        conn.rollback()
    assert count(db) == 0 and count(db, "SELECT count(*) FROM pgjobs.workflows") == 0
    assert count(db, "SELECT count(*) FROM pgjobs.job_deps") == 0
    with psycopg.connect(db_url) as conn:
        wf = chord([add.s(1, 1), add.s(2, 2)], total.s()).enqueue(conn=conn)
        conn.commit()
    assert count(db) == 3 and app.get_workflow(wf.id).status == "running"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: chain(add.s(1, 1), add.s("x")), "argument 'b'"),
        (lambda: chain(add.s(1, 1), add.s(1, 2)), "first argument is the result"),
        (lambda: chain(add.s(1, 1), sample_app.whoami.s()), "first argument is the result"),
        (lambda: group(), "needs at least one step"),
        (lambda: chain(add.s(1, 1), 42), "not int"),
        (lambda: chain(add.s(1, 1), add.options(delay=5).s(1)), "only the first steps"),
        (lambda: chain(add.options(dedup_key="k").s(1, 1)), "cannot have a dedup key"),
    ],
)
def test_a_bad_step_is_refused_before_anything_is_written(
    db: psycopg.Connection[Any], make: Callable[[], pgjobs.Call], message: str
) -> None:
    with pytest.raises(pgjobs.InvalidArguments, match=message):
        make().enqueue()
    assert count(db) == 0 and count(db, "SELECT count(*) FROM pgjobs.workflows") == 0


def test_kill_9_during_a_chain_of_20_steps_still_completes_each_step_once(
    app: pgjobs.App, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    wf = chain(inc.s(0, 0.3), *(inc.s(0.3) for _ in range(19))).enqueue()
    worker = spawn_worker("--concurrency", "2", *FAST_LEASE)
    for _ in range(3):  # three times along the chain: kill -9 the worker mid-step
        target = count(db, SUCCEEDED) + 2
        wait_for(lambda t=target: count(db, SUCCEEDED) >= t and count(db, RUNNING) == 1, timeout=60)
        worker.proc.kill()
        worker.wait(10)
        worker = spawn_worker("--concurrency", "2", *FAST_LEASE)
    assert wf.wait(120) == 20
    info = app.get_workflow(wf.id)
    assert [s.result for s in info.steps] == list(range(1, 21))
    # Each step succeeded exactly once and was released once: 20 jobs, 20 successes,
    # and the three cut attempts recorded as lost.
    assert count(db, "SELECT count(*) FROM pgjobs.attempts WHERE outcome = 'succeeded'") == 20
    assert count(db, "SELECT count(*) FROM pgjobs.attempts WHERE outcome = 'lost'") == 3
    assert count(db) == 20


def test_kill_9_during_a_chord_still_calls_back_once(
    app: pgjobs.App, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    wf = chord([inc.s(i, 0.5) for i in range(60)], collect.s()).enqueue()
    first = spawn_worker("--concurrency", "10", *FAST_LEASE)
    spawn_worker("--concurrency", "10", *FAST_LEASE)
    wait_for(lambda: count(db, SUCCEEDED) >= 10 and count(db, RUNNING) >= 5, timeout=60)
    first.proc.kill()
    first.wait(10)
    assert count(db, RUNNING) >= 1
    assert wf.wait(120) == [i + 1 for i in range(60)]
    assert count(db, "SELECT count(*) FROM test_runs WHERE n = -1") == 1
    assert count(db, "SELECT count(*) FROM pgjobs.attempts WHERE outcome = 'succeeded'") == 61
    assert count(db, "SELECT count(*) FROM pgjobs.attempts WHERE outcome = 'lost'") >= 1


@pytest.mark.processes
def test_the_cli_shows_and_cancels_a_workflow(app: pgjobs.App, db_url: str) -> None:
    wf = chain(add.options(delay=60).s(1, 1), group(add.s(1), add.s(2)), total.s()).enqueue(
        name="nightly"
    )
    shown = run_cli("workflow", "show", str(wf.id))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"chain nightly {wf.id}: running"
    assert [line.strip() for line in lines[1:3]] == ["chain", lines[2].strip()]
    assert "scheduled" in lines[2] and "group" in lines[3]
    assert sum("blocked (waits for 1)" in line for line in lines) == 2
    assert "blocked (waits for 2)" in lines[-1]
    as_json = run_cli("workflow", "show", str(wf.id), "--json")
    assert '"kind": "chain"' in as_json.stdout and '"status": "running"' in as_json.stdout
    cancelled = run_cli("workflow", "cancel", str(wf.id))
    assert cancelled.stdout.strip() == "cancelled 4 waiting steps; asked 0 running steps to stop"
    assert app.get_workflow(wf.id).status == "cancelled"
    missing = run_cli("workflow", "show", str(uuid.uuid4()))
    assert missing.returncode == 1 and "no workflow with id" in missing.stderr


def test_aenqueue_is_the_async_twin(app: pgjobs.App, db: psycopg.Connection[Any]) -> None:
    async def main() -> pgjobs.WorkflowInfo:
        try:
            wf = await chord([add.s(1, 1), add.s(2, 2)], total.s()).aenqueue()
            return await wf.aget()
        finally:
            await app.aclose()

    info = asyncio.run(main())
    assert info.kind == "chord" and [s.status.value for s in info.steps] == [
        "pending", "pending", "blocked",
    ]  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_retention_prunes_a_workflow_only_once_none_of_its_steps_can_run(
    app: pgjobs.App, db: psycopg.Connection[Any], db_url: str
) -> None:
    from pgjobs.maintenance import pruner

    async def prune() -> int:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            return await pruner.run_once(conn, keep_succeeded=0, keep_failed=0)

    wf = chord([add.s(1, 1), add.s(2, 2)], total.s()).enqueue()
    steps = app.get_workflow(wf.id).steps
    # Both members ended long ago; the callback has not run: a callback released
    # later reads their results, so they stay.
    db.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', result = '2', finished_at = now() - "
        "interval '2 days' WHERE id = ANY(%s)",
        ([s.job_id for s in steps[:2]],),
    )
    assert asyncio.run(prune()) == 0
    assert app.get_job(steps[2].job_id).status is pgjobs.Status.PENDING  # released, 2 + 2
    assert app.get_job(steps[2].job_id).args == [[2, 2]]
    db.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', finished_at = now() - interval '2 days'"
        " WHERE id = %s",
        (steps[2].job_id,),
    )
    assert asyncio.run(prune()) == 3
    for table in ("pgjobs.jobs", "pgjobs.job_deps", "pgjobs.workflows"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0, table


def test_a_workflow_whose_steps_were_partly_pruned_still_reads(
    app: pgjobs.App, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    wf = chain(add.s(1, 1), add.s(1), add.s(1)).enqueue()
    burst(spawn_worker)
    assert wf.wait(10) == 4
    # Retention deletes in batches: for a moment some steps are gone, the row is not.
    last = app.get_workflow(wf.id).steps[-1].job_id
    db.execute("DELETE FROM pgjobs.jobs WHERE id = %s", (last,))
    info = app.get_workflow(wf.id)
    assert info.status == "succeeded" and len(info.steps) == 2 and info.result() is None
    rows, _ = app.workflows()
    assert [(r.id, r.status, r.steps, r.ended) for r in rows] == [(wf.id, "succeeded", 2, 2)]
