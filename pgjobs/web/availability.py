"""The web API while its database is away: 503 at once, and answers again as soon as it is back.

Left to the App's pool, a request waits for a connection until the pool's
timeout (`connect_timeout`, ten seconds by default), and one whose connection
the network cut without resetting it waits for ever. So a request that waits
on the database longer than SLOW seconds asks a probe, one new connection
that runs `SELECT 1` within PROBE_TIMEOUT seconds, whether Postgres answers at
all: if it does, the request goes on waiting, however long its work takes; if
not, it is answered 503 then and there, and its work is cancelled behind it.

Once a probe has failed, every request probes first (one probe serves every
request that asks meanwhile, and a failure stands for FAILED_FOR seconds), so
the first request after Postgres is back goes through. That request also
closes the App's pools, which reopen on its call: an old pool may be waiting
out its reconnection backoff, which doubles from one second between tries,
or still hold connections that the outage broke.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import psycopg
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from pgjobs.client.app import App
from pgjobs.core.errors import PgJobsError
from pgjobs.db import driver
from pgjobs.db.connections import aconnect
from pgjobs.db.driver import DatabaseUnavailable, SchemaMissing, describe, translate
from pgjobs.web.security import Guard

T = TypeVar("T")

#: Seconds a request waits on the database before a probe asks whether it answers at all.
SLOW = 0.25
#: Seconds between probes while a request still waits on an answering database.
RECHECK = 1.0
#: Seconds a probe may take to connect and run SELECT 1 before the database counts as away.
PROBE_TIMEOUT = 1.0
#: Seconds a failed probe answers for every request, so that an outage costs each one
#: no wait and the database no connection attempt per request.
FAILED_FOR = 0.5


class DatabaseGate:
    """Runs one router's requests against `app`'s database, and decides when it is away."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._away: str | None = None  # why the last probe failed, until the pools are renewed
        self._failed_at = 0.0
        self._probing: asyncio.Task[str | None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        # Work given up on: referenced until it ends, so that it is not collected mid-way.
        self._abandoned: set[asyncio.Task[Any]] = set()

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()`'s result; DatabaseUnavailable as soon as a probe finds the database away."""
        if self._away is not None:
            await self._back()
        task: asyncio.Task[T] = asyncio.ensure_future(work())
        try:
            wait = SLOW
            while not (await asyncio.wait({task}, timeout=wait))[0]:
                why = await self.check()
                if why is not None:
                    raise DatabaseUnavailable(why)
                wait = RECHECK
        except BaseException:
            # A probe found the database away, or the request itself was cancelled.
            self._abandon(task)
            raise
        try:
            return task.result()
        except DatabaseUnavailable:
            # The pool gave up, or a connection broke: the database may be away, or only
            # this connection was. The probe tells, for the requests that follow.
            await self.check()
            raise

    async def check(self) -> str | None:
        """Why the database does not answer, or None when it does."""
        if self._away is not None and time.monotonic() - self._failed_at < FAILED_FOR:
            return self._away
        loop = asyncio.get_running_loop()
        probe = self._probing
        if probe is None or probe.done() or probe.get_loop() is not loop:
            probe = self._probing = loop.create_task(self._probe())
        # Shielded: a request that stops waiting does not stop the probe others wait for.
        return await asyncio.shield(probe)

    async def _probe(self) -> str | None:
        # The URL in a thread: resolving it may start the embedded Postgres.
        url = await asyncio.to_thread(lambda: self.app.url)
        attempt = asyncio.ensure_future(_select_one(url))
        done, _ = await asyncio.wait({attempt}, timeout=PROBE_TIMEOUT)
        if not done:
            self._abandon(attempt)
            why = f"Postgres at {describe(url)} did not answer within {PROBE_TIMEOUT:g} s"
        else:
            exc = attempt.exception()
            if exc is None:
                return None
            if isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("53"):
                return None  # out of connections (or memory, or disk): there, and busy
            why = str(translate(exc, url) or exc)
        self._away, self._failed_at = why, time.monotonic()
        return why

    async def _back(self) -> None:
        """Return once the database answers again, with new pools; raise while it does not."""
        why = await self.check()
        if why is not None:
            raise DatabaseUnavailable(why)
        loop = asyncio.get_running_loop()
        renew = self._renewing
        if renew is None or renew.done() or renew.get_loop() is not loop:
            renew = self._renewing = loop.create_task(self._renew())
        await asyncio.shield(renew)

    async def _renew(self) -> None:
        if self._away is None:  # renewed meanwhile, by a request that came first
            return
        # The App opens new pools on its next call. Connections out of the old ones
        # are closed as they come back; closing the sync pool takes well under a
        # millisecond, its threads idle.
        await self.app.aclose()
        self._away = None

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        # Not awaited: a query cut off by the network takes psycopg up to ten
        # seconds to cancel, and the request is answered now.
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(_forget(self._abandoned))


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its failure is the outage already answered

    return done


async def _select_one(url: str) -> None:
    # connect_timeout bounds a probe given up on, which runs on alone.
    async with await aconnect(url, autocommit=True, connect_timeout=2) as conn:
        await driver.arun(driver.named("database_answers", fetch="one"), conn)


def guarded_route(
    guard: Guard,
    gate: DatabaseGate | None = None,
    unavailable: Callable[[PgJobsError], Response] | None = None,
) -> type[APIRoute]:
    """A route class that applies `guard`, then runs the endpoint through `gate`.

    The guard comes first, so that a refused request learns nothing of the
    database, not even that it is away. When the database is away, or has no
    pgjobs schema, `unavailable` makes the answer.
    """

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            if gate is None:

                async def guarded(request: Request) -> Response:
                    guard(request)
                    return await handler(request)

                return guarded
            answer = unavailable or problem

            async def gated(request: Request) -> Response:
                guard(request)
                try:
                    return await gate.run(lambda: handler(request))
                except (DatabaseUnavailable, SchemaMissing) as exc:
                    return answer(exc)

            return gated

    return GuardedRoute


def problem(exc: PgJobsError) -> Response:
    """The API's 503: `detail` says what is wrong with the database."""
    detail = str(exc) if isinstance(exc, SchemaMissing) else f"the database is unavailable: {exc}"
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
