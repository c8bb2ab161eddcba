"""Every worker setting, defined once: its name, type, default, bound and help.

`pgjobs.Worker(app, **settings)` checks its keyword arguments against this table
(WorkerConfig.make), and the `pgjobs worker` command makes its options from it
(pgjobs.cli), so a default or a bound cannot differ between the two. A setting with
no `option` is for Python callers only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pgjobs.core.errors import ConfigurationError

#: "count": a whole number; "seconds": a duration; "retention": a duration or None
#: (forever); "switch": on or off (--x/--no-x); "flag": off unless given (--x).
Kind = Literal["count", "seconds", "retention", "switch", "flag"]


@dataclass(frozen=True)
class Setting:
    """One worker setting: the Worker's keyword, and the CLI option made from it."""

    name: str
    kind: Kind
    default: Any
    help: str
    #: the least value allowed (checked by the Worker and by the CLI alike)
    minimum: float | None = None
    #: the `pgjobs worker` option, None for a setting of the Python API only
    option: str | None = None
    short: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "concurrency",
        "count",
        10,
        "Jobs run at once (with --processes, at least one per child process).",
        minimum=1,
        option="--concurrency",
        short="-c",
    ),
    Setting("burst", "flag", False, "Run what is ready, then exit.", option="--burst"),
    Setting(
        "poll_interval",
        "seconds",
        2.0,
        "Seconds between looks for jobs when no notification comes.",
        minimum=0.01,
        option="--poll-interval",
    ),
    Setting(
        "processes",
        "count",
        None,
        "Run `def` tasks in N child processes (a hard time limit then kills them).",
        minimum=1,
        option="--processes",
        short="-p",
    ),
    Setting(
        "grace_period",
        "seconds",
        30.0,
        "How long a stopping worker waits for its running jobs before it hands them back.",
        minimum=0,
        option="--grace-period",
    ),
    Setting(
        "heartbeat_interval",
        "seconds",
        5.0,
        "Seconds between renewals of the worker's lease.",
        minimum=0.05,
        option="--heartbeat-interval",
    ),
    Setting(
        "lease_ttl",
        "seconds",
        30.0,
        "Seconds without a heartbeat before a worker is taken for dead and its jobs rescued.",
        minimum=0.1,
        option="--lease-ttl",
    ),
    Setting(
        "keep_succeeded",
        "retention",
        86400.0,
        "How long succeeded jobs are kept (90, 30m, 2h, 7d, forever).",
        minimum=0,
        option="--keep-succeeded",
    ),
    Setting(
        "keep_failed",
        "retention",
        30 * 86400.0,
        "How long failed and cancelled jobs, and their dead letters, are kept.",
        minimum=0,
        option="--keep-failed",
    ),
    Setting(
        "vacuum",
        "switch",
        True,
        "Vacuum and analyze pgjobs' tables where autovacuum is off, as autovacuum would.",
        option="--vacuum",
    ),
    Setting(
        "max_lost",
        "count",
        3,
        "The crash budget: a job whose attempts are lost with their worker this many times "
        "in a row fails for good (WorkerLost). Lost attempts spend no retries.",
        minimum=1,
        option="--max-lost",
    ),
    Setting(
        "unknown_task_timeout",
        "seconds",
        3600.0,
        "How long jobs of a task no worker knows wait for one that does before they fail.",
        minimum=0,
        option="--unknown-task-timeout",
    ),
    Setting(
        "max_stuck_threads",
        "count",
        None,
        "Threads stuck past a hard time limit that the worker tolerates before it stops "
        "claiming and exits with status 75 to be restarted [default: half the concurrency].",
        minimum=0,
        option="--max-stuck-threads",
    ),
    Setting(
        "release_interval",
        "seconds",
        1.0,
        "Seconds between the leader's rounds that release scheduled jobs now due.",
        minimum=0.001,
    ),
    Setting("max_batch", "count", 500, "Jobs claimed, or outcomes written, per statement.", 1),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
QUEUE_ORDERS = ("priority", "strict", "weighted")


def default_text(setting: Setting) -> Any:
    """A setting's default as a person writes it: whole hours and days as 1h, 30d."""
    value = setting.default
    if setting.kind in ("seconds", "retention") and value is not None and value >= 3600:
        if value % 86400 == 0:
            return f"{int(value // 86400)}d"
        if value % 3600 == 0:
            return f"{int(value // 3600)}h"
    return value


@dataclass(frozen=True)
class WorkerConfig:
    """A worker's settings, checked: make one with WorkerConfig.make(**settings)."""

    queues: list[str]
    weights: list[float]
    queue_order: str
    #: jobs run at once: with processes, at least one per child process
    concurrency: int
    processes: int | None
    #: `module:attribute` of the App, for child processes (None: looked up)
    app_spec: str | None
    burst: bool
    poll_interval: float
    release_interval: float
    heartbeat_interval: float
    lease_ttl: float
    grace_period: float
    max_batch: int
    keep_succeeded: float | None
    keep_failed: float | None
    vacuum: bool
    max_lost: int
    unknown_task_timeout: float
    max_stuck_threads: int

    @classmethod
    def make(
        cls,
        *,
        queues: Sequence[str] | Mapping[str, float] = ("default",),
        queue_order: str | None = None,
        app_spec: str | None = None,
        **settings: Any,
    ) -> WorkerConfig:
        """Check `settings` (the names of SETTINGS) and fill in the defaults."""
        for name in settings:
            if name not in BY_NAME:
                raise TypeError(f"Worker() got an unexpected keyword argument {name!r}")
        values = {s.name: _checked(s, settings.get(s.name, s.default)) for s in SETTINGS}
        if values["lease_ttl"] < 2 * values["heartbeat_interval"]:
            raise ConfigurationError(
                f"lease_ttl ({values['lease_ttl']} s) must be at least twice heartbeat_interval "
                f"({values['heartbeat_interval']} s), or a slow heartbeat would look like a "
                "dead worker"
            )
        # Child processes run one attempt each: capacity is the number of children.
        values["concurrency"] = max(values["concurrency"], values["processes"] or 0)
        if values["max_stuck_threads"] is None:
            values["max_stuck_threads"] = max(1, values["concurrency"] // 2)
        names, weights, order = queue_plan(queues, queue_order)
        return cls(queues=names, weights=weights, queue_order=order, app_spec=app_spec, **values)


def _checked(setting: Setting, value: Any) -> Any:
    """`value` for `setting`, of its type and within its bound, or ConfigurationError."""
    name, kind = setting.name, setting.kind
    if value is None and (setting.default is None or kind == "retention"):
        return None
    if kind in ("switch", "flag"):
        return bool(value)
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{name} must be a whole number, got {value!r}")
    elif isinstance(value, timedelta):
        value = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    else:
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if setting.minimum is not None and value < setting.minimum:
        unit = "" if kind == "count" else " seconds"
        raise ConfigurationError(f"{name} must be at least {setting.minimum:g}{unit}, got {value}")
    return value


def queue_plan(
    queues: Sequence[str] | Mapping[str, float], order: str | None
) -> tuple[list[str], list[float], str]:
    """Queue names, their weights and the order to claim them in, checked."""
    if isinstance(queues, Mapping):
        weights = dict(queues)
        order = order or "weighted"
    else:
        weights = dict.fromkeys(queues, 1.0)
        order = order or "priority"
    if not weights or any(not q for q in weights):
        raise ConfigurationError("a worker needs at least one queue name")
    if order not in QUEUE_ORDERS:
        raise ConfigurationError(
            f"queue_order must be one of {', '.join(QUEUE_ORDERS)}, got {order!r}"
        )
    for name, weight in weights.items():
        if not weight > 0:
            raise ConfigurationError(f"queue {name!r}: weight must be positive, got {weight}")
    return list(weights), [float(w) for w in weights.values()], order
