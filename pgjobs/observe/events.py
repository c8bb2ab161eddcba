"""Events: hooks on job transitions, and durable publish/subscribe through jobs.

Hooks (`@app.on("job.failed")`) run after the transition has committed, on a
thread of their own: never inside the claim or finish transaction, and never
in the way of the next claim. Every transition reaches them through the one
pipeline (pgjobs.observe.pipeline), whoever made it: a worker, the leader's rescuer
or scheduler, or an administrator. A hook that raises is logged; it changes
nothing about the job.

Publish/subscribe is jobs: `app.publish(name, payload, conn=conn)` inserts one
job per subscriber in the caller's transaction, so a rolled-back transaction
publishes nothing, and each subscriber retries and dead-letters on its own.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pgjobs.events")

#: The transitions a hook can follow; "job.*" follows them all.
JOB_EVENTS = (
    "job.started",
    "job.succeeded",
    "job.retrying",
    "job.failed",
    "job.cancelled",
    "job.pending",
)
ANY_JOB_EVENT = "job.*"

Hook = Callable[["JobEvent"], Any]


@dataclass(frozen=True)
class JobEvent:
    """A job transition that has committed: what a hook receives."""

    name: str  # "job.failed", ...
    job_id: uuid.UUID
    task: str
    queue: str
    attempt: int
    result: Any = None  # for job.succeeded
    error: dict[str, Any] | None = None  # type, message, traceback: failed, retrying
    retry_in: float | None = None  # for job.retrying: seconds until the next attempt
    previous: str | None = None  # the status the job left
    by: str = "worker"  # who moved it: worker, rescuer, scheduler or admin
    reason: str | None = None  # why, where it was not the job's own outcome


def check_event(name: str) -> str:
    """The hook event name, or ValueError naming the ones there are."""
    if name != ANY_JOB_EVENT and name not in JOB_EVENTS:
        known = ", ".join((*JOB_EVENTS, ANY_JOB_EVENT))
        raise ValueError(f"unknown event {name!r}: hooks follow {known}")
    return name


def check_topic(name: str) -> str:
    """A publish/subscribe topic: a non-empty name without NUL."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"an event name must be a non-empty string, got {name!r}")
    return name


def decode(text: str | None) -> Any:
    """A JSON column as the worker holds it (text), as Python."""
    return None if text is None else json.loads(text)


class HookRunner:
    """Calls an App's hooks, in order, on one thread of their own.

    An async hook runs on `loop` (a worker's event loop) when there is one,
    else on an event loop of the hook thread's own.
    """

    def __init__(
        self, hooks: Mapping[str, list[Hook]], loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.hooks = hooks
        self.loop = loop
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[JobEvent | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def wants(self, name: str) -> bool:
        """True when some hook follows this event (checked once per batch)."""
        return bool(self.hooks.get(name) or self.hooks.get(ANY_JOB_EVENT))

    def submit(self, event: JobEvent) -> None:
        """Queue an event for the hooks; returns at once."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._queue, self.loop),
                    name="pgjobs-hooks",
                    daemon=True,
                )
                self._thread.start()
            self._queue.put(event)

    def close(self, timeout: float) -> None:
        """Let the queued events reach their hooks, waiting at most `timeout` seconds.

        Events submitted afterwards start a new thread, whose async hooks run on
        a loop of its own: the loop given is that of a worker that has stopped.
        """
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(None)
            self._queue = queue.SimpleQueue()
            self.loop = None
        thread.join(timeout)
        if thread.is_alive():
            log.warning("hooks still running after %.1f s; leaving them", timeout)

    def _run(
        self, events: queue.SimpleQueue[JobEvent | None], loop: asyncio.AbstractEventLoop | None
    ) -> None:
        own: asyncio.Runner | None = None
        try:
            while (event := events.get()) is not None:
                own = self._call_hooks(event, loop, own)
        finally:
            if own is not None:
                own.close()

    def _call_hooks(
        self,
        event: JobEvent,
        loop: asyncio.AbstractEventLoop | None,
        own: asyncio.Runner | None,
    ) -> asyncio.Runner | None:
        for hook in (*self.hooks.get(event.name, ()), *self.hooks.get(ANY_JOB_EVENT, ())):
            try:
                if inspect.iscoroutinefunction(hook):
                    if loop is not None and not loop.is_closed():
                        future = asyncio.run_coroutine_threadsafe(hook(event), loop)
                        future.result()
                    else:
                        own = own or asyncio.Runner()
                        own.run(hook(event))
                else:
                    hook(event)
            except Exception:
                name = getattr(hook, "__qualname__", repr(hook))
                log.exception("hook %s for %s of job %s raised", name, event.name, event.job_id)
        return own
