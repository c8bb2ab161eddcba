"""A held xmin horizon is seen, and survived.

A transaction left open anywhere in the database keeps VACUUM from removing
the rows that claims and outcomes leave behind; the claim index then fills
with dead entries and keeps their size after the transaction ends. These
tests hold a snapshot open on a Postgres of their own (default settings,
autovacuum on) and show that the read of the horizon names the holder, that
the leader warns once and tells of the release, that /metrics, the API and
`pgjobs check` report it, and that after the release the leader's upkeep
vacuums the jobs table and rebuilds the claim index to its size before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import pgjobs
from pgjobs.maintenance import upkeep
from pgjobs.observe import horizon
from pgjobs.web import create_app
from tests.support.common import ROOT, count, migrated_database, wait_for
from tests.support.workers import WorkerProcess

HOLDER = "nightly-report"


@pytest.fixture
def cluster_db(private_cluster: Callable[..., Any]) -> str:
    """A migrated database on a Postgres of this test's own, with its default settings."""
    return migrated_database(private_cluster())


@contextmanager
def held_snapshot(url: str, application_name: str = HOLDER) -> Iterator[psycopg.Connection[Any]]:
    """A session holding a REPEATABLE READ snapshot open until the block ends."""
    with psycopg.connect(url, application_name=application_name) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT 1")  # takes the snapshot
        try:
            yield conn
        finally:
            conn.rollback()


def read(url: str, max_age: float) -> horizon.Horizon:
    with psycopg.connect(url, autocommit=True) as conn:
        return horizon.read(conn, max_age)


def test_a_held_snapshot_is_read_with_its_pid_application_name_and_age(cluster_db: str) -> None:
    with held_snapshot(cluster_db) as holder:
        pid = holder.info.backend_pid
        time.sleep(1.2)
        now = read(cluster_db, max_age=1.0)
        calm = read(cluster_db, max_age=60.0)
    [h] = now.holders
    assert (h.kind, h.pid, h.name, h.state) == ("session", pid, HOLDER, "idle in transaction")
    assert h.seconds is not None and 1.0 < h.seconds < 30
    assert h.query == "SELECT 1" and h.database == "pgjobs"
    assert now.held == [h] and now.is_held and now.age == h.seconds
    assert now.summary().startswith("xmin horizon held for 1.")
    assert f"by session pid {pid} (application_name '{HOLDER}', idle in transaction)" in (
        now.summary()
    )
    assert now.summary().endswith("(max 1s); see sql/inspect/xmin_horizon.sql")
    # Under its threshold, a holder is listed but not held.
    assert [x.pid for x in calm.holders] == [pid] and not calm.is_held
    assert re.fullmatch(r"ok: xmin horizon held for 1\.\ds at most \(max 60s\)", calm.summary())


def test_nothing_is_read_when_nothing_holds_the_horizon(cluster_db: str) -> None:
    with psycopg.connect(cluster_db, autocommit=True) as idle:
        idle.execute("SELECT count(*) FROM pgjobs.jobs")  # a session with no transaction open
        with psycopg.connect(cluster_db) as read_committed:
            read_committed.execute("SELECT 1")  # idle in transaction, but without a snapshot
            now = read(cluster_db, max_age=0.001)
    assert now.holders == () and not now.is_held
    assert (now.age, now.xmin_age) == (0.0, 0)
    assert now.summary() == "ok: nothing holds the xmin horizon (max 0s)"


def test_a_transaction_that_wrote_holds_the_horizon_between_its_statements(
    cluster_db: str,
) -> None:
    with psycopg.connect(cluster_db, application_name="writer") as writer:
        pid = writer.info.backend_pid
        writer.execute("INSERT INTO test_runs (job_id) VALUES (gen_random_uuid())")
        # Idle in transaction: no snapshot, but its transaction id holds the horizon.
        now = read(cluster_db, max_age=60.0)
        writer.rollback()
    assert [(h.pid, h.name) for h in now.holders] == [(pid, "writer")]
    assert read(cluster_db, max_age=60.0).holders == ()


def test_the_leader_warns_once_per_holder_and_tells_when_it_is_released(
    cluster_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    watch = horizon.Watch(max_age=0.5)

    async def look() -> horizon.Look:
        async with await psycopg.AsyncConnection.connect(cluster_db, autocommit=True) as conn:
            return await watch.run_once(conn)

    caplog.set_level(logging.INFO, logger="pgjobs.maintenance")
    with held_snapshot(cluster_db) as holder:
        pid = holder.info.backend_pid
        young = asyncio.run(look())
        time.sleep(0.7)
        looks = [asyncio.run(look()) for _ in range(3)]
        assert watch.is_held
    released = asyncio.run(look())
    assert not young.warned and not watch.is_held
    assert [len(x.warned) for x in looks] == [1, 0, 0]
    assert [h.pid for h in released.released] == [pid]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert re.match(
        rf"xmin horizon held for 0\.\ds \(\d+ transactions\) by session pid {pid}, "
        rf"application_name '{HOLDER}', idle in transaction for 0\.\ds, user postgres, "
        r"database pgjobs, query 'SELECT 1': VACUUM can remove no dead row of pgjobs' tables "
        rf"while it lasts, and claims slow down; end it \(pg_terminate_backend\({pid}\)\) or "
        r"let it finish; see sql/inspect/xmin_horizon.sql$",
        warnings[0],
    ), warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert [m for m in infos if "released" in m] == [
        f"xmin horizon released by session pid {pid} (application_name '{HOLDER}', "
        f"idle in transaction) after {looks[-1].horizon.held[0].held_for()} or more; "
        "VACUUM can remove dead rows again"
    ]


def test_an_invalid_index_left_by_an_interrupted_rebuild_is_dropped(cluster_db: str) -> None:
    with held_snapshot(cluster_db), psycopg.connect(cluster_db, autocommit=True) as conn:
        # The rebuild waits for the older snapshot to end, and runs out of time.
        conn.execute("SET statement_timeout = '500ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("REINDEX INDEX CONCURRENTLY pgjobs.jobs_claim_idx")
    left = "SELECT count(*) FROM pg_class WHERE relname LIKE 'jobs\\_claim\\_idx\\_ccnew%'"
    with psycopg.connect(cluster_db, autocommit=True) as conn:
        assert count(conn, left) == 1

    async def clean() -> list[str]:
        async with await psycopg.AsyncConnection.connect(cluster_db, autocommit=True) as conn:
            return await upkeep.drop_leftovers(conn)

    assert asyncio.run(clean()) == ["pgjobs.jobs_claim_idx_ccnew"]
    with psycopg.connect(cluster_db, autocommit=True) as conn:
        assert count(conn, left) == 0
        valid = "SELECT count(*) FROM pg_index WHERE indexrelid = 'pgjobs.jobs_claim_idx'::regclass"
        assert count(conn, valid + " AND indisvalid") == 1


def test_a_bloated_index_is_rebuilt_only_once_no_horizon_is_held(
    cluster_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(cluster_db, autocommit=True) as db:
        # 30,000 jobs through the claim index; their dead entries stay in its pages.
        db.execute(
            "INSERT INTO pgjobs.jobs (id, task, args)"
            " SELECT gen_random_uuid(), 'aadd', '[1, 2]' FROM generate_series(1, 30000)"
        )
        db.execute("UPDATE pgjobs.jobs SET status = 'running', worker_id = 'x'")
        db.execute("UPDATE pgjobs.jobs SET status = 'succeeded', worker_id = NULL")
        bloated = claim_index_size(db)
        keeper = upkeep.Upkeep(cluster_db, connect_timeout=5, interval=0, horizon_max_age=0.5)

        async def round_(held: bool) -> bool:
            async with await psycopg.AsyncConnection.connect(cluster_db, autocommit=True) as c:
                await keeper.tick(c, horizon_held=held)
            started = keeper.busy
            while keeper.busy:
                await asyncio.sleep(0.01)
            await keeper.stop()
            return started

        caplog.set_level(logging.INFO, logger="pgjobs.maintenance")
        keeper.reclaim_soon()
        with held_snapshot(cluster_db):
            time.sleep(0.7)
            # The leader's watch says it is held: no round at all.
            assert asyncio.run(round_(held=True)) is False
            # Started before the watch saw it: the round vacuums, and puts the rebuild off.
            assert asyncio.run(round_(held=False)) is True
            assert claim_index_size(db) == bloated
        assert asyncio.run(round_(held=False)) is True
        rebuilt = claim_index_size(db)
    messages = [r.getMessage() for r in caplog.records]
    put_off = [m for m in messages if "put off" in m]
    assert len(put_off) == 1, messages
    assert put_off[0].startswith("rebuild of pgjobs.jobs_claim_idx put off: xmin horizon held for")
    assert f"(application_name '{HOLDER}', idle in transaction)" in put_off[0]
    assert len([m for m in messages if m.startswith("vacuumed pgjobs.jobs after")]) == 2
    assert len([m for m in messages if m.startswith("rebuilt pgjobs.jobs_claim_idx")]) == 1
    assert bloated > 1_000_000 and rebuilt <= 16384, (bloated, rebuilt)


# -- a real worker through a held horizon ----------------------------------------------


def spawn(url: str, log_path: Path, *args: str) -> WorkerProcess:
    """A `pgjobs worker` process for tests.sample_app on `url`, started."""
    env = {**os.environ, "PGJOBS_URL": url, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgjobs", "worker", "tests.sample_app:app", *args],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    w = WorkerProcess(proc, log_path)
    wait_for(lambda: "started:" in w.log() or proc.poll() is not None, timeout=30)
    assert proc.poll() is None, w.log()
    return w


def claim_index_size(conn: psycopg.Connection[Any]) -> int:
    return count(conn, "SELECT pg_relation_size('pgjobs.jobs_claim_idx')")


def metric_samples(
    client: TestClient, headers: dict[str, str]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_a_held_horizon_is_named_everywhere_and_its_bloat_is_reclaimed_after_release(
    cluster_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = cluster_db
    monkeypatch.setenv(horizon.ENV, "2")  # the worker's, the web app's and the check's
    app = pgjobs.App(url)

    @app.task
    async def aadd(a: int, b: int) -> int:  # tests.sample_app's, by name
        return a + b

    worker = spawn(url, tmp_path / "worker.log", "--concurrency", "50")
    db = psycopg.connect(url, autocommit=True)

    def finished(n: int) -> bool:
        return count(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") >= n

    try:
        # The claim index's size in a steady queue, before any hold.
        aadd.enqueue_many([(n, 1) for n in range(2000)])
        wait_for(partial(finished, 2000), timeout=30)
        steady = claim_index_size(db)

        with held_snapshot(url) as holder:
            pid = holder.info.backend_pid
            # Some thousands of jobs through the worker meanwhile, a batch at a time.
            for start in range(2000, 24000, 2000):
                aadd.enqueue_many([(n, 1) for n in range(start, start + 2000)])
                wait_for(partial(finished, start), timeout=30)
            wait_for(partial(finished, 24000), timeout=30)
            wait_for(lambda: f"by session pid {pid}," in worker.log(), timeout=15)

            token = {"Authorization": "Bearer horizon-test"}
            with TestClient(create_app(pgjobs.App(url), token="horizon-test")) as client:
                samples = metric_samples(client, token)
                api = client.get("/api/horizon", headers=token).json()
            checked = subprocess.run(
                [sys.executable, "-m", "pgjobs", "check"],
                cwd=ROOT,
                env={**os.environ, "PGJOBS_URL": url},
                capture_output=True,
                text=True,
                timeout=60,
            )
            bloated = claim_index_size(db)

        wait_for(lambda: claim_index_size(db) < 2 * steady, timeout=30, interval=0.2)
        wait_for(lambda: "rebuilt pgjobs.jobs_claim_idx" in worker.log(), timeout=5)
        log = worker.log()
    finally:
        db.close()
        worker.stop()
        app.close()

    # The leader's one warning names the holder, and points to the inspection query.
    held = [line for line in log.splitlines() if "xmin horizon held" in line]
    assert len(held) == 1, log
    assert f"by session pid {pid}, application_name '{HOLDER}', idle in transaction" in held[0]
    assert "query 'SELECT 1'" in held[0] and held[0].endswith("see sql/inspect/xmin_horizon.sql")
    assert "WARNING" in held[0]
    assert f"xmin horizon released by session pid {pid}" in log

    # /metrics and the API show the age and the holder.
    assert samples[("pgjobs_xmin_horizon_age_seconds", ())] > 2
    assert samples[("pgjobs_xmin_horizon_held", ())] == 1
    assert samples[("pgjobs_xmin_horizon_threshold_seconds", ())] == 2
    label = (
        ("kind", "session"),
        ("name", HOLDER),
        ("pid", str(pid)),
        ("state", "idle in transaction"),
    )
    assert samples[("pgjobs_xmin_horizon_holder_age_seconds", label)] > 2
    assert api["held"] is True and api["max_age"] == 2
    assert [(h["pid"], h["name"], h["held"]) for h in api["holders"] if h["held"]] == [
        (pid, HOLDER, True)
    ]
    assert f"session pid {pid} (application_name '{HOLDER}'" in api["message"]

    # `pgjobs check` fails with one line naming the holder.
    assert checked.returncode == 1, checked
    assert re.fullmatch(
        rf"pgjobs check: xmin horizon held for \d+(\.\d)?s \(\d+ transactions\) "
        rf"by session pid {pid} \(application_name '{HOLDER}', idle in transaction\) \(max 2s\); "
        r"see sql/inspect/xmin_horizon.sql\n",
        checked.stderr,
    ), checked.stderr

    # The hold bloated the claim index; after it, the leader vacuumed the table and rebuilt
    # the index, and the test did neither.
    assert bloated > 4 * steady, (bloated, steady)
    assert "vacuumed pgjobs.jobs after the xmin horizon's release" in log
    assert "rebuilt pgjobs.jobs_claim_idx (REINDEX CONCURRENTLY)" in log


def test_the_dashboard_shows_a_banner_naming_the_holder_until_it_lets_go(
    cluster_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.support.web import CHROMIUM, serving

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it", pytrace=False)
    monkeypatch.setenv(horizon.ENV, "1")
    with (
        serving("tests.sample_app:app", cluster_db, tmp_path / "web.log") as base,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/#/queues")
            banner = page.locator('[data-testid="horizon-banner"]')
            expect(banner).to_be_hidden()
            with held_snapshot(cluster_db) as holder:
                pid = holder.info.backend_pid
                expect(banner).to_be_visible(timeout=15_000)
                expect(banner).to_contain_text(
                    f"by session pid {pid} (application_name '{HOLDER}', idle in transaction)"
                )
                expect(banner).to_contain_text("see sql/inspect/xmin_horizon.sql")
            expect(banner).to_be_hidden(timeout=15_000)
            assert not errors, errors
        finally:
            browser.close()


#: What the claim-cost test's cluster loads: pg_stat_statements counts each statement's buffers.
STATEMENT_STATS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
}


def claim_buffers(conn: psycopg.Connection[Any]) -> int:
    """Shared buffers read or hit so far by the statements that claim (they lock SKIP LOCKED)."""
    return count(
        conn,
        "SELECT coalesce(sum(shared_blks_hit + shared_blks_read), 0)::bigint"
        " FROM pg_stat_statements WHERE query LIKE '%SKIP LOCKED%'",
    )


def test_the_claims_buffers_per_job_stay_flat_while_a_snapshot_is_held(
    private_cluster: Callable[..., Any], tmp_path: Path
) -> None:
    """Each job claimed under a held snapshot leaves a claim index entry nobody may remove; a
    claim that walked them from the front of the queue would read more buffers per job with
    every job claimed since the snapshot began. 150 jobs/s for 75 s, the snapshot held from
    the 10th second on: the buffers per job of the last 10 s must be those of the first."""
    rate, run, hold_from, window = 150, 75.0, 10.0, 10.0
    url = migrated_database(private_cluster(STATEMENT_STATS))
    app = pgjobs.App(url)

    @app.task
    async def aadd(a: int, b: int) -> int:  # tests.sample_app's, by name
        return a + b

    db = psycopg.connect(url, autocommit=True)
    db.execute("CREATE EXTENSION pg_stat_statements")
    worker = spawn(url, tmp_path / "worker.log", "--concurrency", "50")
    samples: list[tuple[float, int, int]] = []  # (t, jobs succeeded, claim buffers)
    succeeded = "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'"
    sent = 0
    try:
        with contextlib.ExitStack() as stack:
            held = False
            start = time.monotonic()
            next_sample = hold_from
            while (t := time.monotonic() - start) < run:
                if t >= hold_from and not held:
                    stack.enter_context(held_snapshot(url))
                    held = True
                if t >= next_sample:
                    samples.append((t, count(db, succeeded), claim_buffers(db)))
                    next_sample += window
                due = start + sent / rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                aadd.enqueue(sent, 1)
                sent += 1
            # Still held: the last jobs run under the snapshot too.
            wait_for(lambda: count(db, succeeded) == sent, timeout=30)
            dead = count(
                db,
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'pgjobs.jobs'::regclass",
            )
        log = worker.log()
    finally:
        worker.stop()
        db.close()
        app.close()

    per_job = [
        (b1 - b0) / (n1 - n0) for (_, n0, b0), (_, n1, b1) in itertools.pairwise(samples) if n1 > n0
    ]
    assert len(per_job) >= 5, samples
    # The worker kept up: every window ran about what was offered in it.
    ran = [n1 - n0 for (_, n0, _), (_, n1, _) in itertools.pairwise(samples)]
    assert min(ran) > 0.8 * rate * window, ran
    # Thousands of dead rows nobody could remove (the statistics count them late: a floor).
    assert dead > 2000, dead
    # The worker saw the hold and claimed past the dead entries; measured: 25 buffers per job
    # in the first window and 28 in the last, where claims from the front went 82 -> 714.
    assert "claims read past the jobs claimed" in log, log[-2000:]
    first, last = per_job[0], max(per_job[-2:])
    assert last < 2 * first + 10, (per_job, log[-2000:])


def test_a_worker_that_may_not_read_the_horizon_says_so_once_and_claims_from_the_front(
    private_cluster: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    cluster = private_cluster()
    url = migrated_database(cluster)
    # A role that may run jobs but not read one of the views the horizon's statement reads
    # (a locked-down server): this database's copy of the catalog only.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE pgjobs_runner LOGIN")
        conn.execute("GRANT USAGE ON SCHEMA pgjobs TO pgjobs_runner")
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA pgjobs TO pgjobs_runner")
        conn.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA pgjobs TO pgjobs_runner")
        conn.execute("REVOKE SELECT ON pg_catalog.pg_prepared_xacts FROM PUBLIC")
    app = pgjobs.App(url.replace("postgres@", "pgjobs_runner@"))

    @app.task
    async def aadd(a: int, b: int) -> int:
        return a + b

    try:
        aadd.enqueue_many([(n, 1) for n in range(50)])
        with caplog.at_level(logging.WARNING, logger="pgjobs.worker"):
            worker = pgjobs.Worker(app, burst=True, vacuum=False)
            worker.run(install_signal_handlers=False)
            aadd.enqueue_many([(n, 1) for n in range(50)])
            worker = pgjobs.Worker(app, burst=True, vacuum=False)
            worker.run(install_signal_handlers=False)
    finally:
        app.close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert count(conn, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 100
    said = [r.getMessage() for r in caplog.records if "xmin horizon" in r.getMessage()]
    assert len(said) == 2, said  # once per worker
    assert "cannot read the xmin horizon (InsufficientPrivilege: permission denied" in said[0]
    assert said[0].endswith("claims read every queue from the front")
