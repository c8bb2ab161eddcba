"""/api/workers: the workers registered, their heartbeats and their load."""

from __future__ import annotations

from typing import Any

from pgjobs.core.pages import WorkerInfo
from pgjobs.web.context import CurrentApp
from pgjobs.web.routing import Routes

routes = Routes()


@routes.get("/api/workers", response_model=list[WorkerInfo], tags=["workers"])
async def workers(app: CurrentApp) -> Any:
    """Registered workers, their heartbeat age and how many jobs each runs."""
    return await app.aworkers()
