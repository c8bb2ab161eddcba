"""What the endpoints of one router share, handed to them as FastAPI dependencies.

`router()` makes one WebContext per App it serves and makes `attach` a dependency
of each of its routes, so that an endpoint receives the App (`CurrentApp`) or the
whole context (`Context`) as a parameter. One host application may mount routers
for several Apps: each request carries the context of the router that matched it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from pgjobs.client.app import App

# The request scope's key for the context of the router that serves the request.
_SCOPE_KEY = "pgjobs.web.context"


@dataclass(frozen=True, eq=False)
class WebContext:
    """One router's App, its Prometheus registry and its access setting."""

    app: App
    registry: CollectorRegistry
    protect_reads: bool = False

    async def attach(self, request: Request) -> None:
        """A dependency of each of this router's routes: it runs before the endpoint's own."""
        request.scope[_SCOPE_KEY] = self

    def unhealthy(self, exc: Exception) -> JSONResponse:
        """/healthz's 503, for a database that is away or has no pgjobs schema."""
        # With protected reads, an anonymous probe learns nothing about the database.
        why = "unreachable" if self.protect_reads else (str(exc).splitlines() or ["error"])[0]
        return JSONResponse({"status": "unavailable", "database": why}, status_code=503)


async def current_context(request: Request) -> WebContext:
    """The context of the router serving `request`."""
    return cast(WebContext, request.scope[_SCOPE_KEY])


async def current_app(request: Request) -> App:
    """The App of the router serving `request`."""
    return (await current_context(request)).app


Context = Annotated[WebContext, Depends(current_context)]
CurrentApp = Annotated[App, Depends(current_app)]
