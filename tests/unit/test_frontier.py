"""The frontier's decisions: when a claim sweeps, where a frontier claim reads from."""

from __future__ import annotations

import time

from pgjobs.worker import frontier
from pgjobs.worker.frontier import SWEEP, Frontier


def _row(queue: str, priority: int, due: float) -> dict[str, object]:
    return {"queue": queue, "priority": priority, "due": due}


def test_every_claim_sweeps_while_the_horizon_is_young() -> None:
    f = Frontier()
    f.looked(frontier.HELD_XIDS)  # not past it
    for _ in range(3):
        claim = f.claim()
        assert claim.sweep and claim.params == SWEEP
        f.claimed(claim, [_row("default", 0, 100.0)], limit=10)
    assert f.marks == {("default", 0): 100.0}  # kept, for when a hold begins
    assert not f.owed


def test_a_held_horizon_sweeps_once_then_reads_from_each_frontier_less_the_slack() -> None:
    f = Frontier()
    f.looked(frontier.HELD_XIDS + 1)
    first = f.claim()
    assert first.sweep  # the first claim of a hold sets the pace
    f.claimed(
        first, [_row("default", 0, 100.0), _row("default", 5, 50.0), _row("mail", 0, 7.0)], 10
    )
    f.claimed(first, [_row("default", 0, 90.0)], 10)  # an older job moves no frontier back
    assert f.sweep_in() >= frontier.HELD_SWEEP_INTERVAL - 0.1
    claim = f.claim()
    assert not claim.sweep
    got = sorted(
        zip(
            claim.params["from_queues"],
            claim.params["from_priorities"],
            claim.params["from_times"],
            strict=True,
        )
    )
    slack = frontier.SLACK
    assert got == [
        ("default", 0, 100.0 - slack),
        ("default", 5, 50.0 - slack),
        ("mail", 0, 7.0 - slack),
    ]


def test_a_short_frontier_claim_owes_a_sweep_and_a_sweep_settles_it() -> None:
    f = Frontier()
    f.looked(frontier.HELD_XIDS + 1)
    f.claimed(f.claim(), [_row("default", 0, 1.0)], 10)
    claim = f.claim()
    f.claimed(claim, [_row("default", 0, 2.0)], limit=10)  # 1 of 10: jobs may be behind it
    assert f.owed
    assert not f.sweep_due()
    f.next_sweep = time.monotonic()  # due now
    assert f.sweep_due()
    assert not f.claim().sweep  # while held, claims read frontiers; sweeps run beside them
    sweep = f.sweep()
    f.claimed(sweep, [], 10)
    assert not f.sweep_due()
    assert not f.owed and f.sweeps == 2


def test_sweeps_are_spaced_by_their_cost_against_a_frontier_claim() -> None:
    f = Frontier()
    f.looked(frontier.HELD_XIDS + 1)
    f.claimed(f.claim(), [_row("default", 0, 1.0)], 10)
    cheap = f.claim()
    f.claimed(frontier.Claim(cheap.params, False, time.monotonic() - 0.001), [], 10)
    assert f.frontier_time is not None and f.frontier_time >= 0.001
    # A sweep that took 50 ms, fifty frontier claims' worth: 20 x 0.05 x 50 s, capped.
    f.claimed(frontier.Claim(SWEEP, True, time.monotonic() - 0.05), [], 10)
    assert abs(f.sweep_in() - frontier.MAX_SWEEP_INTERVAL) < 0.5
    # One as cheap as a frontier claim comes again after the floor.
    f.claimed(frontier.Claim(SWEEP, True, time.monotonic() - 0.001), [], 10)
    assert abs(f.sweep_in() - frontier.HELD_SWEEP_INTERVAL) < 0.1


def test_after_a_hold_claims_keep_to_frontiers_until_a_sweep_is_quick_again() -> None:
    f = Frontier()
    f.looked(frontier.HELD_XIDS + 1)
    f.claimed(f.claim(), [_row("default", 0, 1.0)], 10)
    f.claimed(frontier.Claim(f.claim().params, False, time.monotonic() - 0.002), [], 10)
    f.looked(5)  # released
    assert f.held and f.draining and f.sweep_due()  # a sweep now, beside the claims
    assert not f.claim().sweep
    # The first sweep walks what the hold kept (and marks it dead): still slow.
    f.claimed(frontier.Claim(SWEEP, True, time.monotonic() - 0.5), [], 10)
    assert f.held and not f.claim().sweep
    # One about as quick as a frontier claim: back to the front.
    f.claimed(frontier.Claim(SWEEP, True, time.monotonic() - 0.003), [], 10)
    assert not f.held and not f.draining and not f.owed
    assert f.claim().sweep and not f.sweep_due()


def test_frontiers_are_capped_and_the_least_recently_claimed_goes() -> None:
    f = Frontier()
    rows = [_row(f"q{i}", 0, float(i)) for i in range(frontier.MAX_FRONTIERS + 3)]
    f.claimed(f.claim(), rows, len(rows))
    assert len(f.marks) == frontier.MAX_FRONTIERS
    assert ("q0", 0) not in f.marks and (f"q{len(rows) - 1}", 0) in f.marks
    # Limited tasks' jobs (no `due`) move nothing.
    f.claimed(f.claim(), [{"queue": "x", "priority": 0, "due": None}], 1)
    assert ("x", 0) not in f.marks
