"""Structured logs: one line per job transition, as text or as JSON.

Every change of a job's status is logged on the `pgjobs.jobs` logger, at
INFO (WARNING when the job failed for good, or was rescued from a worker that
died), with a human message and the same facts as structured fields under one
`extra` key, EXTRA_KEY, so a formatter can emit them as keys of their own:

    job_id, task, queue, from, to, attempt, duration [, error, reason, retry_in]

`from` is None for a new job. `duration` is in seconds, and is the length of
whatever the transition ends: the attempt's run time when it leaves
'running', the wait when it leaves 'pending' (since its run_at), 'scheduled'
(since it was created), 'retrying' (since the failed attempt ended) or
'failed' / 'cancelled' (since it ended); for a new job, how long its insert
took (for a batch, the whole batch's).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from pgjobs.core.errors import ConfigurationError
from pgjobs.core.jobs import Status

#: The logger every transition goes to. Set its level to WARNING to keep only
#: jobs that failed for good and rescues.
log = logging.getLogger("pgjobs.jobs")

#: The one attribute the transition fields travel under on a LogRecord (as
#: `extra={EXTRA_KEY: {...}}`): a single key that no LogRecord attribute uses.
EXTRA_KEY = "pgjobs"

FORMATS = ("text", "json")
FORMAT_ENV = "PGJOBS_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_MESSAGE = "job %s %s %s %s -> %s (attempt %d, %s)%s"
#: The clock enqueue durations are measured with.
clock = time.perf_counter


class NewRow(Protocol):
    """What enqueued() needs of a job just inserted (pgjobs.client.encoding.NewJob has it)."""

    @property
    def id(self) -> Any: ...
    @property
    def task(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def status(self) -> str: ...


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "duration unknown"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def transition(
    job_id: Any,
    task: str,
    queue: str,
    source: Status | str | None,
    target: Status | str,
    attempt: int,
    duration: float | None,
    *,
    error: str | None = None,
    reason: str | None = None,
    retry_in: float | None = None,
    level: int | None = None,
) -> None:
    """Log one job's move from `source` (None: a new job) to `target` on `pgjobs.jobs`."""
    to = str(target)
    if level is None:
        level = logging.WARNING if to == Status.FAILED else logging.INFO
    if not log.isEnabledFor(level):
        return
    source_text = None if source is None else str(source)
    jid = str(job_id)
    fields: dict[str, Any] = {
        "job_id": jid,
        "task": task,
        "queue": queue,
        "from": source_text,
        "to": to,
        "attempt": attempt,
        "duration": None if duration is None else round(duration, 6),
    }
    detail = ""
    if retry_in is not None:
        fields["retry_in"] = round(retry_in, 6)
        detail = f", next in {retry_in:.2f} s"
    tail = ""
    if error is not None:
        fields["error"] = error
        tail = f": {error}"
    if reason is not None:
        fields["reason"] = reason
        tail = f"{tail}: {reason}" if tail else f": {reason}"
    args = (
        jid,
        task,
        queue,
        source_text or "new",
        to,
        attempt,
        _duration_text(duration) + detail,
        tail,
    )
    # makeRecord() and handle() are what Logger.info() does after finding its
    # caller in the stack; skipping that walk takes a third off each line,
    # which a worker logging two lines per job feels. The record names this
    # module as its source, as it would anyway.
    record = log.makeRecord(
        log.name, level, __file__, _LINE, _MESSAGE, args, None, "transition", {EXTRA_KEY: fields}
    )
    log.handle(record)


_LINE = transition.__code__.co_firstlineno


def enqueued(rows: Iterable[NewRow], started: float) -> None:
    """Log new jobs, inserted in `clock() - started` seconds: one line each (at INFO only)."""
    if not log.isEnabledFor(logging.INFO):
        return
    took = clock() - started
    for r in rows:
        transition(r.id, r.task, r.queue, None, r.status, 0, took)


def claimed(rows: Iterable[Mapping[str, Any]]) -> None:
    """Log jobs a worker just claimed (pending -> running); their `waited` is the duration."""
    for r in rows:
        transition(
            r["id"],
            r["task"],
            r["queue"],
            Status.PENDING,
            Status.RUNNING,
            r["attempt"],
            r["waited"],
        )


def from_rows(
    rows: Iterable[Mapping[str, Any]],
    source: Status | str | None = None,
    *,
    reason: str | None = None,
    error: str | None = None,
    level: int | None = None,
) -> None:
    """Log the transitions a statement returned: columns id, task, queue, attempt, status,
    duration, and from_status unless `source` is given."""
    for r in rows:
        transition(
            r["id"],
            r["task"],
            r["queue"],
            source if source is not None else r["from_status"],
            r["status"],
            r["attempt"],
            r["duration"],
            reason=reason,
            error=error,
            level=level,
        )


# One encoder for every line (json.dumps would build one per call). default=str:
# a value in the fields that JSON has no type for (a UUID, a datetime) is
# written as text rather than losing the line.
_ENCODER = json.JSONEncoder(default=str)


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO-8601, UTC), level, logger, message, and the
    transition fields as keys of their own; exc_info as text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__.get(EXTRA_KEY)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                data.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(data)


def _level(text: str) -> int:
    name = text.strip().upper()
    if name.isdigit():
        return int(name)
    levels = logging.getLevelNamesMapping()
    if name not in levels:
        raise ConfigurationError(
            f"unknown log level {text.strip()!r} (one of: DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        )
    return levels[name]


def parse_levels(spec: str | int) -> tuple[int, dict[str, int]]:
    """'INFO' or 'INFO,pgjobs.jobs=WARNING' -> the root level and levels of named loggers."""
    if isinstance(spec, int):
        return spec, {}
    root: int | None = None
    named: dict[str, int] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        if eq:
            if not name.strip():
                raise ConfigurationError(f"a logger name is missing in {part.strip()!r}")
            named[name.strip()] = _level(value)
        else:
            root = _level(name)
    return (logging.INFO if root is None else root), named


def configure_logging(
    level: str | int = "INFO", fmt: str | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Log to `stream` (stderr) as 'text' or 'json' (default: $PGJOBS_LOG_FORMAT, else text)."""
    chosen = (fmt or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if chosen not in FORMATS:
        raise ConfigurationError(f"unknown log format {chosen!r} (one of: {', '.join(FORMATS)})")
    root_level, named = parse_levels(level)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    handler.set_name("pgjobs")
    root = logging.getLogger()
    # Calling it again replaces its own handler, never one someone else added.
    for old in [h for h in root.handlers if h.get_name() == "pgjobs"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(root_level)
    for name, value in named.items():
        logging.getLogger(name).setLevel(value)
    # Warnings become log records, so a JSON log stays one object per line.
    logging.captureWarnings(True)
    return handler
