"""/healthz and /metrics: whether the database answers, and how the queues fare.

/healthz is in `probes`, not `routes`: it needs no token and makes its own 503.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pgjobs.web.context import Context
from pgjobs.web.routing import Routes
from pgjobs.web.schemas import Health, documented

routes = Routes()
probes = Routes()


@routes.get("/metrics", tags=["health"], response_class=Response)
def metrics(context: Context) -> Response:
    """Prometheus metrics: depth, oldest ready job, jobs ended, run and wait times, workers."""
    return Response(generate_latest(context.registry), media_type=CONTENT_TYPE_LATEST)


@probes.get("/healthz", response_model=Health, tags=["health"], responses=documented(503))
async def healthz(context: Context) -> Any:
    """200 when the database answers, 503 when it does not; needs no token."""
    try:
        await context.app.acheck_schema()
    except Exception as exc:
        return context.unhealthy(exc)
    return {"status": "ok", "database": "ok"}
