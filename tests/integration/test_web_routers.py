"""Routers for two Apps in one host application: each request is served by its own router's App."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient

import pgjobs
from pgjobs.web import router
from tests.support.common import count


def test_two_apps_mounted_side_by_side_each_answer_with_their_own_tasks_and_token(
    app: pgjobs.App, db: psycopg.Connection[Any], db_url: str
) -> None:
    other = pgjobs.App(url=db_url)

    @other.task(queue="reports")
    def report(name: str) -> str:
        """Make a report."""
        return name

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await app.aclose()
        await other.aclose()

    host = FastAPI(lifespan=lifespan)
    host.include_router(router(app, token="token-a", dashboard=False), prefix="/a")
    host.include_router(router(other, token="token-b", dashboard=False), prefix="/b")
    with TestClient(host) as c:
        names_a = {t["name"] for t in c.get("/a/api/tasks").json()}
        assert c.get("/b/api/tasks").json() == [
            {
                "name": report.name,
                "queue": "reports",
                "priority": report.defaults.priority,
                "max_attempts": report.defaults.max_attempts,
                "is_async": False,
                "timeout": None,
                "soft_timeout": None,
                "concurrency": None,
                "rate_limit": None,
                "periodic": [],
                "doc": "Make a report.",
            }
        ]
        assert report.name not in names_a and "add" in names_a

        # Each router takes its own token only.
        a_token = {"Authorization": "Bearer token-a"}
        b_token = {"Authorization": "Bearer token-b"}
        body = {"task": report.name, "args": ["q3"]}
        assert c.post("/b/api/jobs", json=body, headers=a_token).status_code == 401
        assert c.post("/a/api/jobs", json=body, headers=a_token).status_code == 404
        assert count(db) == 0
        r = c.post("/b/api/jobs", json=body, headers=b_token)
        assert r.status_code == 202, r.text
        assert r.json()["queue"] == "reports"
        assert count(db) == 1
        # Its poll URL and Location are its own router's, not the first one mounted.
        poll = f"/b/api/jobs/{r.json()['job_id']}"
        assert (r.json()["poll_url"], r.headers["Location"]) == (poll, poll)
        assert c.get(poll).json()["status"] == "pending"
        job = c.get(f"/b/api/jobs/{r.json()['job_id']}").json()
        assert (job["task"], job["status"]) == (report.name, "pending")
