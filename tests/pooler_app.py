"""Apps behind a transaction-pooling PgBouncer, for tests/test_pgbouncer.py.

In a worker process their URL is $PGJOBS_URL (through PgBouncer), their pooler
mode $PGJOBS_POOLER or `pgjobs worker --pooler`, and their listen_url the
direct URL in $PGJOBS_TEST_LISTEN_URL, when the test sets one. The test
process makes Apps of its own with the same tasks (make_app).
"""

from __future__ import annotations

import os
from typing import Any

import pgjobs


def make_app(url: str | None = None, **options: Any) -> pgjobs.App:
    """An App with this module's tasks: noop, square, total, doomed."""
    options.setdefault("listen_url", os.environ.get("PGJOBS_TEST_LISTEN_URL") or None)
    app = pgjobs.App(url, **options)

    @app.task
    def noop(n: int) -> int:
        return n

    @app.task
    async def square(n: int) -> int:
        return n * n

    @app.task
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task(retries=1, backoff=pgjobs.Backoff(base=0.2, cap=0.2))
    def doomed(reason: str) -> None:
        raise ValueError(reason)

    return app


def make_limited_app(url: str | None = None, **options: Any) -> pgjobs.App:
    """An App with a limited task, `limited`: its worker records outcomes and claims in a
    pipeline of two statements rather than in finish_and_claim."""
    options.setdefault("listen_url", os.environ.get("PGJOBS_TEST_LISTEN_URL") or None)
    app = pgjobs.App(url, **options)

    @app.task(concurrency=4)
    def limited(n: int) -> int:
        return n

    return app


app = make_app()
limited_app = make_limited_app()
