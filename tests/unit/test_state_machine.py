"""The state machine: one table of legal transitions, followed by Python and SQL."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import pytest

from pgjobs import IllegalTransition, Status
from pgjobs.core.jobs import TERMINAL, TRANSITIONS, can_transition, check_transition, sources

LEGAL = {
    ("blocked", "pending"),  # a workflow step whose steps before it ended
    ("blocked", "cancelled"),  # ... or one of which failed; or it was cancelled
    ("cancelled", "blocked"),  # the failed step before it was replayed
    ("scheduled", "pending"),
    ("scheduled", "cancelled"),
    ("pending", "running"),
    ("pending", "cancelled"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "retrying"),
    ("running", "cancelled"),
    ("running", "pending"),
    ("retrying", "pending"),
    ("retrying", "cancelled"),
    ("failed", "pending"),
    ("cancelled", "pending"),
}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(Status, Status)))
def test_every_pair_of_statuses_is_legal_exactly_when_the_table_says(
    source: Status, target: Status
) -> None:
    legal = (source.value, target.value) in LEGAL
    assert can_transition(source, target) is legal
    if legal:
        check_transition(source, target)
    else:
        with pytest.raises(IllegalTransition, match=f"from {source} to {target}"):
            check_transition(source, target)


def test_a_succeeded_job_never_moves_again() -> None:
    assert TRANSITIONS[Status.SUCCEEDED] == frozenset()
    assert {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED} == TERMINAL


def test_sources_lists_the_statuses_that_lead_to_a_target() -> None:
    assert sources("cancelled") == ["blocked", "pending", "retrying", "running", "scheduled"]
    assert sources("running") == ["pending"]
    assert sources("scheduled") == []


def test_the_database_check_constraint_allows_exactly_the_python_statuses(
    db: psycopg.Connection[Any],
) -> None:
    row = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contypid = 'pgjobs.job_status'::regtype AND contype = 'c'"
    ).fetchone()
    assert row is not None
    # CHECK ((VALUE = ANY ('{blocked,scheduled,...}'::text[]))), the domain of revision 0011
    in_sql = set(row[0].split("'{")[1].split("}'")[0].split(","))
    assert in_sql == {s.value for s in Status}


def test_the_database_rejects_an_unknown_status(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO pgjobs.jobs (id, task, status) VALUES (gen_random_uuid(), 't', 'lost')"
        )
