"""The web API against a real database: every endpoint, every error status, and its guard."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import pgjobs
from pgjobs.observe.health import Threshold
from pgjobs.web import create_app, router
from tests import sample_app
from tests.support.common import ROOT, count, migrated_database, wait_for
from tests.support.netcut import NetCut
from tests.support.workers import WorkerProcess

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# A request straight from this machine, as a browser or curl on it sends one.
LOOPBACK: dict[str, Any] = {"base_url": "http://127.0.0.1:8000", "client": ("127.0.0.1", 50000)}


@pytest.fixture
def client(app: pgjobs.App) -> Iterator[TestClient]:
    """The API with a token, in this process, on this run's database."""
    with TestClient(create_app(app, token=TOKEN, metrics_lag=0.0)) as c:
        yield c


def jobs_in(db: psycopg.Connection[Any]) -> int:
    return count(db)


def status_of(db: psycopg.Connection[Any], job_id: str) -> str:
    row = db.execute("SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def post(client: TestClient, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    return client.post(path, json=body, headers={**AUTH, **kw.pop("headers", {})}, **kw)


def run_burst(spawn_worker: Callable[..., WorkerProcess]) -> None:
    """Run every ready job of the default queue with a real worker, then return."""
    w = spawn_worker("--burst", "--concurrency", "4", wait=False)
    assert w.wait(60) == 0, w.log()


# -- POST /api/jobs -------------------------------------------------------------------


def test_enqueue_answers_202_with_location_and_poll_url(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    r = post(client, "/api/jobs", {"task": "add", "args": [2, 3], "queue": "default"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending" and body["is_terminal"] is False
    assert r.headers["location"] == body["poll_url"] == f"/api/jobs/{body['job_id']}"
    assert body["deduplicated"] is False
    assert status_of(db, body["job_id"]) == "pending"
    # The poll URL answers with the seed's status shape.
    polled = client.get(body["poll_url"]).json()
    assert set(polled) == {
        "job_id", "task", "queue", "status", "attempts", "created_at", "started_at",
        "completed_at", "result", "error", "progress", "is_terminal",
    }  # fmt: skip


def test_enqueue_options_delay_priority_and_dedup(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    first = post(client, "/api/jobs", {"task": "add", "args": [1, 1], "delay": 60, "priority": 5,
                                       "dedup_key": "k1", "dedup_window": 30})  # fmt: skip
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "scheduled"
    again = post(client, "/api/jobs", {"task": "add", "args": [1, 1], "dedup_key": "k1"})
    assert again.status_code == 202
    assert again.json()["deduplicated"] is True
    assert again.json()["job_id"] == first.json()["job_id"]
    row = db.execute(
        "SELECT priority, run_at > now() + interval '50 s' FROM pgjobs.jobs"
    ).fetchall()
    assert row == [(5, True)]


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({"task": "add", "args": [1, "x"]}, ["body", "args", "b"], "valid integer"),
        ({"task": "add", "args": [1], "kwargs": {"b": "x"}}, ["body", "kwargs", "b"], "integer"),
        ({"task": "add", "args": [1, 2, 3]}, ["body"], "too many positional"),
        ({"task": "add", "args": [1, 2], "priority": 40000}, ["body", "priority"], "32767"),
        ({"task": "add", "args": [1, 2], "delay": -1}, ["body", "delay"], "greater than"),
        ({"task": "add", "args": [1, 2], "delay": 1e300}, ["body", "delay"], "less than"),
        ({"task": "add", "args": [1, 2], "queue": ""}, ["body", "queue"], "at least 1"),
        ({"task": "add", "args": [1, 2], "queue": "a\u0000"}, ["body", "queue"], "NUL"),
        ({"task": "store", "args": [{"a": "\u0000"}]}, ["body"], "NUL character"),
        ({"task": "add", "args": [1, 2], "bogus": 1}, ["body", "bogus"], "Extra inputs"),
        ({"args": [1, 2]}, ["body", "task"], "Field required"),
        ({"task": "add", "args": {"a": 1}}, ["body", "args"], "valid list"),
        ({"task": "add", "args": [1, 2], "dedup_window": 5}, ["body", "dedup_window"], "needs"),
    ],
)
def test_enqueue_refuses_bad_input_with_422_naming_the_field(
    client: TestClient, db: psycopg.Connection[Any], body: Any, loc: list[Any], fragment: str
) -> None:
    r = post(client, "/api/jobs", body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["loc"][: len(loc)] == loc and fragment in e["msg"] for e in errors), errors
    assert jobs_in(db) == 0


def test_enqueue_refuses_malformed_json_and_oversized_arguments(
    client: TestClient, db: psycopg.Connection[Any], app: pgjobs.App
) -> None:
    r = client.post(
        "/api/jobs", content=b'{"task": "add", "args": [1,', headers={**AUTH,
        "content-type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 422 and "JSON decode error" in r.text
    big = {"task": "store", "args": [{"blob": "x" * (app.max_payload_bytes + 10)}]}
    r = post(client, "/api/jobs", big)
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "payload_too_large"
    assert "over the limit" in r.json()["detail"][0]["msg"]
    assert jobs_in(db) == 0


def test_enqueue_of_an_unknown_task_is_404_and_runs_nothing(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    r = post(client, "/api/jobs", {"task": "os.system", "args": ["rm -rf /"]})
    assert r.status_code == 404
    assert "no task named 'os.system' is registered" in r.json()["detail"]
    assert jobs_in(db) == 0


# -- GET /api/jobs/{id} ---------------------------------------------------------------


def test_status_shows_result_only_when_succeeded_and_error_only_when_failed(
    client: TestClient, app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    ok = sample_app.add.enqueue(20, 22)
    bad = sample_app.fail.enqueue("boom")
    pending = client.get(f"/api/jobs/{ok.id}").json()
    assert pending["result"] is None and pending["completed_at"] is None
    run_burst(spawn_worker)
    done = client.get(f"/api/jobs/{ok.id}").json()
    assert done["status"] == "succeeded" and done["is_terminal"] is True
    assert done["result"] == 42 and done["error"] is None
    assert done["started_at"] is not None and done["completed_at"] >= done["started_at"]
    failed = client.get(f"/api/jobs/{bad.id}").json()
    assert failed["status"] == "failed" and failed["result"] is None
    assert failed["error"]["type"] == "ValueError" and failed["error"]["message"] == "boom"


def test_status_of_unknown_and_malformed_ids(client: TestClient) -> None:
    missing = uuid.uuid4()
    r = client.get(f"/api/jobs/{missing}")
    assert r.status_code == 404 and str(missing) in r.json()["detail"]
    r = client.get("/api/jobs/not-a-uuid")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "job_id"]


def test_detail_has_arguments_traceback_and_attempt_timeline(
    client: TestClient, app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    job = sample_app.flaky.enqueue(1)  # fails once, then succeeds
    bad = sample_app.fail.enqueue("kaput")
    spawn_worker("--concurrency", "2")  # not --burst: the retry waits for its backoff
    wait_for(lambda: client.get(f"/api/jobs/{job.id}").json()["is_terminal"])
    d = client.get(f"/api/jobs/{job.id}/detail").json()
    assert d["args"] == [1] and d["status"] == "succeeded" and d["result"] == 2
    assert [a["outcome"] for a in d["attempt_log"]] == ["failed", "succeeded"]
    assert all(a["duration"] >= 0 and a["worker_id"] for a in d["attempt_log"])
    f = client.get(f"/api/jobs/{bad.id}/detail").json()
    assert f["dead_letter"] is True
    assert "ValueError: kaput" in f["error"]["traceback"]
    assert f["attempt_log"][0]["error"]["type"] == "ValueError"
    assert client.get(f"/api/jobs/{uuid.uuid4()}/detail").status_code == 404


# -- GET /api/jobs --------------------------------------------------------------------


def test_list_filters_and_pages_through_everything_once(
    client: TestClient, app: pgjobs.App
) -> None:
    made = {str(j.id) for j in sample_app.add.enqueue_many([(i, i) for i in range(25)])}
    other = sample_app.elsewhere.enqueue()
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"task": "add", "limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/jobs", params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25 and set(seen) == made
    assert seen == sorted(seen, reverse=True)  # newest first
    by_queue = client.get("/api/jobs", params={"queue": "other"}).json()["jobs"]
    assert [j["id"] for j in by_queue] == [str(other.id)]
    assert client.get("/api/jobs", params={"status": "failed"}).json()["jobs"] == []
    # A page that ends exactly at the last job says so: no cursor to an empty page.
    first = client.get("/api/jobs", params={"task": "add", "limit": 20}).json()
    last = client.get("/api/jobs", params={"task": "add", "limit": 5,
                                           "cursor": first["next_cursor"]}).json()  # fmt: skip
    assert len(last["jobs"]) == 5 and last["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [{"status": "exploded"}, {"limit": 0}, {"limit": 5000}, {"cursor": "zz"}, {"queue": "a\x00"}],
)
def test_list_refuses_bad_filters(client: TestClient, params: dict[str, Any]) -> None:
    r = client.get("/api/jobs", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["query", next(iter(params))]


# -- cancel and replay ----------------------------------------------------------------


def test_cancel_a_waiting_job_and_refuse_a_finished_one(
    client: TestClient, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    waiting = sample_app.add.options(delay=60).enqueue(1, 2)
    r = post(client, f"/api/jobs/{waiting.id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert status_of(db, str(waiting.id)) == "cancelled"
    done = sample_app.add.enqueue(1, 2)
    run_burst(spawn_worker)
    r = post(client, f"/api/jobs/{done.id}/cancel")
    assert r.status_code == 409 and "already succeeded" in r.json()["detail"]
    assert status_of(db, str(done.id)) == "succeeded"
    assert post(client, f"/api/jobs/{uuid.uuid4()}/cancel").status_code == 404


def test_cancel_a_running_job_stops_it(
    client: TestClient, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    spawn_worker("--concurrency", "2")
    job = sample_app.cancellable_async.enqueue(30)
    wait_for(lambda: status_of(db, str(job.id)) == "running")
    r = post(client, f"/api/jobs/{job.id}/cancel")
    assert r.status_code == 200
    wait_for(lambda: status_of(db, str(job.id)) == "cancelled", timeout=15)


def test_replay_a_dead_letter_and_refuse_what_cannot_replay(
    client: TestClient, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    bad = sample_app.fail.enqueue("once")
    ok = sample_app.add.enqueue(1, 1)
    run_burst(spawn_worker)
    r = post(client, f"/api/jobs/{bad.id}/replay")
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0
    r = post(client, f"/api/jobs/{ok.id}/replay")
    assert r.status_code == 409 and "only failed or cancelled" in r.json()["detail"]
    assert post(client, f"/api/jobs/{uuid.uuid4()}/replay").status_code == 404


def test_replay_never_reruns_a_task_this_api_does_not_know(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    ghost = uuid.uuid4()
    db.execute(
        "INSERT INTO pgjobs.jobs (id, task, status, finished_at) VALUES (%s, 'ghost', 'failed', "
        "now())",
        (ghost,),
    )
    r = post(client, f"/api/jobs/{ghost}/replay")
    assert r.status_code == 409 and "'ghost' is not registered" in r.json()["detail"]
    assert status_of(db, str(ghost)) == "failed"


# -- queues, workers, stats -----------------------------------------------------------


def serve(db: psycopg.Connection[Any], *queues: str, lease_ago: float = 0.0) -> None:
    """A worker row serving `queues`, its heartbeat `lease_ago` seconds past its 30 s lease."""
    db.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, heartbeat_at)"
        " VALUES (%s, 'test', 1, %s, 1, now() - make_interval(secs => %s))",
        (
            f"serves-{'-'.join(queues)}-{lease_ago}",
            list(queues),
            30 + lease_ago if lease_ago else 0,
        ),
    )


def test_queues_show_depth_age_and_thresholds(
    client: TestClient, app: pgjobs.App, db: psycopg.Connection[Any]
) -> None:
    sample_app.add.enqueue_many([(i, i) for i in range(3)])
    sample_app.add.options(delay=60).enqueue(0, 0)
    sample_app.elsewhere.enqueue()
    serve(db, "default", "other")
    app.thresholds = {"default": Threshold(max_depth=3), "*": Threshold(max_age=3600)}
    try:
        queues = {q["queue"]: q for q in client.get("/api/queues").json()}
    finally:
        app.thresholds = {}
    d = queues["default"]
    assert d["counts"] == {"pending": 3, "scheduled": 1} and d["depth"] == 4
    assert d["oldest_pending_age"] >= 0 and d["max_depth"] == 3 and d["healthy"] is False
    o = queues["other"]
    assert o["depth"] == 1 and o["max_age"] == 3600 and o["healthy"] is True
    assert o["workers"] == 1 and o["unserved"] is False


def test_a_queue_with_pending_jobs_and_no_live_worker_is_flagged_not_healthy(
    client: TestClient, db: psycopg.Connection[Any]
) -> None:
    sample_app.add.enqueue(1, 1)  # default: served
    sample_app.elsewhere.enqueue()  # other: its only worker is past its lease
    sample_app.arecord.options(delay=600).enqueue(1)  # fast: waits, but none is ready yet
    serve(db, "default")
    serve(db, "other", lease_ago=5)
    queues = {q["queue"]: q for q in client.get("/api/queues").json()}
    assert {q: (v["unserved"], v["healthy"], v["workers"]) for q, v in queues.items()} == {
        "default": (False, True, 1),
        "other": (True, False, 0),
        "fast": (False, True, 0),
    }
    m = metrics(client)
    assert m[("pgjobs_queue_unserved", (("queue", "other"),))] == 1
    assert m[("pgjobs_queue_unserved", (("queue", "default"),))] == 0
    assert m[("pgjobs_queue_unserved", (("queue", "fast"),))] == 0
    serve(db, "fast", "other")
    assert all(q["healthy"] for q in client.get("/api/queues").json())
    assert metrics(client)[("pgjobs_queue_unserved", (("queue", "other"),))] == 0


def test_workers_and_finished_series(
    client: TestClient, spawn_worker: Callable[..., WorkerProcess], db: psycopg.Connection[Any]
) -> None:
    w = spawn_worker("--concurrency", "3")
    sample_app.add.enqueue_many([(i, i) for i in range(5)])
    sample_app.fail.enqueue("x")
    wait_for(lambda: count(db, "SELECT count(*) FROM pgjobs.jobs WHERE finished_at IS NULL") == 0)
    workers = client.get("/api/workers").json()
    assert [x["pid"] for x in workers] == [w.proc.pid]
    assert workers[0]["concurrency"] == 3 and workers[0]["heartbeat_age"] < 30
    series = client.get("/api/stats/finished", params={"window": 600, "step": 60}).json()
    assert sum(p["succeeded"] for p in series) == 5
    assert sum(p["failed"] for p in series) == 1
    assert client.get("/api/stats/finished", params={"window": 60, "step": 600}).status_code == 422


def test_tasks_lists_what_the_api_may_enqueue(client: TestClient, app: pgjobs.App) -> None:
    tasks = {t["name"]: t for t in client.get("/api/tasks").json()}
    assert set(tasks) == set(app.tasks)
    assert tasks["flaky"]["max_attempts"] == 3 and tasks["flaky"]["doc"].startswith("Fails its")
    assert tasks["arecord"]["queue"] == "fast" and tasks["arecord"]["is_async"] is True


# -- dead letters ---------------------------------------------------------------------


def test_dead_letters_list_replay_and_purge(
    client: TestClient, db: psycopg.Connection[Any], spawn_worker: Callable[..., WorkerProcess]
) -> None:
    a, b, c = (sample_app.fail.enqueue(f"n{i}") for i in range(3))
    ok = sample_app.add.enqueue(1, 1)
    run_burst(spawn_worker)
    page = client.get("/api/dead-letters", params={"task": "fail"}).json()
    assert {d["job_id"] for d in page["dead_letters"]} == {str(a.id), str(b.id), str(c.id)}
    assert page["next_cursor"] is None
    two = client.get("/api/dead-letters", params={"limit": 2}).json()
    assert len(two["dead_letters"]) == 2 and two["next_cursor"] == two["dead_letters"][1]["job_id"]
    rest = client.get("/api/dead-letters", params={"limit": 2, "cursor": two["next_cursor"]}).json()
    assert len(rest["dead_letters"]) == 1 and rest["next_cursor"] is None
    assert page["dead_letters"][0]["error"]["type"] == "ValueError"
    # All or nothing: one id that cannot replay keeps the others where they are.
    r = post(client, "/api/dead-letters/replay", {"ids": [str(a.id), str(ok.id)]})
    assert r.status_code == 409
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 3
    r = post(client, "/api/dead-letters/replay", {"ids": [str(a.id)]})
    assert r.json() == {"count": 1, "ids": [str(a.id)]}
    # A purge with no scope is refused rather than taken as "everything".
    r = post(client, "/api/dead-letters/purge", {})
    assert r.status_code == 422 and "needs a filter" in r.text
    r = post(client, "/api/dead-letters/purge", {"ids": [str(b.id)]})
    assert r.json()["count"] == 1
    r = post(client, "/api/dead-letters/purge", {"everything": True})
    assert r.json()["count"] == 1
    assert count(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0
    assert status_of(db, str(c.id)) == "failed"  # purging forgets the letter, not the job
    assert client.get("/api/dead-letters", params={"limit": 0}).status_code == 422


# -- health and metrics ---------------------------------------------------------------


def test_healthz_ok_and_unavailable(db_url: str) -> None:
    with TestClient(create_app(pgjobs.App(db_url)), **LOOPBACK) as c:
        assert c.get("/healthz").json() == {"status": "ok", "database": "ok"}
    dead = pgjobs.App("postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout=1)
    with TestClient(create_app(dead), **LOOPBACK) as c:
        r = c.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        assert "127.0.0.1" in r.json()["database"] or "connect" in r.json()["database"]


def metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_depth_matches_the_sql_view(
    client: TestClient, db: psycopg.Connection[Any], app: pgjobs.App
) -> None:
    sample_app.add.enqueue_many([(i, i) for i in range(7)])
    sample_app.add.options(delay=60).enqueue(1, 1)
    sample_app.elsewhere.enqueue()
    app.thresholds = {"default": Threshold(max_depth=5, max_age=3600)}
    try:
        m = metrics(client)
    finally:
        app.thresholds = {}
    view = db.execute("SELECT queue, status, jobs FROM pgjobs.queue_depth").fetchall()
    assert view, "the view is empty"
    for queue, status, n in view:
        assert m[("pgjobs_queue_jobs", (("queue", queue), ("status", status)))] == n
    assert m[("pgjobs_queue_depth", (("queue", "default"),))] == 8
    assert m[("pgjobs_queue_threshold_exceeded", (("limit", "depth"), ("queue", "default")))] == 1
    assert m[("pgjobs_queue_threshold_exceeded", (("limit", "age"), ("queue", "default")))] == 0
    assert m[("pgjobs_workers_alive", ())] == 0


def test_metrics_count_finished_jobs_once_with_histograms(
    client: TestClient, spawn_worker: Callable[..., WorkerProcess], db: psycopg.Connection[Any]
) -> None:
    metrics(client)  # the first scrape sets where counting starts
    w = spawn_worker("--concurrency", "4")
    sample_app.add.enqueue_many([(i, i) for i in range(6)])
    sample_app.fail.enqueue("m")
    wait_for(lambda: count(db, "SELECT count(*) FROM pgjobs.jobs WHERE finished_at IS NULL") == 0)
    time.sleep(0.05)
    first = metrics(client)
    second = metrics(client)  # a second scrape counts nothing twice
    for m in (first, second):
        key = (("outcome", "succeeded"), ("queue", "default"), ("task", "add"))
        assert m[("pgjobs_jobs_finished_total", key)] == 6
        key = (("outcome", "failed"), ("queue", "default"), ("task", "fail"))
        assert m[("pgjobs_jobs_finished_total", key)] == 1
        labels = (("queue", "default"), ("task", "add"))
        assert m[("pgjobs_job_run_seconds_count", labels)] == 6
        assert m[("pgjobs_job_wait_seconds_count", labels)] == 6
        assert m[("pgjobs_job_run_seconds_bucket", (("le", "+Inf"), *labels))] == 6
        assert m[("pgjobs_workers_alive", ())] == 1
    assert w.proc.poll() is None


# -- the guard ------------------------------------------------------------------------


WRITES = [
    ("/api/jobs", {"task": "add", "args": [1, 2]}),
    # Fixed ids: parallel runs of the suite must collect the same test names.
    ("/api/jobs/01a24f00-0000-7000-8000-000000000001/cancel", None),
    ("/api/jobs/01a24f00-0000-7000-8000-000000000002/replay", None),
    ("/api/dead-letters/replay", {"everything": True}),
    ("/api/dead-letters/purge", {"everything": True}),
]


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_writes_without_or_with_a_wrong_token_get_401(
    client: TestClient, db: psycopg.Connection[Any], path: str, body: Any
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in r.json()["detail"]
    r = client.post(path, json=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    assert jobs_in(db) == 0
    assert client.get("/api/jobs").status_code == 200  # reads stay open by default


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_origin_writes_are_refused_even_with_the_token(
    client: TestClient, db: psycopg.Connection[Any], headers: dict[str, str]
) -> None:
    r = post(client, "/api/jobs", {"task": "add", "args": [1, 2]}, headers=headers)
    assert r.status_code == 403 and "may not change jobs" in r.json()["detail"]
    assert jobs_in(db) == 0
    ours = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    same = post(client, "/api/jobs", {"task": "add", "args": [1, 2]}, headers=ours)
    assert same.status_code == 202


def test_protected_reads_need_the_token(app: pgjobs.App) -> None:
    with TestClient(create_app(app, token=TOKEN, protect_reads=True)) as c:
        reads = ("/api/jobs", "/api/queues", "/api/tasks", "/api/dead-letters", "/metrics")
        for path in reads:
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=AUTH).status_code == 200, path
        # The page holds no data (it asks for the token itself) and probes send none.
        assert "<html" in c.get("/").text.lower()
        assert c.get("/healthz").json() == {"status": "ok", "database": "ok"}
    dead = pgjobs.App("postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout=1)
    with TestClient(create_app(dead, token=TOKEN, protect_reads=True)) as c:
        # An anonymous probe learns that the database is down, not where it is.
        assert c.get("/healthz").json() == {"status": "unavailable", "database": "unreachable"}


def dead_letter(db: psycopg.Connection[Any]) -> uuid.UUID:
    """A job that failed for good, with its dead letter."""
    job_id = uuid.uuid4()
    db.execute(
        "INSERT INTO pgjobs.jobs (id, task, status, finished_at)"
        " VALUES (%s, 'fail', 'failed', now())",
        (job_id,),
    )
    db.execute(
        "INSERT INTO pgjobs.dead_letters (job_id, task, queue, args, kwargs, attempts)"
        " VALUES (%s, 'fail', 'default', '[\"x\"]', '{}', 1)",
        (job_id,),
    )
    return job_id


def dead_letters_in(db: psycopg.Connection[Any]) -> int:
    return count(db, "SELECT count(*) FROM pgjobs.dead_letters")


def reads(job_id: uuid.UUID) -> list[str]:
    """Every kind of GET: the API, a job's arguments and traceback, metrics, page, probe."""
    return [
        "/api/jobs",
        f"/api/jobs/{job_id}/detail",
        "/api/dead-letters",
        "/api/queues",
        "/metrics",
        "/",
        "/healthz",
    ]


def refused_for_want_of_a_token(r: httpx.Response) -> bool:
    detail = r.json()["detail"]
    return r.status_code == 403 and "has no token" in detail and "PGJOBS_WEB_TOKEN" in detail


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"X-Forwarded-For": "203.0.113.7"}, "header X-Forwarded-For"),
        ({"Forwarded": "for=203.0.113.7;proto=https"}, "header Forwarded"),
        ({"X-Forwarded-Host": "jobs.example", "X-Forwarded-Proto": "https"}, "header X-Forwarded-"),
        ({"X-Real-IP": "203.0.113.7"}, "header X-Real-Ip"),
        ({"Via": "1.1 proxy.example"}, "header Via"),
        ({"Host": "evil.example:8000"}, "'evil.example:8000', not a loopback name"),
        ({"Host": "evil.example"}, "'evil.example', not a loopback name"),
        ({"Host": "127.0.0.1.evil.example"}, "not a loopback name"),
    ],
)
def test_without_a_token_a_proxied_or_rebound_request_gets_403_and_changes_nothing(
    app: pgjobs.App, db: psycopg.Connection[Any], headers: dict[str, str], why: str
) -> None:
    failed = dead_letter(db)
    with TestClient(create_app(app, metrics_lag=0.0), **LOOPBACK) as c:
        for path in reads(failed):
            r = c.get(path, headers=headers)
            assert refused_for_want_of_a_token(r), (path, r.text)
            assert why in r.json()["detail"], r.text
        writes = [
            ("/api/dead-letters/purge", {"everything": True}),
            ("/api/dead-letters/replay", {"everything": True}),
            (f"/api/jobs/{failed}/replay", None),
            ("/api/jobs", {"task": "add", "args": [1, 2]}),
        ]
        for path, body in writes:
            r = c.post(path, json=body, headers=headers)
            assert refused_for_want_of_a_token(r), (path, r.text)
    assert dead_letters_in(db) == 1 and jobs_in(db) == 1
    assert status_of(db, str(failed)) == "failed"


def test_without_a_token_a_client_beyond_loopback_gets_403_on_reads_and_writes(
    app: pgjobs.App, db: psycopg.Connection[Any]
) -> None:
    failed = dead_letter(db)
    # The test client's own address is "testclient", and its Host "testserver".
    with TestClient(create_app(app)) as c:
        for path in reads(failed):
            assert refused_for_want_of_a_token(c.get(path)), path
        r = c.post("/api/dead-letters/purge", json={"everything": True})
        assert refused_for_want_of_a_token(r)
    with TestClient(create_app(app), base_url="http://127.0.0.1:8000") as c:
        r = c.get("/api/jobs")
        assert refused_for_want_of_a_token(r) and "came from testclient" in r.json()["detail"]
    assert dead_letters_in(db) == 1


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "127.0.0.2"])
def test_without_a_token_a_direct_loopback_request_reads_and_writes(
    app: pgjobs.App, db: psycopg.Connection[Any], host: str
) -> None:
    failed = dead_letter(db)
    with TestClient(create_app(app, metrics_lag=0.0), **LOOPBACK) as c:
        for path in reads(failed):
            assert c.get(path, headers={"Host": host}).status_code == 200, path
        r = c.post("/api/dead-letters/purge", json={"everything": True}, headers={"Host": host})
        assert r.status_code == 200 and r.json()["count"] == 1
    assert dead_letters_in(db) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        {"Forwarded": "for=203.0.113.7;host=jobs.example"},
        {"Host": "jobs.example"},
    ],
)
def test_with_a_token_a_proxied_request_with_the_token_still_works(
    client: TestClient, db: psycopg.Connection[Any], headers: dict[str, str]
) -> None:
    failed = dead_letter(db)
    for path in reads(failed):
        assert client.get(path, headers=headers).status_code == 200, path
    r = client.post("/api/dead-letters/purge", json={"everything": True}, headers=headers)
    assert r.status_code == 401  # the token, not the route, decides
    assert dead_letters_in(db) == 1
    r = post(client, "/api/dead-letters/purge", {"everything": True}, headers=headers)
    assert r.status_code == 200 and r.json()["count"] == 1
    assert dead_letters_in(db) == 0


def test_the_router_mounts_under_a_prefix_in_an_existing_app(app: pgjobs.App) -> None:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await app.aclose()  # what the README asks of an application that mounts the router

    host = FastAPI(lifespan=lifespan)

    @host.get("/")
    def home() -> dict[str, str]:
        return {"app": "mine"}

    host.include_router(router(app, token=TOKEN, dashboard=False), prefix="/jobs")
    with TestClient(host) as c:
        assert c.get("/").json() == {"app": "mine"}
        r = c.post("/jobs/api/jobs", json={"task": "add", "args": [1, 2]}, headers=AUTH)
        assert r.status_code == 202
        assert r.json()["poll_url"].startswith("/jobs/api/jobs/")
        assert c.get(r.json()["poll_url"]).json()["status"] == "pending"


# -- `pgjobs web`, a real server ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pgjobs_cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60, **kw,
    )  # fmt: skip


@pytest.mark.processes
def test_web_refuses_to_listen_beyond_loopback_without_a_token(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGJOBS_WEB_TOKEN"}
    r = pgjobs_cli("web", "tests.sample_app:app", "--host", "0.0.0.0", env=env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
    assert r.stderr.startswith("Error: refusing to listen on 0.0.0.0 without a token")
    r = pgjobs_cli("web", "tests.sample_app:app", "--protect-reads", env=env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
    assert "--protect-reads needs a token" in r.stderr


@pytest.mark.processes
def test_web_token_file_mistakes_are_one_clear_line(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGJOBS_WEB_TOKEN"}
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "token").write_text(TOKEN)
    for args, expected in (
        (("--token-file", str(tmp_path / "missing")), "cannot read --token-file"),
        (("--token-file", str(tmp_path / "empty")), "holds no token on its first line"),
        (("--token-file", str(tmp_path / "token"), "--token", TOKEN), "not both"),
    ):
        r = pgjobs_cli("web", "tests.sample_app:app", *args, env=env)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
        assert r.stderr.startswith("Error: ") and expected in r.stderr, r.stderr


@pytest.fixture
def web_server(db_url: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, token: str | None = None) -> str:
        port = free_port()
        env = {**os.environ, "PGJOBS_URL": db_url}
        env.pop("PGJOBS_WEB_TOKEN", None)
        if token:
            env["PGJOBS_WEB_TOKEN"] = token
        log = (tmp_path / f"web-{port}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgjobs", "web", "tests.sample_app:app", "--port", str(port),
             *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / f"web-{port}.log").read_text())
            time.sleep(0.05)

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest.mark.processes
def test_web_on_loopback_without_a_token_takes_local_writes_only(
    web_server: Callable[..., str], db: psycopg.Connection[Any]
) -> None:
    base = web_server()
    r = httpx.post(f"{base}/api/jobs", json={"task": "add", "args": [1, 2]})
    assert r.status_code == 202, r.text
    job = r.json()["job_id"]
    # A page that rebinds its own name to 127.0.0.1 still sends its own Host.
    rebound = {"Host": "evil.example"}
    r = httpx.post(f"{base}/api/jobs", json={"task": "add", "args": [1, 2]}, headers=rebound)
    assert refused_for_want_of_a_token(r)
    assert refused_for_want_of_a_token(httpx.get(f"{base}/api/jobs/{job}/detail", headers=rebound))
    # A proxy on this host connects from 127.0.0.1 and may pass Host: 127.0.0.1:PORT along
    # (nginx's default); its forwarding headers give it away, though uvicorn reads them too.
    port = base.rsplit(":", 1)[1]
    proxied = {"Host": f"127.0.0.1:{port}", "X-Forwarded-For": "127.0.0.1"}
    r = httpx.post(f"{base}/api/dead-letters/purge", json={"everything": True}, headers=proxied)
    assert refused_for_want_of_a_token(r)
    assert refused_for_want_of_a_token(httpx.get(f"{base}/api/jobs", headers=proxied))
    assert jobs_in(db) == 1
    assert httpx.get(f"{base}/").headers["content-security-policy"].startswith("default-src")


@pytest.mark.processes
def test_web_with_a_token_serves_the_whole_api(
    web_server: Callable[..., str], db: psycopg.Connection[Any]
) -> None:
    base = web_server(token=TOKEN)
    assert httpx.post(f"{base}/api/jobs", json={"task": "add", "args": [1]}).status_code == 401
    r = httpx.post(f"{base}/api/jobs", json={"task": "add", "args": [1, 2]}, headers=AUTH)
    assert r.status_code == 202
    job = httpx.get(base + r.headers["location"]).json()
    assert job["status"] == "pending" and job["task"] == "add"
    schema = httpx.get(f"{base}/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/metrics", "/healthz"} <= set(schema["paths"])
    assert json.loads(httpx.get(f"{base}/api/queues").text)[0]["depth"] == 1


@pytest.mark.processes
def test_web_reads_its_token_from_a_file_and_warns_of_one_on_the_command_line(
    web_server: Callable[..., str], db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text(f"{TOKEN}\n")
    served = {
        "file": web_server("--token-file", str(secret)),
        # The file, though $PGJOBS_WEB_TOKEN holds another token.
        "file over the environment": web_server("--token-file", str(secret), token="other"),
        "environment": web_server(token=TOKEN),
        "command line": web_server("--token", TOKEN),
    }
    for how, base in served.items():
        add = {"task": "add", "args": [1, 2]}
        assert httpx.post(f"{base}/api/jobs", json=add).status_code == 401, how
        assert httpx.post(f"{base}/api/jobs", json=add, headers=AUTH).status_code == 202, how
        log = (tmp_path / f"web-{base.rsplit(':', 1)[1]}.log").read_text()
        warnings = [line for line in log.splitlines() if "visible to other users" in line]
        assert len(warnings) == (how == "command line"), (how, log)
    assert warnings[0].startswith("Warning: --token on the command line is visible")
    assert jobs_in(db) == 4


# -- the database away -----------------------------------------------------------------


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = call()
    return r, time.monotonic() - started


def first_200_within(c: TestClient, path: str, seconds: float) -> float:
    """Seconds until `path` answers 200 again; fail past `seconds`."""
    started = time.monotonic()
    while True:
        r = c.get(path, headers=AUTH)
        took = time.monotonic() - started
        if r.status_code == 200:
            return took
        assert r.status_code == 503, r.text
        assert took < seconds, f"still {r.status_code} after {took:.2f} s: {r.text}"
        time.sleep(0.05)


def test_a_network_cut_is_503_at_once_and_200_again_within_2_s_of_the_heal(
    netcut: tuple[NetCut, str],
) -> None:
    proxy, through = netcut
    with TestClient(create_app(pgjobs.App(through), token=TOKEN)) as c:
        assert c.get("/api/queues").status_code == 200  # the pool holds a connection now
        proxy.cut = True  # bytes get no answer: the pooled connection hangs, new ones too
        for call in (
            lambda: c.get("/api/queues"),
            lambda: c.get(f"/api/jobs/{uuid.uuid4()}"),
            lambda: post(c, "/api/dead-letters/purge", {"everything": True}),
            lambda: c.get("/metrics"),
        ):
            r, took = timed(call)
            assert r.status_code == 503 and took < 2, (took, r.text)
            assert r.json()["detail"].startswith("the database is unavailable: "), r.text
            assert r.headers["retry-after"] == "1"
        r, took = timed(lambda: c.get("/healthz"))
        assert r.status_code == 503 and took < 2 and r.json()["status"] == "unavailable"
        proxy.partition(0)  # the network heals; connections that saw the cut are reset
        assert first_200_within(c, "/api/queues", 2) < 2
        assert c.get("/metrics").status_code == 200
        assert c.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_a_stopped_server_is_503_at_once_and_200_again_within_2_s_of_its_start(
    private_cluster: Callable[..., Any],
) -> None:
    cluster = private_cluster()
    # A pool at its largest cannot grow: only its reconnection tries, further and further
    # apart, would bring its connections back.
    full = pgjobs.App(migrated_database(cluster), pool_size=1)
    with TestClient(create_app(full, token=TOKEN)) as c:
        assert c.get("/api/jobs").status_code == 200
        cluster.stop()
        for _ in range(3):
            r, took = timed(lambda: c.get("/api/jobs"))
            assert r.status_code == 503 and took < 2, (took, r.text)
            assert "the database is unavailable: cannot reach Postgres" in r.json()["detail"]
        r, took = timed(lambda: post(c, "/api/dead-letters/purge", {"everything": True}))
        assert r.status_code == 503 and took < 2, (took, r.text)
        time.sleep(4)  # the pool's tries so far: at once, 1 s later, 2 s after that
        cluster.start()  # returns once the server takes connections
        assert first_200_within(c, "/api/jobs", 2) < 2
        assert post(c, "/api/dead-letters/purge", {"everything": True}).json()["count"] == 0


def test_a_database_without_the_pgjobs_schema_is_503_saying_to_migrate(admin_url: str) -> None:
    name = f"pgjobs_unmigrated_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        unmigrated = pgjobs.App(psycopg.conninfo.make_conninfo(admin_url, dbname=name))

        @unmigrated.task
        def add(a: int, b: int) -> int:
            return a + b

        with TestClient(create_app(unmigrated, token=TOKEN)) as c:
            for r in (
                c.get("/api/jobs"),
                c.get("/api/queues"),
                c.get("/metrics"),
                post(c, "/api/jobs", {"task": "add", "args": [1, 2]}),
                post(c, "/api/dead-letters/purge", {"everything": True}),
            ):
                assert r.status_code == 503, r.text
                assert "has no pgjobs schema: run `pgjobs migrate`" in r.json()["detail"]
            r = c.get("/healthz")
            assert r.status_code == 503 and "pgjobs migrate" in r.json()["database"]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- workflows and events -------------------------------------------------------------


def test_workflow_endpoints_show_steps_and_cancel(
    client: TestClient, app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    done = pgjobs.chain(
        sample_app.add.s(1, 2), pgjobs.group(sample_app.add.s(1), sample_app.add.s(2))
    ).enqueue()
    waiting = pgjobs.chain(sample_app.add.options(delay=60).s(1, 1), sample_app.add.s(1)).enqueue()
    run_burst(spawn_worker)
    w = client.get(f"/api/workflows/{done.id}").json()
    assert w["kind"] == "chain" and w["status"] == "succeeded" and w["is_terminal"] is True
    assert w["result"] == [4, 5]
    assert [s["status"] for s in w["steps"]] == ["succeeded"] * 3
    # Each step shows what its job does: its result, error and times.
    assert [s["result"] for s in w["steps"]] == [3, 4, 5]
    assert all(s["error"] is None and s["created_at"] and s["attempts"] == 1 for s in w["steps"])
    assert w["canvas"]["chain"][1]["group"][0]["job_id"] == w["steps"][1]["job_id"]
    step = client.get(f"/api/jobs/{w['steps'][1]['job_id']}/detail").json()
    assert step["workflow_id"] == str(done.id) and step["args"] == [3, 1]
    pending = client.get(f"/api/workflows/{waiting.id}").json()
    assert [s["status"] for s in pending["steps"]] == ["scheduled", "blocked"]
    assert pending["steps"][1]["waiting_for"] == 1 and pending["result"] is None
    assert post(client, f"/api/workflows/{waiting.id}/cancel").json() == {
        "cancelled": 2, "asked": 0,
    }  # fmt: skip
    assert client.get(f"/api/workflows/{waiting.id}").json()["status"] == "cancelled"
    assert client.post(f"/api/workflows/{waiting.id}/cancel").status_code == 401
    assert client.get(f"/api/workflows/{uuid.uuid4()}").status_code == 404
    assert post(client, f"/api/workflows/{uuid.uuid4()}/cancel").status_code == 404


def test_events_lists_published_events_and_hooks(app: pgjobs.App) -> None:
    from tests import events_app

    with TestClient(create_app(events_app.app, token=TOKEN)) as c:
        got = c.get("/api/events").json()
    rows = {r["event"]: r["subscribers"] for r in got}
    assert {r["event"]: r["kind"] for r in got}["job.failed"] == "hook"
    assert rows["user.signed_up"] == [
        "user.signed_up:send_welcome", "user.signed_up:sync_crm", "user.signed_up:count_signup",
    ]  # fmt: skip
    assert rows["job.failed"] == ["on_failure"] and rows["job.*"] == ["broken_hook"]


def test_workflow_list_pages_newest_first_with_progress(
    client: TestClient, app: pgjobs.App, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    made = [pgjobs.chain(sample_app.add.s(i, i), sample_app.add.s(1)).enqueue() for i in range(3)]
    broken = pgjobs.chord([sample_app.fail.s("x"), sample_app.add.s(1, 1)], sample_app.total.s())
    bad = broken.enqueue(name="broken")
    run_burst(spawn_worker)
    first = client.get("/api/workflows", params={"limit": 2}).json()
    assert [w["id"] for w in first["workflows"]] == [str(bad.id), str(made[2].id)]
    assert first["workflows"][0]["finished_at"] >= first["workflows"][0]["created_at"]
    assert first["workflows"][0] | {"created_at": None, "finished_at": None} == {
        "id": str(bad.id), "kind": "chord", "name": "broken", "created_at": None,
        "finished_at": None, "status": "failed", "steps": 3, "ended": 3, "failed": 1,
    }  # fmt: skip
    rest = client.get("/api/workflows", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [w["id"] for w in rest["workflows"]] == [str(made[1].id), str(made[0].id)]
    assert rest["next_cursor"] is None
    assert {w["status"] for w in rest["workflows"]} == {"succeeded"}
    detail = client.get(f"/api/workflows/{bad.id}").json()
    assert detail["finished_at"] is not None
    failed = next(s for s in detail["steps"] if s["status"] == "failed")
    assert failed["error_message"] == "x" and failed["max_attempts"] == 1
    assert failed["cancel_requested"] is False
    assert client.get("/api/workflows", params={"limit": 0}).status_code == 422


def test_nul_characters_from_a_task_end_the_job_with_a_clear_error(
    client: TestClient, spawn_worker: Callable[..., WorkerProcess]
) -> None:
    result = sample_app.nul_result.enqueue()
    error = sample_app.nul_error.enqueue()
    ok = sample_app.add.enqueue(1, 1)  # in the same outcome batch: unaffected
    run_burst(spawn_worker)
    r = client.get(f"/api/jobs/{result.id}").json()
    assert r["status"] == "failed" and r["error"]["type"] == "SerializationError"
    assert "NUL character" in r["error"]["message"]
    e = client.get(f"/api/jobs/{error.id}").json()
    assert e["status"] == "failed" and e["error"]["message"] == "a\\x00b"
    assert client.get(f"/api/jobs/{ok.id}").json()["result"] == 2
