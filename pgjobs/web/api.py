"""The JSON API, /metrics, /healthz and the dashboard, as one FastAPI router.

The endpoints live by area in pgjobs.web.routes; this module puts them behind
their access rule (pgjobs.web.security) and their database gate
(pgjobs.web.availability) for one App.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CollectorRegistry

from pgjobs.client.app import App
from pgjobs.web import routes
from pgjobs.web.availability import DatabaseGate, guarded_route
from pgjobs.web.context import WebContext
from pgjobs.web.metrics import JobsCollector
from pgjobs.web.routes.dashboard import page
from pgjobs.web.schemas import documented
from pgjobs.web.security import Guard


def router(
    app: App,
    *,
    token: str | None = None,
    protect_reads: bool = False,
    dashboard: bool = True,
    metrics_lag: float = 2.0,
) -> APIRouter:
    """The pgjobs web API for `app`, to mount in a FastAPI application.

    `token`: writes need `Authorization: Bearer <token>` (reads too with
    `protect_reads`); without a token the API answers only direct requests
    from this machine to a loopback name (see pgjobs.web.security).
    While the database is away, or has no pgjobs schema, it answers 503 at
    once (see pgjobs.web.availability).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(app, lag=metrics_lag))
    context = WebContext(app, registry, protect_reads)
    attach = [Depends(context.attach)]
    gate = DatabaseGate(app)
    api = APIRouter(
        route_class=guarded_route(Guard(token, protect_reads), gate),
        responses=documented(401, 403, 503),
        dependencies=attach,
    )
    for area in routes.API:
        area.add_to(api)
    # The page holds no data and a probe sends no token: with a token both stay open.
    public = Guard(token, public=True)
    health = APIRouter(
        route_class=guarded_route(public, gate, context.unhealthy), dependencies=attach
    )
    routes.PROBES.add_to(health)
    front = APIRouter(route_class=guarded_route(public))
    if dashboard:
        page()  # read now: a broken install fails here, not on the first visit
        routes.DASHBOARD.add_to(front)
    whole = APIRouter()
    whole.include_router(api)
    whole.include_router(front)
    whole.include_router(health)
    return whole


def create_app(app: App, **options: Any) -> FastAPI:
    """A FastAPI application serving router(app, **options) at /."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # The async pool belongs to this server's event loop: close it with the loop.
        await app.aclose()

    web = FastAPI(
        lifespan=lifespan,
        title="pgjobs",
        version=_version(),
        description="Enqueue jobs, follow them, and act on queues and dead letters.",
    )
    web.include_router(router(app, **options))
    return web


def _version() -> str:
    from importlib.metadata import version

    return version("pgjobs")
