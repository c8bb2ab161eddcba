"""Who may read and write through the web API: bearer token, loopback, same origin."""

from __future__ import annotations

import hmac
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

#: Where the token is set, for the messages that ask for one.
SET_A_TOKEN = "pgjobs web --token or $PGJOBS_WEB_TOKEN; router(app, token=...)"

# Headers that proxies add. A proxy on the same host connects from a loopback
# address, and may ask for a loopback Host (nginx's default), so these are
# what tells its requests from local ones.
_PROXY_HEADERS = frozenset({"forwarded", "via", "x-real-ip"})

# host, host:port, [v6] or [v6]:port, and nothing else: no user part, no path.
_HOST = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\[\]:/@?#\s]+))(?::\d{1,5})?")


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: addresses no other machine can reach."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    # "example.com:8000" -> "example.com"; "[::1]:8000" -> "::1"; "" when malformed
    m = _HOST.fullmatch(host_header.strip())
    if m is None:
        return ""
    return m.group("v6") or m.group("name")


def _not_direct_loopback(request: Request) -> str | None:
    """Why `request` is not a direct request from this machine to a loopback name, or None."""
    for name in request.headers:
        if name in _PROXY_HEADERS or name.startswith("x-forwarded"):
            return f"it came through a proxy (it carries the header {name.title()})"
    hosts = request.headers.getlist("host")
    if len(hosts) != 1 or not is_loopback_host(_host_name(hosts[0])):
        asked = repr(hosts[0][:100]) if len(hosts) == 1 else f"{len(hosts)} Host headers"
        return (
            f"it asked for host {asked}, not a loopback name (localhost, 127.0.0.1, [::1]); "
            "a web page can rebind its own name to 127.0.0.1"
        )
    client = request.client.host if request.client else ""
    if not is_loopback_host(client):
        return f"it came from {client or 'an unknown address'}, not a loopback address"
    return None


@dataclass(frozen=True)
class Guard:
    """The access rule of one router.

    With a token, writes (and reads when `protect_reads`) need
    `Authorization: Bearer <token>`. Without one the API is a local tool: it
    answers only direct requests from a loopback address to a loopback host
    name, reads too, since jobs' arguments and tracebacks are no one else's
    to read; a request that a proxy forwarded, or that names another host (a
    web page that rebound its own name to 127.0.0.1), is refused. Either way
    a write that a browser sends from another origin is refused, so a page on
    another site cannot make a logged-in dashboard act (CSRF): the dashboard
    keeps its token in the page, never in a cookie.

    `public`: the dashboard page and /healthz, which hold no data and take no
    token; only the rule without a token applies to them.
    """

    token: str | None = None
    protect_reads: bool = False
    public: bool = False

    def __call__(self, request: Request) -> None:
        """Raise 401/403 when the request may not proceed."""
        if self.token is None:
            self._local_only(request)
        if self.public:
            return
        write = request.method not in SAFE_METHODS
        if write:
            self._same_origin(request)
        if self.token is not None and (write or self.protect_reads):
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
        why = _not_direct_loopback(request)
        if why is not None:
            raise HTTPException(
                403,
                f"this API has no token, so it answers only direct requests from this machine "
                f"to a loopback name, and {why}: to serve it behind a proxy or beyond this "
                f"machine, set a token ({SET_A_TOKEN})",
            )
