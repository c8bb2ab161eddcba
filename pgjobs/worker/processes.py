"""Child processes for `def` tasks (`pgjobs worker --processes N`).

A task run in a thread cannot be stopped; one run in a child process can.
Each child imports the App by its `module:attribute` spec, then runs one
attempt at a time on request over a pipe. The parent kills a child whose
attempt passes its hard time limit or is cancelled, and starts a new one in
its place. A child that dies by itself (os._exit, a segfault, the OOM killer)
fails only the attempt it was running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from pgjobs.core.errors import ConfigurationError, HardTimeout, WorkerCrashed

if TYPE_CHECKING:
    from pgjobs.client.app import App
    from pgjobs.client.tasks import Task
    from pgjobs.worker.executor import Attempt

log = logging.getLogger("pgjobs.worker")


@dataclass(frozen=True)
class Encoded:
    """A task's result, already encoded as JSON text by the child."""

    text: str


class RemoteError(Exception):
    """An exception raised in a child process that could not be sent back as itself."""


def find_app_spec(app: App) -> str:
    """The `module:attribute` under which `app` can be imported, for child processes."""
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if value is app:
                return f"{name}:{attr}"
    raise ConfigurationError(
        "cannot find the App in any imported module; pass app_spec='package.module:app' "
        "to run tasks in child processes"
    )


def _child_main(app_spec: str, conn: multiprocessing.connection.Connection) -> None:
    # The parent handles signals and decides when children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from pgjobs.client.context import JobContext
    from pgjobs.client.context import running_job as _current
    from pgjobs.client.loading import load_app

    app = load_app(app_spec)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        _, name, raw_args, raw_kwargs, info = message
        task = app.tasks[name]
        ctx = JobContext(
            id=info["id"],
            task=name,
            queue=info["queue"],
            attempt=info["attempt"],
            max_attempts=info["max_attempts"],
            dedup_key=info["dedup_key"],
            progress_sink=lambda _id, progress: conn.send(("progress", progress)),
            wrap_up_at=info["deadline"],
        )
        token = _current.set(ctx)
        try:
            args, kwargs = task.signature.decode(raw_args, raw_kwargs)
            result = task.signature.encode_result(task.fn(*args, **kwargs))
        except Exception as exc:
            text = "".join(traceback.format_exception(exc))
            try:
                blob: bytes | None = pickle.dumps(exc)
            except Exception:
                blob = None
            conn.send(("error", type(exc).__qualname__, str(exc), text, blob))
        else:
            conn.send(("ok", result))
        finally:
            _current.reset(token)


class _Child:
    def __init__(self, ctx: Any, app_spec: str) -> None:
        parent, child = ctx.Pipe()
        self.conn: multiprocessing.connection.Connection = parent
        self.process: BaseProcess = ctx.Process(
            target=_child_main, args=(app_spec, child), name="pgjobs-child", daemon=True
        )
        self.process.start()
        child.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessPool:
    """N child processes that run `def` tasks, one attempt each at a time."""

    def __init__(self, size: int, app_spec: str, start_timeout: float = 60.0) -> None:
        if size < 1:
            raise ConfigurationError(f"processes must be at least 1, got {size}")
        self.size = size
        self.app_spec = app_spec
        self.start_timeout = start_timeout
        self._mp = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._all: set[_Child] = set()
        self._closing = False
        self._spawning: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        """Start the children and wait until each has imported the App."""
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))

    async def _spawn(self) -> None:
        child = _Child(self._mp, self.app_spec)
        self._all.add(child)
        try:
            message = await self._recv(child, self.start_timeout)
        except (EOFError, OSError, TimeoutError):
            self._all.discard(child)
            child.kill()
            raise ConfigurationError(
                f"a task process could not import {self.app_spec!r} "
                f"(exit code {child.process.exitcode})"
            ) from None
        if message[0] != "ready":
            raise ConfigurationError(f"a task process sent {message[0]!r} before 'ready'")
        self._idle.put_nowait(child)

    def _replace(self, child: _Child) -> None:
        self._all.discard(child)
        child.kill()
        if not self._closing:
            spawning = asyncio.ensure_future(self._respawn())
            self._spawning.add(spawning)
            spawning.add_done_callback(self._spawning.discard)

    async def _respawn(self) -> None:
        try:
            await self._spawn()
        except ConfigurationError as exc:
            log.error("could not replace a task process: %s", exc)

    async def _recv(self, child: _Child, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = child.conn.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await asyncio.wait_for(ready, timeout)
        finally:
            loop.remove_reader(fd)
        return child.conn.recv()

    async def run(self, task: Task, attempt: Attempt, args: Any, kwargs: Any) -> Encoded:
        """Run one attempt in a child; raise what the task raised, or why the child stopped."""
        child = await self._idle.get()
        row = attempt.row
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        attempt._interrupt = child.process.kill
        healthy = False
        try:
            child.conn.send(
                (
                    "run",
                    task.name,
                    row["args"],
                    row["kwargs"] or {},
                    {
                        "id": row["id"],
                        "queue": row["queue"],
                        "attempt": row["attempt"],
                        "max_attempts": row["max_attempts"],
                        "dedup_key": attempt.ctx.dedup_key,
                        "deadline": attempt.ctx.wrap_up_at,
                    },
                )
            )
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    message = await self._recv(child, left)
                except TimeoutError:
                    raise HardTimeout(
                        f"the attempt ran past its hard time limit of {task.timeout} s; "
                        "its process was killed"
                    ) from None
                except (EOFError, OSError):
                    child.process.join(5)
                    code = child.process.exitcode
                    raise WorkerCrashed(
                        f"the process running the task died (exit code {code})"
                    ) from None
                kind = message[0]
                if kind == "progress":
                    attempt.ctx.progress_sink(attempt.job_id, message[1])
                    continue
                healthy = True
                if kind == "ok":
                    return Encoded(message[1])
                _, type_name, text, tb, blob = message
                exc: BaseException
                try:
                    exc = pickle.loads(blob) if blob is not None else RemoteError(text)
                except Exception:
                    exc = RemoteError(f"{type_name}: {text}")
                setattr(exc, "__pgjobs_traceback__", tb)  # noqa: B010
                raise exc
        finally:
            attempt._interrupt = None
            if healthy:
                self._idle.put_nowait(child)
            else:
                self._replace(child)

    def stop_replacing(self) -> None:
        """From now on a child that is killed or dies is not replaced (the worker is stopping)."""
        self._closing = True

    async def close(self) -> None:
        """Stop every child: idle ones are asked, busy ones killed."""
        self._closing = True
        for spawning in list(self._spawning):
            with contextlib.suppress(Exception):
                await spawning
        while not self._idle.empty():
            child = self._idle.get_nowait()
            with contextlib.suppress(OSError):
                child.conn.send(("stop",))
        deadline = time.monotonic() + 5
        for child in list(self._all):
            child.process.join(max(0.0, deadline - time.monotonic()))
            child.kill()
        self._all.clear()
