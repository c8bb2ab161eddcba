"""Reading jobs back: get_job, listing with filters and cursors, queues, cancel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from pgjobs import InvalidArguments, JobNotFound, Page, Status
from pgjobs.web import create_app
from tests import sample_app
from tests.support.workers import drain


def test_jobs_are_listed_newest_first_and_paged_by_cursor(app: Any) -> None:
    made = sample_app.add.enqueue_many([(i, i) for i in range(25)])
    seen: list[Any] = []
    cursor = None
    pages = 0
    while True:
        page = app.jobs(limit=10, cursor=cursor)
        seen += page.jobs
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert [j.id for j in seen] == [j.id for j in reversed(made)]


def run_async(app: Any, call: Coroutine[Any, Any, Any]) -> Any:
    """Await an async call of the App on a loop of its own, closing its async pool after."""

    async def main() -> Any:
        try:
            return await call
        finally:
            await app.aclose()

    return asyncio.run(main())


def test_a_page_of_jobs_reads_as_a_list_as_a_page_of_dead_letters_does(app: Any) -> None:
    made = sample_app.add.enqueue_many([(i, i) for i in range(5)])
    page = app.jobs(limit=3)
    assert isinstance(page, Page)
    assert len(page) == 3 and [j.id for j in page] == [j.id for j in reversed(made)][:3]
    assert page[0] is page.jobs[0] and page[-1] is page.jobs[-1] and page[1:] == page.jobs[1:]
    assert list(page) == page.jobs and page.jobs[2] in page
    assert page.next_cursor == str(page[-1].id)
    rest = app.jobs(limit=3, cursor=page.next_cursor)
    assert len(rest) == 2 and rest.next_cursor is None
    # An empty page is falsy, as an empty page of dead letters (a list) is.
    assert not app.jobs(task="nothing") and not app.dead_letters(task="nothing")
    assert len(run_async(app, app.ajobs(limit=2))) == 2


def test_get_job_raises_job_not_found_sync_async_and_404_on_the_web(app: Any) -> None:
    unknown = uuid.uuid4()
    for job_id in (unknown, str(unknown)):
        with pytest.raises(JobNotFound, match=f"no job with id {unknown}"):
            app.get_job(job_id)
        with pytest.raises(JobNotFound, match=f"no job with id {unknown}"):
            run_async(app, app.aget_job(job_id))
    with pytest.raises(JobNotFound, match="'banana' is not a job id"):
        app.get_job("banana")
    with pytest.raises(JobNotFound, match="'banana' is not a job id"):
        run_async(app, app.aget_job("banana"))
    # A LookupError, as a missing key is.
    with pytest.raises(LookupError):
        app.get_job(unknown)
    with TestClient(create_app(app, token="t")) as client:
        for path in (f"/api/jobs/{unknown}", f"/api/jobs/{unknown}/detail"):
            r = client.get(path)
            assert r.status_code == 404 and r.json() == {"detail": f"no job with id {unknown}"}
        assert client.get("/api/jobs/banana").status_code == 422


def test_jobs_filter_by_status_queue_and_task(app: Any) -> None:
    sample_app.add.enqueue_many([(1, 1)] * 3)
    sample_app.elsewhere.enqueue()
    sample_app.fail.enqueue("x")
    drain(app, queues=["other"])
    assert {j.task for j in app.jobs(queue="other").jobs} == {"elsewhere"}
    assert len(app.jobs(task="add").jobs) == 3
    assert [j.task for j in app.jobs(status="succeeded").jobs] == ["elsewhere"]
    assert len(app.jobs(status=Status.PENDING, task="fail").jobs) == 1


def test_listing_refuses_bad_filters(app: Any) -> None:
    with pytest.raises(InvalidArguments, match="unknown status 'done'"):
        app.jobs(status="done")
    with pytest.raises(InvalidArguments, match="limit must be between 1 and 1000"):
        app.jobs(limit=0)
    with pytest.raises(InvalidArguments, match="invalid cursor"):
        app.jobs(cursor="page-2")


def test_queues_report_depth_by_status_and_the_oldest_ready_job(app: Any) -> None:
    sample_app.add.enqueue_many([(1, 1)] * 4)
    sample_app.add.options(delay=60).enqueue(1, 1)
    sample_app.elsewhere.enqueue()
    drain(app, queues=["other"])
    stats = {q.queue: q for q in app.queues()}
    assert stats["default"].counts == {"pending": 4, "scheduled": 1}
    assert stats["default"].depth == 5
    assert stats["default"].oldest_pending_age is not None
    assert stats["default"].oldest_pending_age >= 0
    assert stats["other"].counts == {"succeeded": 1} and stats["other"].depth == 0


def test_cancel_ends_a_waiting_job_and_leaves_a_finished_one(
    app: Any, db: psycopg.Connection[Any]
) -> None:
    waiting = sample_app.add.enqueue(1, 1)
    later = sample_app.add.options(delay=600).enqueue(1, 1)
    done = sample_app.elsewhere.enqueue()
    drain(app, queues=["other"])
    assert app.cancel(waiting.id).status is Status.CANCELLED
    assert app.cancel(later.id).status is Status.CANCELLED
    assert app.cancel(done.id).status is Status.SUCCEEDED
    drain(app)
    assert app.get_job(waiting.id).status is Status.CANCELLED
    row = db.execute("SELECT count(*) FROM pgjobs.attempts WHERE job_id = %s", (waiting.id,))
    assert row.fetchone() == (0,)
    with pytest.raises(Exception, match="was cancelled"):
        waiting.wait(1)
