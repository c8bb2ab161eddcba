"""Endpoints declared once, at import, and added to the routers made for each App.

An APIRouter fixes a route's class, which carries the access guard and the
database gate of one App, when the route is added to it. So each area module
under pgjobs.web.routes declares its endpoints on a `Routes` table, with the
decorators and arguments of an APIRouter, and `router()` adds every table to
routers it makes for the App it serves. The errors endpoints raise are here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class Routes:
    """An area's endpoints, each with the arguments APIRouter.add_api_route takes."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a GET endpoint, as APIRouter.get does."""
        return self._declare(path, "GET", options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a POST endpoint, as APIRouter.post does."""
        return self._declare(path, "POST", options)

    def _declare(
        self, path: str, method: str, options: dict[str, Any]
    ) -> Callable[[Endpoint], Endpoint]:
        def declare(endpoint: Endpoint) -> Endpoint:
            self._routes.append((path, endpoint, {**options, "methods": [method]}))
            return endpoint

        return declare

    def add_to(self, router: APIRouter) -> None:
        """Add these endpoints to `router`, in the order they were declared."""
        for path, endpoint, options in self._routes:
            router.add_api_route(path, endpoint, **options)


def not_found(exc: Exception) -> HTTPException:
    """404, saying what was not found."""
    return HTTPException(404, str(exc))


def unprocessable(loc: list[str], msg: str, kind: str = "value_error") -> HTTPException:
    """422 for input that is well formed but does not fit, naming where it is."""
    # The shape FastAPI gives its own validation errors, so clients parse one shape.
    return HTTPException(422, [{"loc": loc, "msg": msg, "type": kind}])
