"""/api/dead-letters: jobs that failed for good; replay them or forget them."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import HTTPException

from pgjobs.core.errors import IllegalTransition, InvalidArguments, JobNotFound
from pgjobs.web.context import CurrentApp
from pgjobs.web.routing import Routes, not_found, unprocessable
from pgjobs.web.schemas import Count, DeadLetterPage, Limit, PurgeRequest, ReplayRequest, documented

routes = Routes()


@routes.get("/api/dead-letters", response_model=DeadLetterPage, tags=["dead letters"])
async def dead_letters(
    app: CurrentApp,
    task: str | None = None,
    queue: str | None = None,
    limit: Limit = 50,
    cursor: uuid.UUID | None = None,
) -> Any:
    """Jobs that failed for good, newest first."""
    try:
        rows = await app.adead_letters(task=task, queue=queue, limit=limit, cursor=cursor)
    except InvalidArguments as exc:
        raise unprocessable(["query", exc.field or "query"], str(exc)) from None
    return {"dead_letters": list(rows), "next_cursor": rows.next_cursor}


@routes.post(
    "/api/dead-letters/replay",
    response_model=Count,
    tags=["dead letters"],
    responses=documented(400, 404, 409, 422),
)
async def replay_dead_letters(body: ReplayRequest, app: CurrentApp) -> Any:
    """Replay dead letters: these ids (all or none), or those matching the filters."""
    try:
        if body.ids is not None:
            jobs = await app.areplay_many(body.ids)
            return {"count": len(jobs), "ids": [j.id for j in jobs]}
        ids = await app.areplay_dead_letters(
            task=body.task, queue=body.queue, everything=body.everything
        )
    except JobNotFound as exc:
        raise not_found(exc) from None
    except IllegalTransition as exc:
        raise HTTPException(409, str(exc)) from None
    except InvalidArguments as exc:
        raise _bad_body(exc) from None
    return {"count": len(ids), "ids": ids}


@routes.post(
    "/api/dead-letters/purge",
    response_model=Count,
    tags=["dead letters"],
    responses=documented(400, 422),
)
async def purge_dead_letters(body: PurgeRequest, app: CurrentApp) -> Any:
    """Forget dead letters for good (the jobs stay failed, with their history)."""
    try:
        n = await app.apurge_dead_letters(
            body.ids, task=body.task, queue=body.queue, everything=body.everything
        )
    except InvalidArguments as exc:
        raise _bad_body(exc) from None
    return {"count": n}


def _bad_body(exc: InvalidArguments) -> HTTPException:
    return unprocessable(["body", *([exc.field] if exc.field else [])], str(exc))
