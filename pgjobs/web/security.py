"""Who may read and write through the web API: bearer token, loopback, same origin."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: addresses no other machine can reach."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    # "example.com:8000" -> "example.com"; "[::1]:8000" -> "::1"
    return urlsplit(f"//{host_header}").hostname or ""


@dataclass(frozen=True)
class Guard:
    """The access rule of one router.

    With a token, writes (and reads when `protect_reads`) need
    `Authorization: Bearer <token>`. Without one, only loopback clients that
    asked for a loopback host name may write: the API is then a local tool,
    and a web page elsewhere cannot reach it by DNS rebinding. Either way a
    write that a browser sends from another origin is refused, so a page on
    another site cannot make a logged-in dashboard act (CSRF): the dashboard
    keeps its token in the page, never in a cookie.
    """

    token: str | None = None
    protect_reads: bool = False

    def __call__(self, request: Request) -> None:
        """FastAPI dependency: raise 401/403 when the request may not proceed."""
        write = request.method not in SAFE_METHODS
        if write:
            self._same_origin(request)
        if self.token is None:
            if write:
                self._local_only(request)
            return
        if write or self.protect_reads:
            self._bearer(request)

    def _bearer(self, request: Request) -> None:
        assert self.token is not None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(
                401,
                "this endpoint needs a bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise HTTPException(
                401, "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"}
            )

    @staticmethod
    def _same_origin(request: Request) -> None:
        if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            raise HTTPException(403, "cross-site requests may not change jobs")
        origin = request.headers.get("origin")
        if origin and origin != "null":
            parts = urlsplit(origin)
            if parts.netloc.lower() != request.headers.get("host", "").lower():
                raise HTTPException(403, f"requests from {origin} may not change jobs")
        elif origin == "null":
            raise HTTPException(403, "requests from an opaque origin may not change jobs")

    @staticmethod
    def _local_only(request: Request) -> None:
        client = request.client.host if request.client else ""
        host = _host_name(request.headers.get("host", ""))
        if not (is_loopback_host(client) and is_loopback_host(host)):
            raise HTTPException(
                401,
                "writes need a bearer token unless client and host are both loopback "
                "(start the API with a token: pgjobs web --token / $PGJOBS_WEB_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )
