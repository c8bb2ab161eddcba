"""Property-based requests from the OpenAPI schema: no input makes the API fail with a 5xx."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

import pgjobs
from pgjobs.web import create_app
from tests import sample_app
from tests.support.common import count

TOKEN = "schema-token"


def test_no_generated_request_gets_a_server_error(
    app: pgjobs.App, db: psycopg.Connection[Any]
) -> None:
    # Some jobs in every waiting status, so that generated filters meet real rows.
    sample_app.add.enqueue_many([(i, i) for i in range(5)])
    sample_app.add.options(delay=3600).enqueue(1, 1)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app, token=TOKEN))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    tried: dict[str, int] = {}

    def takes_input(op: Any) -> bool:
        return bool(op.definition.raw.get("parameters") or op.definition.raw.get("requestBody"))

    # Invalid input needs an input to spoil: operations without one get valid requests only.
    runs = [
        (op, mode)
        for op, mode in itertools.product(operations, GenerationMode)
        if mode is GenerationMode.POSITIVE or takes_input(op)
    ]
    for operation, mode in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            before = count(db)
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"}, checks=checks
            )
            label = f"{case.meta.generation.mode} {case.operation.label}"
            tried[label] = tried.get(label, 0) + 1
            # Whatever was sent, rows only appear through an accepted enqueue.
            if not (case.path == "/api/jobs" and response.status_code == 202):
                assert count(db) <= before

        run()
    # Every operation was exercised, with valid and with invalid input.
    assert set(tried) == {f"{m} {op.label}" for op, m in runs}, tried
