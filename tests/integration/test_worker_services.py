"""The worker's services one pass at a time (run_once), on a real database, without their loops."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import click
import psycopg
import pytest

from pgjobs import ConfigurationError, Worker
from pgjobs.cli import worker as worker_command
from pgjobs.worker.config import SETTINGS, WorkerConfig, default_text
from pgjobs.worker.notifier import CANCEL_CHANNEL, CHANNEL
from tests import sample_app
from tests.support.common import count

RUNNING = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'"


def with_worker(scenario: Callable[[Worker], Awaitable[None]], **settings: Any) -> Worker:
    """Run `scenario` with a Worker whose pool is open and whose loops are not running."""
    worker = Worker(sample_app.app, **settings)

    async def run() -> None:
        await worker.pool.open(wait=True)
        try:
            await scenario(worker)
        finally:
            worker.running.abandon(worker.running.attempts.values(), "the test is over")
            await asyncio.gather(*worker.running.tasks(), return_exceptions=True)
            await worker.pool.close()
            worker.executor.shutdown()

    asyncio.run(run())
    return worker


def test_the_producer_claims_only_for_a_registered_worker_and_only_its_free_slots(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    sample_app.aadd.enqueue_many([(i, i) for i in range(10)])

    async def scenario(worker: Worker) -> None:
        producer = worker.producer
        # No row in pgjobs.workers yet: the claim is fenced by it.
        assert await producer.run_once() == 0
        assert count(db, RUNNING) == 0
        await worker.lease.register()
        assert await producer.run_once() == 4
        assert producer.backlog  # a full claim: more may be waiting
        mine = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running' AND worker_id = %s"
        assert db.execute(mine, (worker.id,)).fetchone() == (4,)
        await asyncio.gather(*worker.running.tasks())
        # The functions returned, but a slot is free only once its outcome is recorded.
        assert worker.outcomes.unrecorded() == 4
        assert producer.free() == 0
        assert await producer.run_once() == 0
        # A batch of two outcomes, written with a claim of the two slots it frees.
        assert await worker.completer.run_once()
        assert count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 2
        assert count(db, RUNNING) == 4
        assert len(worker.running.attempts) == 2

    with_worker(scenario, concurrency=4)


def test_a_heartbeat_that_finds_the_row_gone_stops_the_runs_and_registers_again(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    sample_app.asleep.enqueue(30)

    async def scenario(worker: Worker) -> None:
        await worker.lease.register()
        assert await worker.producer.run_once() == 1
        (attempt,) = worker.running.attempts.values()
        worker.producer.reconcile_due = float("inf")
        # What the rescuer does to a worker it takes for dead, as far as the row goes.
        db.execute("DELETE FROM pgjobs.workers WHERE id = %s", (worker.id,))
        await worker.lease.run_once()
        assert attempt.lease_lost  # it must not run on: others may claim its job now
        assert worker.lease.registered
        assert count(db, "SELECT count(*) FROM pgjobs.workers") == 1
        assert worker.producer.reconcile_due == 0.0  # compare with the database before claiming

    with_worker(scenario)


def test_progress_writes_the_latest_report_of_each_running_job_once(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    job = sample_app.asleep.enqueue(30)

    async def scenario(worker: Worker) -> None:
        await worker.lease.register()
        assert await worker.producer.run_once() == 1
        progress = worker.progress
        progress.report(job.id, json.dumps({"step": 1}))
        progress.report(job.id, json.dumps({"step": 2}))
        progress.report(uuid.uuid4(), json.dumps({"step": 9}))  # not running here
        assert await progress.run_once() == 1
        assert await progress.run_once() == 0  # written: nothing new to send
        row = db.execute("SELECT progress FROM pgjobs.jobs WHERE id = %s", (job.id,)).fetchone()
        assert row == ({"step": 2},)

    with_worker(scenario)


def test_the_notifier_wakes_for_served_queues_and_passes_cancellations_on() -> None:
    woken: list[bool] = []
    cancelled: list[uuid.UUID] = []
    worker = Worker(sample_app.app, queues=["emails", "default"])
    notifier = worker.notifier
    notifier.on_job = lambda: woken.append(True)
    notifier.on_cancel = cancelled.append
    notifier.handle(CHANNEL, "reports")  # a queue this worker does not serve
    assert woken == []
    notifier.handle(CHANNEL, "emails")
    assert woken == [True]
    job_id = uuid.uuid4()
    notifier.handle(CANCEL_CHANNEL, str(job_id))
    notifier.handle(CANCEL_CHANNEL, "not a job id")
    assert cancelled == [job_id]
    worker.executor.shutdown()


def test_each_worker_option_is_made_from_the_setting_it_sets() -> None:
    params = {p.name: p for p in worker_command.params if isinstance(p, click.Option)}
    for setting in SETTINGS:
        if setting.option is None:
            assert setting.name not in params
            continue
        param = params[setting.name]
        assert setting.option in param.opts + param.secondary_opts
        assert param.help == setting.help
        if setting.default is not None and setting.kind != "flag":
            assert param.default == default_text(setting)
        if setting.minimum is not None and setting.kind == "count":
            assert isinstance(param.type, click.IntRange)
            assert param.type.min == setting.minimum
        elif setting.minimum is not None:
            assert getattr(param.type, "minimum", None) == setting.minimum


def test_worker_settings_are_checked_against_their_definition() -> None:
    config = WorkerConfig.make(processes=4, concurrency=2)
    assert config.concurrency == 4  # a slot for each child process
    assert config.max_stuck_threads == 2  # half the concurrency, by default
    assert WorkerConfig.make(keep_succeeded=None).keep_succeeded is None  # forever
    with pytest.raises(ConfigurationError, match="concurrency must be at least 1, got 0"):
        WorkerConfig.make(concurrency=0)
    with pytest.raises(ConfigurationError, match="keep_failed must be at least 0 seconds"):
        WorkerConfig.make(keep_failed=-1)
    with pytest.raises(ConfigurationError, match="at least twice heartbeat_interval"):
        WorkerConfig.make(lease_ttl=1, heartbeat_interval=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'concurency'"):
        Worker(sample_app.app, concurency=3)
