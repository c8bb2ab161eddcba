"""Backlog thresholds per queue, and the xmin horizon: what `pgjobs check` and the metrics
alert on."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import psycopg

from pgjobs.core.errors import PgJobsError
from pgjobs.db import driver
from pgjobs.db.connections import aconnect, connect
from pgjobs.observe.horizon import Horizon
from pgjobs.observe.horizon import read as read_horizon

ANY_QUEUE = "*"


@dataclass(frozen=True)
class Threshold:
    """Limits for one queue: jobs waiting, and seconds the oldest ready job has waited."""

    max_depth: int | None = None
    max_age: float | None = None


def threshold_for(thresholds: Mapping[str, Threshold], queue: str) -> Threshold | None:
    """The queue's limits: its own where set, else those for every queue ("*"), else None."""
    own, every = thresholds.get(queue), thresholds.get(ANY_QUEUE)
    if own is None or every is None:
        return own or every
    return Threshold(
        max_depth=own.max_depth if own.max_depth is not None else every.max_depth,
        max_age=own.max_age if own.max_age is not None else every.max_age,
    )


def merge_thresholds(
    base: Mapping[str, Threshold], override: Mapping[str, Threshold]
) -> dict[str, Threshold]:
    """Thresholds in which each limit that `override` sets wins over `base`, queue by queue."""
    merged: dict[str, Threshold] = {}
    # Every key of either side, "*" included: threshold_for() on the result
    # then gives, for any queue, base's limits with override's laid on top.
    for queue in {*base, *override}:
        low = base.get(queue, base.get(ANY_QUEUE)) or Threshold()
        high = override.get(queue, override.get(ANY_QUEUE)) or Threshold()
        merged[queue] = Threshold(
            max_depth=high.max_depth if high.max_depth is not None else low.max_depth,
            max_age=high.max_age if high.max_age is not None else low.max_age,
        )
    return merged


@dataclass(frozen=True)
class QueueLevel:
    """A queue's backlog now: jobs waiting, jobs ready, the oldest ready job, and how many
    live workers serve the queue (None where that was not read)."""

    queue: str
    depth: int = 0
    pending: int = 0
    oldest_pending_age: float | None = None
    oldest_pending_id: uuid.UUID | None = None
    workers: int | None = None

    @property
    def unserved(self) -> bool:
        """Jobs are ready to run and no live worker serves the queue: nothing will run them."""
        return self.pending > 0 and self.workers == 0


Limit = Literal["max_depth", "max_age", "no_worker"]


@dataclass(frozen=True)
class Breach:
    """One queue over one limit: which limit, the value seen and the maximum allowed."""

    queue: str
    limit: Limit
    value: float
    maximum: float

    def describe(self) -> str:
        """One line naming the queue, the value and the limit."""
        if self.limit == "max_depth":
            return f"queue {self.queue} has {self.value:.0f} jobs waiting (max {self.maximum:.0f})"
        if self.limit == "no_worker":
            return (
                f"queue {self.queue} has {self.value:.0f} jobs pending "
                "and no live worker serving it"
            )
        return (
            f"queue {self.queue}: oldest pending job has waited {seconds(self.value)} "
            f"(max {seconds(self.maximum)})"
        )


@dataclass(frozen=True)
class Health:
    """The levels of the queues checked, their thresholds, and the breaches among them; and
    the xmin horizon, where it was checked."""

    levels: dict[str, QueueLevel]
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    breaches: list[Breach] = field(default_factory=list)
    horizon: Horizon | None = None

    @property
    def ok(self) -> bool:
        """True when no queue is over a limit and no holder holds the horizon past its limit."""
        return not self.breaches and not (self.horizon is not None and self.horizon.is_held)

    def summary(self, shown: int = 5) -> str:
        """One line: "ok: ..." with the queues checked, else every breach."""
        if not self.ok:
            held = [self.horizon.summary()] if self.horizon and self.horizon.is_held else []
            return "; ".join([*held, *(b.describe() for b in self.breaches)])
        checked = [self.levels[q] for q in self.thresholds]
        if not checked:
            return "ok: no queue has jobs waiting"
        parts = []
        for level in checked[:shown]:
            part = f"{level.queue} {level.depth} waiting"
            if level.oldest_pending_age is not None:
                part += f", oldest {seconds(level.oldest_pending_age)}"
            parts.append(part)
        if len(checked) > shown:
            parts.append(f"{len(checked) - shown} more")
        noun = "queue" if len(checked) == 1 else "queues"
        return f"ok: {len(checked)} {noun} within limits ({'; '.join(parts)})"


def seconds(value: float) -> str:
    """Seconds for a message: 300s, 1.5s, 0.2s."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text}s"


def evaluate(
    levels: Mapping[str, QueueLevel],
    thresholds: Mapping[str, Threshold],
    queues: Iterable[str] = (),
) -> Health:
    """Compare each queue's level with its threshold; `queues` are checked even when empty.

    The queues checked are those with waiting jobs, those a threshold names,
    and `queues`; a queue with no jobs waiting has depth 0 and no age, and a
    queue without a threshold (own or "*") is never in breach. A queue checked
    whose level says it is unserved (pending jobs, no live worker) is a
    "no_worker" breach, whatever its limits.
    """
    names = sorted({*levels, *(q for q in thresholds if q != ANY_QUEUE), *queues})
    seen: dict[str, QueueLevel] = {}
    applied: dict[str, Threshold] = {}
    breaches: list[Breach] = []
    for name in names:
        level = seen[name] = levels.get(name) or QueueLevel(name)
        limit = threshold_for(thresholds, name)
        if limit is None or (limit.max_depth is None and limit.max_age is None):
            continue
        applied[name] = limit
        if limit.max_depth is not None and level.depth > limit.max_depth:
            breaches.append(Breach(name, "max_depth", level.depth, limit.max_depth))
        age = level.oldest_pending_age
        if limit.max_age is not None and age is not None and age > limit.max_age:
            breaches.append(Breach(name, "max_age", age, limit.max_age))
        if level.unserved:
            breaches.append(Breach(name, "no_worker", level.pending, 0))
    return Health(levels=seen, thresholds=applied, breaches=breaches)


def levels_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, QueueLevel]:
    """QueueLevels from rows of the queue_levels statement read as dicts."""
    return {
        r["queue"]: QueueLevel(
            r["queue"],
            int(r["depth"]),
            int(r["pending"]),
            None if r["oldest_pending_age"] is None else float(r["oldest_pending_age"]),
            r["oldest_pending_id"],
            int(r["workers"]),
        )
        for r in rows
    }


def levels_op(timeout_ms: str | None = None) -> driver.Op:
    """Each queue with waiting jobs and its level, for Database.run() / arun(): the read
    behind every health check (the queue_levels statement: the pgjobs.queue_oldest view,
    which reads waiting jobs only, and each queue's live workers). With `timeout_ms`, the
    transaction's statements are bounded first (a probe's, on a connection of its own)."""
    if timeout_ms is not None:
        yield from _probe_timeout_op(timeout_ms)
    rows = yield "queue_levels", {}, "all"
    return levels_of(rows)


def _probe_timeout_op(timeout_ms: str) -> driver.Op:
    # Local to the probe's transaction (see probe_timeout in sql/): behind a
    # transaction-pooling PgBouncer a session setting would stay on a connection others get.
    yield "probe_timeout", {"milliseconds": timeout_ms}, "none"


def unserved_tasks(tasks: Iterable[Any], queues: Iterable[str]) -> dict[str, list[str]]:
    """The registered tasks (pgjobs Tasks) whose queue is not among `queues`, by queue."""
    served = set(queues)
    out: dict[str, list[str]] = {}
    for task in tasks:
        queue = task.defaults.queue
        if queue not in served:
            out.setdefault(queue, []).append(task.name)
    return {q: sorted(names) for q, names in sorted(out.items())}


def _translate(exc: psycopg.Error, where: str) -> Exception:
    if isinstance(exc, psycopg.errors.UndefinedTable):
        # Schema missing, or older than the revision that made the view.
        return driver.SchemaMissing(
            f"the database at {driver.describe(where)} has no pgjobs.queue_oldest view: "
            "run `pgjobs migrate`"
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return driver.DatabaseUnavailable(
            f"Postgres at {driver.describe(where)} did not answer in time: {exc}".strip()
        )
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return driver.translate(exc, where) or PgJobsError(
        f"reading pgjobs.queue_oldest at {driver.describe(where)} failed: {first_line}"
    )


def _limits(seconds: float) -> tuple[int, str]:
    """libpq's connect_timeout (whole seconds, at least 1) and a statement_timeout in ms."""
    return max(1, round(seconds)), str(max(1, round(seconds * 1000)))


def read_levels(
    source: str | psycopg.Connection[Any], *, connect_timeout: float = 10.0
) -> dict[str, QueueLevel]:
    """Each queue with waiting jobs and its level, read from pgjobs.queue_oldest.

    On a URL, `connect_timeout` bounds both the connection and the query; a
    connection of the caller's is used as it is, in its transaction.
    """
    if isinstance(source, str):
        source = driver.normalize_url(source)
    where = source if isinstance(source, str) else source.info.dsn
    try:
        if isinstance(source, str):
            limit, statement = _limits(connect_timeout)
            with connect(source, connect_timeout=limit) as conn:
                # A probe must not hang on a lock (a migration, a TRUNCATE).
                levels: dict[str, QueueLevel] = driver.run(levels_op(statement), conn)
                return levels
        return driver.run(levels_op(), source)  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise _translate(exc, where) from None


async def aread_levels(
    source: str | psycopg.AsyncConnection[Any], *, connect_timeout: float = 10.0
) -> dict[str, QueueLevel]:
    """Async twin of read_levels()."""
    if isinstance(source, str):
        source = driver.normalize_url(source)
    where = source if isinstance(source, str) else source.info.dsn
    try:
        if isinstance(source, str):
            limit, statement = _limits(connect_timeout)
            async with await aconnect(source, connect_timeout=limit) as conn:
                levels: dict[str, QueueLevel] = await driver.arun(levels_op(statement), conn)
                return levels
        return await driver.arun(levels_op(), source)  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise _translate(exc, where) from None


def check_health(
    source: str | psycopg.Connection[Any],
    thresholds: Mapping[str, Threshold],
    queues: Iterable[str] = (),
    *,
    connect_timeout: float = 10.0,
    horizon_max_age: float | None = None,
) -> Health:
    """Read the queues' levels from a URL or connection and evaluate() them; with
    `horizon_max_age`, read the xmin horizon too, on the same connection."""
    if horizon_max_age is None:
        return evaluate(read_levels(source, connect_timeout=connect_timeout), thresholds, queues)
    if isinstance(source, str):
        source = driver.normalize_url(source)
    where = source if isinstance(source, str) else source.info.dsn
    try:
        if isinstance(source, str):
            limit, statement = _limits(connect_timeout)
            with connect(source, connect_timeout=limit) as conn:
                driver.run(_probe_timeout_op(statement), conn)
                levels = read_levels(conn)
                held = read_horizon(conn, horizon_max_age)
        else:
            levels = read_levels(source)
            held = read_horizon(source, horizon_max_age)
    except psycopg.Error as exc:
        raise _translate(exc, where) from None
    return replace(evaluate(levels, thresholds, queues), horizon=held)


async def acheck_health(
    source: str | psycopg.AsyncConnection[Any],
    thresholds: Mapping[str, Threshold],
    queues: Iterable[str] = (),
    *,
    connect_timeout: float = 10.0,
) -> Health:
    """Async twin of check_health()."""
    levels = await aread_levels(source, connect_timeout=connect_timeout)
    return evaluate(levels, thresholds, queues)
