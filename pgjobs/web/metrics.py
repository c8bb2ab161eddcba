"""Prometheus metrics read from the database at scrape time.

Gauges (depth, oldest ready job, workers) are read as they are now. Counters
and histograms (jobs ended, run time, wait) grow from the jobs that ended
since the previous scrape, read by finished_at through jobs_finished_idx, so
they cost the workers nothing. A scrape reads up to `lag` seconds ago: a job
whose finishing transaction commits within that lag is still counted, once.
Each process that serves /metrics counts from its own first scrape (a
restart is a counter reset, which Prometheus' rate() expects). The xmin
horizon is read as pgjobs.observe.horizon reads it for the leader and
`pgjobs check`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pgjobs.db import driver
from pgjobs.observe import horizon
from pgjobs.observe.health import QueueLevel, evaluate, levels_of

if TYPE_CHECKING:
    from pgjobs.client.app import App

RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 15, 60, 300, 3600)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class JobsCollector(Collector):
    """The pgjobs metrics of one database, for a prometheus_client registry."""

    def __init__(self, app: App, lag: float = 2.0) -> None:
        self.app = app
        self.lag = timedelta(seconds=lag)
        self._lock = threading.Lock()
        self._since: datetime | None = None
        self._ended: dict[tuple[str, str, str], int] = defaultdict(int)
        self._run: dict[tuple[str, str], _Histogram] = {}
        self._wait: dict[tuple[str, str], _Histogram] = {}

    def collect(self) -> Iterator[Metric]:
        """Read the database and yield every metric family."""
        with self._lock:
            snapshot = self.app.database.run(self._read())
        yield from snapshot

    def _read(self) -> driver.Op:
        row = yield "db_now", {}, "one"
        until = row["now"] - self.lag
        if self._since is None:
            self._since = until
        if until > self._since:
            ended = yield "metrics_finished", {"since": self._since, "until": until}, "all"
            self._count(ended)
            self._since = until
        depth = yield "depth_by_status", {}, "all"
        levels = yield "queue_levels", {}, "all"
        workers = yield "workers_alive", {}, "all"
        held = yield from horizon.read_op(self.app.horizon_max_age)
        return [
            *self._gauges(depth, levels_of(levels), workers),
            *_horizon_gauges(held),
            *self._totals(),
        ]

    def _count(self, rows: list[Any]) -> None:
        for r in rows:
            key = (r["queue"], r["task"])
            self._ended[(r["queue"], r["task"], r["status"])] += 1
            if r["run_s"] is not None:
                self._run.setdefault(key, _Histogram(RUN_BUCKETS)).observe(float(r["run_s"]))
            if r["wait_s"] is not None:
                wait = max(0.0, float(r["wait_s"]))
                self._wait.setdefault(key, _Histogram(WAIT_BUCKETS)).observe(wait)

    def _gauges(
        self, depth: list[Any], levels: dict[str, QueueLevel], workers: list[Any]
    ) -> list[Metric]:
        jobs = GaugeMetricFamily(
            "pgjobs_queue_jobs", "Jobs in each queue by status, now.", labels=["queue", "status"]
        )
        for r in depth:
            jobs.add_metric([r["queue"], r["status"]], r["jobs"])
        waiting = GaugeMetricFamily(
            "pgjobs_queue_depth",
            "Jobs waiting to run (pending, scheduled, retrying).",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "pgjobs_queue_oldest_pending_seconds",
            "How long the oldest ready job of each queue has waited (0 when none).",
            labels=["queue"],
        )
        exceeded = GaugeMetricFamily(
            "pgjobs_queue_threshold_exceeded",
            "1 when a queue is over its configured threshold (limit: depth or age).",
            labels=["queue", "limit"],
        )
        limits = GaugeMetricFamily(
            "pgjobs_queue_threshold", "The configured thresholds.", labels=["queue", "limit"]
        )
        unserved = GaugeMetricFamily(
            "pgjobs_queue_unserved",
            "1 when a queue has pending jobs and no live worker serves it.",
            labels=["queue"],
        )
        queues = {r["queue"] for r in depth}
        health = evaluate(levels, self.app.thresholds, queues)
        over = {(b.queue, b.limit) for b in health.breaches}
        for queue, level in sorted(health.levels.items()):
            waiting.add_metric([queue], level.depth)
            oldest.add_metric([queue], level.oldest_pending_age or 0.0)
            unserved.add_metric([queue], int(level.unserved))
            limit = health.thresholds.get(queue)
            if limit is None:
                continue
            for name, value in (("depth", limit.max_depth), ("age", limit.max_age)):
                if value is not None:
                    limits.add_metric([queue, name], value)
                    exceeded.add_metric([queue, name], int((queue, f"max_{name}") in over))
        alive = GaugeMetricFamily(
            "pgjobs_workers_alive",
            "Workers whose heartbeat is within their lease.",
            value=len(workers),
        )
        busy = GaugeMetricFamily(
            "pgjobs_worker_slots", "Job slots of live workers, by use.", labels=["state"]
        )
        running = sum(w["running_jobs"] for w in workers)
        busy.add_metric(["busy"], running)
        busy.add_metric(["free"], max(0, sum(w["concurrency"] for w in workers) - running))
        return [jobs, waiting, oldest, exceeded, limits, unserved, alive, busy]

    def _totals(self) -> list[Metric]:
        ended = CounterMetricFamily(
            "pgjobs_jobs_finished",
            "Jobs that ended, by queue, task and outcome.",
            labels=["queue", "task", "outcome"],
        )
        for (queue, task, outcome), n in sorted(self._ended.items()):
            ended.add_metric([queue, task, outcome], n)
        run = HistogramMetricFamily(
            "pgjobs_job_run_seconds",
            "Run time of the attempt that ended each job.",
            labels=["queue", "task"],
        )
        for (queue, task), h in sorted(self._run.items()):
            run.add_metric([queue, task], h.cumulative(), h.sum)
        wait = HistogramMetricFamily(
            "pgjobs_job_wait_seconds",
            "Enqueue-to-start: from when a job was ready (run_at) to the start of the attempt "
            "that ended it.",
            labels=["queue", "task"],
        )
        for (queue, task), h in sorted(self._wait.items()):
            wait.add_metric([queue, task], h.cumulative(), h.sum)
        return [ended, run, wait]


def _horizon_gauges(held: horizon.Horizon) -> list[Metric]:
    age = GaugeMetricFamily(
        "pgjobs_xmin_horizon_age_seconds",
        "How long the oldest hold on the xmin horizon has lasted, where Postgres records its "
        "start (0 when nothing holds it): VACUUM removes no row that died since.",
        value=held.age,
    )
    xids = GaugeMetricFamily(
        "pgjobs_xmin_horizon_age_xids",
        "How many transactions old the xmin horizon is (replication slots included).",
        value=held.xmin_age,
    )
    limit = GaugeMetricFamily(
        "pgjobs_xmin_horizon_threshold_seconds",
        "How long a hold may last before it counts as held (PGJOBS_HORIZON_MAX_AGE).",
        value=held.max_age,
    )
    over = GaugeMetricFamily(
        "pgjobs_xmin_horizon_held",
        "1 when some session, prepared transaction or slot holds the horizon past the threshold.",
        value=int(held.is_held),
    )
    # Only the holds past the threshold: few, and they name whom to see.
    holders = GaugeMetricFamily(
        "pgjobs_xmin_horizon_holder_age_seconds",
        "How long each hold past the threshold has lasted, by holder.",
        labels=["kind", "pid", "name", "state"],
    )
    for h in held.held:
        pid = "" if h.pid is None else str(h.pid)
        holders.add_metric([h.kind, pid, h.name, h.state or ""], h.seconds or 0.0)
    return [age, xids, limit, over, holders]
