"""Backlog thresholds and health checks, by the path applications import them from.

`from pgjobs.health import Threshold, check_health` (App(thresholds=...), a health
endpoint of one's own); they live in pgjobs.observe.health.
"""

from pgjobs.observe.health import (
    ANY_QUEUE,
    Breach,
    Health,
    QueueLevel,
    Threshold,
    check_health,
    evaluate,
    merge_thresholds,
)

__all__ = [
    "ANY_QUEUE",
    "Breach",
    "Health",
    "QueueLevel",
    "Threshold",
    "check_health",
    "evaluate",
    "merge_thresholds",
]
