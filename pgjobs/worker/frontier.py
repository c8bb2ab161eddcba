"""Where a worker's claims start reading each queue: its frontier, or a sweep from the front.

A claimed job leaves its entry in the claim index (jobs_claim_idx, the pending jobs in
claim order) until VACUUM removes it, and VACUUM may remove it only once no snapshot can
still see the job pending. A claim that reads a queue from the front visits each such
entry's row to find it dead. Most of the time there are few: the first scan that finds an
entry dead to everyone marks it so, and autovacuum and the leader's upkeep clear the rest.
While an old snapshot holds the xmin horizon (a long report, pg_dump, a session idle in
transaction, a standby's feedback) none can be marked or cleared, and every job claimed
since the hold began is walked by every claim: at 1,500 jobs/s, 90,000 more each minute.

So each claim reads from the front (a sweep, the claim as it always was) while nothing
holds the horizon, and the worker looks at the horizon every LOOK_INTERVAL seconds. Once it
is older than HELD_XIDS transactions, claims read from frontiers instead: for each queue and
priority the worker has claimed from, the latest due time (run_at) of the jobs it claimed
there, less SLACK. That is an index seek past the dead entries, however many. A frontier
does not see a job that becomes pending behind it: one handed back or rescued, a workflow
step released, a scheduled job released late, an enqueue whose transaction outlasted SLACK,
or a job of a priority the worker has not claimed from yet. Sweeps find those, in a task
beside the claims (a sweep under a long hold takes a good part of a second). A sweep's
cost grows with the dead entries it walks, and so does its spacing: the next comes after
SWEEP_RATIO times its duration, times how many frontier claims it cost as much as (at
least HELD_SWEEP_INTERVAL, at most MAX_SWEEP_INTERVAL: the longest a job behind a frontier
waits while the horizon is held). Sweeps then read fewer buffers per job claimed the
longer the hold lasts, not more. When the hold ends, claims keep to the frontiers until a
sweep (the first marks the entries the hold kept dead) is about as quick as a frontier claim.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Seconds of due time a frontier reads back from the latest job it claimed: an enqueue
#: whose transaction started that long before it committed is still seen at once.
SLACK = 0.2
#: Seconds between two looks at the horizon.
LOOK_INTERVAL = 2.0
#: A horizon this many transactions old holds enough dead entries to claim from frontiers
#: (a worker's own statements, and a web request's, are a few transactions old at most).
HELD_XIDS = 1000
#: While the horizon is held, a sweep comes again after this many times its own duration
#: (times its cost in frontier claims)...
SWEEP_RATIO = 20.0
#: ... and no sooner than this many seconds after the last one...
HELD_SWEEP_INTERVAL = 1.0
#: ... nor later than this.
MAX_SWEEP_INTERVAL = 15.0
#: After a hold, claims read from the front again once a sweep takes at most this many
#: times a frontier claim: the entries the hold kept have been marked dead.
DRAINED = 3.0
#: At most this many (queue, priority) frontiers; past it, the one claimed from least
#: recently is forgotten (its jobs are found by sweeps until it is claimed from again).
MAX_FRONTIERS = 64
#: Weight of the latest frontier claim in the running mean of their durations.
SMOOTHING = 0.1

#: A sweep: no frontier, every queue read from the front.
SWEEP: dict[str, list[Any]] = {"from_queues": [], "from_priorities": [], "from_times": []}


@dataclass(frozen=True)
class Claim:
    """One claim's frontier parameters, whether it sweeps, and when it started."""

    params: Mapping[str, list[Any]]
    sweep: bool
    started: float


class Frontier:
    """A worker's frontiers, whether to use them, and when the next sweep is due."""

    def __init__(self, slack: float = SLACK) -> None:
        self.slack = slack
        #: (queue, priority) -> the latest run_at (epoch seconds) of a job claimed there
        self.marks: dict[tuple[str, int], float] = {}
        #: the horizon is held (or was, and a sweep is still slow): claims read from
        #: frontiers, with a sweep now and then
        self.held = False
        #: the hold has ended; frontiers until a sweep is as quick as a frontier claim
        self.draining = False
        #: time.monotonic() of the next look at the horizon
        self.look_due = 0.0
        #: time.monotonic() from which a sweep is due (while the horizon is held)
        self.next_sweep = 0.0
        #: the latest claim read only frontiers and came back short: jobs may wait behind
        #: them, and none is known to be left until a sweep has looked
        self.owed = False
        #: running mean of a frontier claim's duration, in seconds (None: none timed yet)
        self.frontier_time: float | None = None
        self.sweeps = 0  # sweeps done while the horizon was held, for the tests

    def looked(self, xmin_age: int) -> None:
        """What a look at the horizon found: how many transactions old it is."""
        self.look_due = time.monotonic() + LOOK_INTERVAL
        if xmin_age > HELD_XIDS:
            if not self.held:
                self.next_sweep = 0.0  # the first sweep of a hold sets the pace
            self.held, self.draining = True, False
        elif self.held and not self.draining:
            # Released: the entries it kept are dead to everyone now, and the next scan that
            # walks them marks them so. Let a sweep beside the claims be that scan, and read
            # from the front again once a sweep is as quick as a frontier claim.
            self.draining = True
            self.next_sweep = 0.0

    def sweep_due(self) -> bool:
        """While the horizon is held: whether a sweep is due (the producer runs it beside the
        claims, see claim())."""
        return self.held and (time.monotonic() >= self.next_sweep or not self.marks)

    def sweep(self) -> Claim:
        """A sweep, now."""
        return Claim(SWEEP, True, time.monotonic())

    def claim(self) -> Claim:
        """The next claim: a sweep unless the horizon is held. While it is held, from the
        frontiers: a sweep then walks every entry the hold keeps, for as long as a claim from
        the front takes, and runs beside the claims (sweep_due()), not in their way."""
        if not self.held or not self.marks:
            return self.sweep()
        now = time.monotonic()
        queues: list[str] = []
        priorities: list[int] = []
        times: list[float] = []
        for (queue, priority), due in self.marks.items():
            queues.append(queue)
            priorities.append(priority)
            times.append(due - self.slack)
        front: dict[str, list[Any]] = {
            "from_queues": queues,
            "from_priorities": priorities,
            "from_times": times,
        }
        return Claim(front, False, now)

    def sweep_in(self) -> float:
        """Seconds until a sweep is due."""
        return max(0.0, self.next_sweep - time.monotonic())

    def claimed(self, claim: Claim, rows: Sequence[Mapping[str, Any]], limit: int) -> None:
        """Move the frontiers past the jobs `claim` got (`rows`, of up to `limit`); after a
        sweep while the horizon is held, set when the next is due."""
        marks = self.marks
        for r in rows:
            due = r.get("due")
            if due is None:  # a job of a limited task: claimed by claim_limited, not here
                continue
            key = (r["queue"], r["priority"])
            if due > marks.get(key, float("-inf")):
                marks.pop(key, None)  # moved to the end: the most recently claimed from
                marks[key] = due
        while len(marks) > MAX_FRONTIERS:
            del marks[next(iter(marks))]
        now = time.monotonic()
        took = now - claim.started
        if not claim.sweep:
            self.owed = len(rows) < limit
            mean = self.frontier_time
            self.frontier_time = took if mean is None else mean + SMOOTHING * (took - mean)
        elif self.held:
            self.owed = False
            self.sweeps += 1
            dearer = max(1.0, took / self.frontier_time) if self.frontier_time else 1.0
            if self.draining and dearer <= DRAINED:
                self.held = self.draining = False
                return
            wait = SWEEP_RATIO * took * dearer
            self.next_sweep = now + min(MAX_SWEEP_INTERVAL, max(HELD_SWEEP_INTERVAL, wait))
