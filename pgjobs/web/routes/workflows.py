"""/api/workflows and /api/events: chains, groups and chords, and what subscribes to events."""

from __future__ import annotations

import uuid
from typing import Any

from pgjobs.core.errors import JobNotFound
from pgjobs.web.context import CurrentApp
from pgjobs.web.routing import Routes, not_found
from pgjobs.web.schemas import (
    EventView,
    Limit,
    WorkflowCancelled,
    WorkflowPage,
    WorkflowView,
    documented,
)

routes = Routes()


@routes.get("/api/workflows", response_model=WorkflowPage, tags=["workflows"])
async def list_workflows(
    app: CurrentApp, limit: Limit = 50, cursor: uuid.UUID | None = None
) -> Any:
    """Workflows, newest first, with their status and how many steps ended."""
    rows, next_cursor = await app.aworkflows(limit=limit, cursor=cursor)
    return {"workflows": [r.__dict__ for r in rows], "next_cursor": next_cursor}


@routes.get(
    "/api/workflows/{workflow_id}",
    response_model=WorkflowView,
    tags=["workflows"],
    responses=documented(404),
)
async def workflow(workflow_id: uuid.UUID, app: CurrentApp) -> Any:
    """A workflow: its shape, status, result once it succeeded, and each step."""
    try:
        info = await app.aget_workflow(workflow_id)
    except JobNotFound as exc:
        raise not_found(exc) from None
    return {
        "id": info.id,
        "kind": info.kind,
        "name": info.name,
        "created_at": info.created_at,
        "status": info.status,
        "is_terminal": info.is_terminal,
        "finished_at": info.finished_at,
        "result": info.result() if info.status == "succeeded" else None,
        "canvas": info.canvas,
        "steps": [
            {
                **s.model_dump(),
                "job_id": s.id,
                "error_type": (s.error or {}).get("type"),
                "error_message": (s.error or {}).get("message"),
            }
            for s in info.steps
        ],
    }


@routes.post(
    "/api/workflows/{workflow_id}/cancel",
    response_model=WorkflowCancelled,
    tags=["workflows"],
    responses=documented(404),
)
async def cancel_workflow(workflow_id: uuid.UUID, app: CurrentApp) -> Any:
    """Cancel every step that has not ended; running ones are asked to stop."""
    try:
        cancelled, asked = await app.acancel_workflow(workflow_id)
    except JobNotFound as exc:
        raise not_found(exc) from None
    return {"cancelled": cancelled, "asked": asked}


@routes.get("/api/events", response_model=list[EventView], tags=["workflows"])
async def events(app: CurrentApp) -> Any:
    """Published events and their subscriber tasks; "job.*" rows list transition hooks."""
    out = [
        {"event": name, "kind": "event", "subscribers": [t.name for t in tasks]}
        for name, tasks in sorted(app.subscribers.items())
    ]
    out += [
        {
            "event": name,
            "kind": "hook",
            "subscribers": [getattr(h, "__qualname__", repr(h)) for h in hooks],
        }
        for name, hooks in sorted(app.hooks.items())
    ]
    return out
