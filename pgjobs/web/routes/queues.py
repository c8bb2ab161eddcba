"""/api/queues, /api/tasks and /api/stats/finished: what waits, what may be enqueued, what ended."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from pgjobs.observe.health import QueueLevel, evaluate, levels_op
from pgjobs.web.context import CurrentApp
from pgjobs.web.routing import Routes, unprocessable
from pgjobs.web.schemas import QueueView, SeriesPoint, TaskView

routes = Routes()


@routes.get("/api/queues", response_model=list[QueueView], tags=["queues"])
async def queues(app: CurrentApp) -> Any:
    """Every queue: jobs by status, depth, age of the oldest ready job, thresholds, and
    whether a live worker serves it."""
    stats = await app.aqueues()
    served: dict[str, QueueLevel] = await app.database.arun(levels_op())
    levels = {
        q.queue: QueueLevel(q.queue, q.depth, q.counts.get("pending", 0), q.oldest_pending_age)
        for q in stats
    }
    health = evaluate(levels, app.thresholds)
    over = {b.queue for b in health.breaches}
    out = []
    for q in stats:
        limit = health.thresholds.get(q.queue)
        level = served.get(q.queue)
        unserved = level is not None and level.unserved
        out.append(
            {
                "queue": q.queue,
                "counts": q.counts,
                "depth": q.depth,
                "oldest_pending_age": q.oldest_pending_age,
                "max_depth": limit.max_depth if limit else None,
                "max_age": limit.max_age if limit else None,
                "workers": None if level is None else level.workers,
                "unserved": unserved,
                "healthy": q.queue not in over and not unserved,
            }
        )
    return out


@routes.get("/api/tasks", response_model=list[TaskView], tags=["queues"])
async def tasks(app: CurrentApp) -> Any:
    """The tasks registered with this API's App: what POST /api/jobs accepts."""
    schedules: dict[str, list[str]] = {}
    for p in app.periodics.values():
        schedules.setdefault(p.task.name, []).append(
            f"{p.schedule.expression} ({p.schedule.timezone})"
        )
    return [
        {
            "name": t.name,
            "queue": t.defaults.queue,
            "priority": t.defaults.priority,
            "max_attempts": t.defaults.max_attempts,
            "is_async": t.is_async,
            "timeout": t.timeout,
            "soft_timeout": t.soft_timeout,
            "concurrency": t.concurrency,
            "rate_limit": t.rate_limit,
            "periodic": schedules.get(t.name, []),
            "doc": (t.__doc__ or "").strip().splitlines()[0] if t.__doc__ else None,
        }
        for t in sorted(app.tasks.values(), key=lambda t: t.name)
    ]


@routes.get("/api/stats/finished", response_model=list[SeriesPoint], tags=["queues"])
async def finished(
    app: CurrentApp,
    window: Annotated[int, Query(ge=60, le=7 * 86400)] = 3600,
    step: Annotated[int, Query(ge=1, le=86400)] = 60,
) -> Any:
    """Jobs that ended per queue and time bucket: the throughput charts."""
    if step > window:
        raise unprocessable(["query", "step"], "step exceeds window")
    return await app.afinished_series(window, step)
