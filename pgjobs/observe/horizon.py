"""The xmin horizon: who keeps VACUUM from removing the dead rows of pgjobs' tables.

VACUUM may remove a dead row only once nobody can still see it: the oldest
snapshot that may (the xmin horizon) decides. One long transaction anywhere
in the database (a report, pg_dump, a session left idle in transaction), a
prepared transaction, a replication slot or a standby's feedback holds it
back, and every job claimed or finished meanwhile leaves rows and claim index
entries that nothing can remove: claims walk them and slow down, and the
table and its indexes grow for as long as it lasts.

read_op() is the one read of it, as a step of pgjobs' operations (see
pgjobs.db.driver): the leader (Watch below), `pgjobs check` (pgjobs.health), the
Prometheus metrics and the web API all use it. A hold counts as held past
the threshold (PGJOBS_HORIZON_MAX_AGE, 5 minutes by default) once it has
lasted longer than that. Where Postgres records no start (a replication slot in use,
a standby's feedback, a session of a role this one may not see the details
of), the leader times the hold itself from when it first sees it; a single
read shows such a holder's age in transactions only.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg

from pgjobs.core.errors import ConfigurationError
from pgjobs.db import driver

log = logging.getLogger("pgjobs.maintenance")

#: The setting: how long a holder may hold the horizon before pgjobs warns.
ENV = "PGJOBS_HORIZON_MAX_AGE"
#: Five minutes: past the longest transaction a queue's own work needs, well
#: before its dead rows (two per job) slow the claims down.
DEFAULT_MAX_AGE = 300.0
#: The query that lists every holder, for the one who reads the warning.
INSPECT = "sql/inspect/xmin_horizon.sql"
#: Seconds between two of the leader's looks at most (a look reads pg_stat_activity).
INTERVAL = 5.0
#: Holds that were warned of and have ended, remembered so that a session
#: whose snapshot comes and goes within one transaction is warned of once.
REMEMBERED = 1000

#: One hold: kind, pid, name, and its start (or its xmin where Postgres records no start).
Key = tuple[str, int | None, str, str]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_max_age(value: str, where: str = ENV) -> float:
    """Seconds in '300', '90s', '5m' or '1h'."""
    text = value.strip()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigurationError(f"{where} takes a positive duration (300, 90s, 5m), got {value!r}")
    return seconds


def max_age_setting(value: float | None = None, environ: Mapping[str, str] = os.environ) -> float:
    """The threshold in seconds: `value` when given, else $PGJOBS_HORIZON_MAX_AGE, else 300."""
    if value is not None:
        if not value > 0:
            raise ConfigurationError(f"horizon_max_age must be positive, got {value}")
        return float(value)
    env = environ.get(ENV)
    return parse_max_age(env) if env else DEFAULT_MAX_AGE


@dataclass(frozen=True)
class Holder:
    """One session, prepared transaction or replication slot that holds the horizon back."""

    kind: str  # "session", "prepared transaction" or "replication slot"
    pid: int | None  # a session's (a slot's while in use), else None
    name: str  # application_name, the prepared transaction's gid, the slot's name
    username: str | None
    database: str | None
    state: str | None  # a session's state; a slot's "active"/"inactive"
    since: datetime | None  # when the hold started, where Postgres records it
    seconds: float | None  # how long it has held, where known
    state_seconds: float | None  # a session's time in its present state
    xmin: str  # the transaction id the hold starts at
    xmin_age: int  # how many transactions ago that was
    query: str | None  # the start of a session's last statement

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Holder:
        return cls(
            kind=r["kind"],
            pid=r["pid"],
            name=r["name"] or "",
            username=r["username"],
            database=r["database"],
            state=r["state"],
            since=r["since"],
            seconds=None if r["seconds"] is None else max(0.0, float(r["seconds"])),
            state_seconds=None if r["state_seconds"] is None else float(r["state_seconds"]),
            xmin=r["xmin"],
            xmin_age=int(r["xmin_age"]),
            query=r["query"],
        )

    @property
    def key(self) -> Key:
        """One hold: a session's transaction, a prepared transaction, a slot at one xmin."""
        start = self.since.isoformat() if self.since is not None else self.xmin
        return (self.kind, self.pid, self.name, start)

    def describe(self) -> str:
        """Who it is, in a few words: kind, pid, name and state."""
        if self.kind == "session":
            app = f"application_name '{self.name}'" if self.name else "no application_name"
            return f"session pid {self.pid} ({app}, {self.state or 'state unknown'})"
        if self.kind == "prepared transaction":
            return f"prepared transaction '{self.name}' (owner {self.username})"
        return f"replication slot '{self.name}' ({self.state})"

    def held_for(self) -> str:
        """How long it has held: seconds where known, else transactions."""
        if self.seconds is None:
            return f"{self.xmin_age} transactions"
        return f"{_secs(self.seconds)} ({self.xmin_age} transactions)"

    def remedy(self) -> str:
        """What ends the hold."""
        if self.kind == "session":
            return f"end it (pg_terminate_backend({self.pid})) or let it finish"
        if self.kind == "prepared transaction":
            return f"COMMIT PREPARED or ROLLBACK PREPARED '{self.name}'"
        return f"reconnect its consumer, or drop it (pg_drop_replication_slot('{self.name}'))"

    def warning(self) -> str:
        """The leader's warning: who, how long, doing what, and what to do."""
        if self.kind == "session":
            app = f"application_name '{self.name}'" if self.name else "no application_name"
            parts = [f"session pid {self.pid}", app, self.state or "state unknown"]
            if self.state_seconds is not None:
                parts[-1] += f" for {_secs(self.state_seconds)}"
            if self.username:
                parts.append(f"user {self.username}")
        elif self.kind == "prepared transaction":
            parts = [f"prepared transaction '{self.name}'", f"owner {self.username}"]
        else:
            parts = [f"replication slot '{self.name}'", self.state or "state unknown"]
        if self.database:
            parts.append(f"database {self.database}")
        if self.query:
            parts.append(f"query {self.query[:80]!r}")
        return (
            f"xmin horizon held for {self.held_for()} by {', '.join(parts)}: VACUUM can remove "
            f"no dead row of pgjobs' tables while it lasts, and claims slow down; "
            f"{self.remedy()}; see {INSPECT}"
        )


def _secs(value: float) -> str:
    """Seconds for a message, as pgjobs.health writes them: 300s, 6.9s."""
    return f"{value:.1f}".rstrip("0").rstrip(".") + "s"


@dataclass(frozen=True)
class Horizon:
    """Everything that holds the horizon back now, oldest first, and the threshold."""

    holders: tuple[Holder, ...]
    max_age: float

    @property
    def held(self) -> list[Holder]:
        """The holders past the threshold."""
        return [h for h in self.holders if h.seconds is not None and h.seconds > self.max_age]

    @property
    def is_held(self) -> bool:
        """Some holder is past the threshold."""
        return bool(self.held)

    @property
    def age(self) -> float:
        """Seconds the oldest hold has lasted (0 when none is known)."""
        return max((h.seconds for h in self.holders if h.seconds is not None), default=0.0)

    @property
    def xmin_age(self) -> int:
        """How many transactions old the horizon is (0 when nothing holds it)."""
        return max((h.xmin_age for h in self.holders), default=0)

    def summary(self) -> str:
        """One line naming the holder past the threshold that has held longest, or 'ok: ...'."""
        held = sorted(self.held, key=lambda h: h.seconds or 0.0, reverse=True)
        if not self.holders:
            return f"ok: nothing holds the xmin horizon (max {_secs(self.max_age)})"
        if not held:
            longest, limit = _secs(self.age), _secs(self.max_age)
            return f"ok: xmin horizon held for {longest} at most (max {limit})"
        first = held[0]
        more = f" and {len(held) - 1} more" if len(held) > 1 else ""
        return (
            f"xmin horizon held for {first.held_for()} by {first.describe()}{more} "
            f"(max {_secs(self.max_age)}); see {INSPECT}"
        )

    def timed(self, first_seen: dict[Key, float]) -> Horizon:
        """This horizon with the holds Postgres does not date timed from `first_seen`
        (monotonic times by key, updated here: new holds added, ended ones removed)."""
        now = time.monotonic()
        keys = {h.key for h in self.holders}
        for key in [k for k in first_seen if k not in keys]:
            del first_seen[key]
        holders = []
        for h in self.holders:
            seen = first_seen.setdefault(h.key, now)
            holders.append(h if h.seconds is not None else replace(h, seconds=now - seen))
        return Horizon(tuple(holders), self.max_age)


def read_op(max_age: float) -> driver.Op:
    """The horizon now: run by pgjobs.db.driver.run()/arun() or as a step of another operation."""
    rows = yield "xmin_horizon", {}, "all"
    return Horizon(tuple(Holder.from_row(r) for r in rows), max_age)


def read(conn: psycopg.Connection[Any], max_age: float) -> Horizon:
    """The horizon now, read on `conn`."""
    horizon: Horizon = driver.run(read_op(max_age), conn)
    return horizon


async def aread(conn: psycopg.AsyncConnection[Any], max_age: float) -> Horizon:
    """Async twin of read()."""
    horizon: Horizon = await driver.arun(read_op(max_age), conn)
    return horizon


@dataclass(frozen=True)
class Look:
    """What one look of the leader found: the horizon, the holds it warned of, and those
    it had warned of that have ended."""

    horizon: Horizon
    warned: list[Holder]
    released: list[Holder]


class Watch:
    """The leader's watch: one WARNING per hold past the threshold, one INFO when it ends."""

    def __init__(self, max_age: float, interval: float | None = None) -> None:
        self.max_age = max_age
        # Often enough to warn within half the threshold of its passing.
        self.interval = interval if interval is not None else min(INTERVAL, max_age / 2)
        self._first_seen: dict[Key, float] = {}
        self._warned: dict[Key, Holder] = {}
        self._ended: dict[Key, None] = {}

    @property
    def is_held(self) -> bool:
        """A hold past the threshold was seen at the last look and has not ended since."""
        return bool(self._warned)

    async def run_once(self, conn: psycopg.AsyncConnection[Any]) -> Look:
        """Read the horizon, warn of holds newly past the threshold, and tell of those ended."""
        horizon = (await aread(conn, self.max_age)).timed(self._first_seen)
        warned = [h for h in horizon.held if h.key not in self._warned and h.key not in self._ended]
        for h in warned:
            self._warned[h.key] = h
            log.warning(h.warning())
        current = {h.key: h for h in horizon.holders}
        released = []
        for key in list(self._warned):
            if key in current:
                self._warned[key] = current[key]
                continue
            last = self._warned.pop(key)
            released.append(last)
            self._remember(key)
            log.info(
                "xmin horizon released by %s after %s or more; VACUUM can remove dead rows again",
                last.describe(),
                last.held_for(),
            )
        return Look(horizon, warned, released)

    def _remember(self, key: Key) -> None:
        self._ended[key] = None
        while len(self._ended) > REMEMBERED:
            del self._ended[next(iter(self._ended))]
