"""/: the dashboard, one static page that talks to the API."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi.responses import HTMLResponse

from pgjobs.web.routing import Routes

routes = Routes()

# The page runs only its own inline script, and no other site may frame it.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@cache
def page() -> str:
    """The dashboard's HTML, as the package ships it."""
    return files("pgjobs.web").joinpath("static/index.html").read_text(encoding="utf-8")


@routes.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    """The dashboard: one page, no build step, talks to the API above."""
    return HTMLResponse(page(), headers=_HEADERS)
