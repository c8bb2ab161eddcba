"""The tasks the benchmarks run; worker processes import this as bench.tasks:app."""

from __future__ import annotations

import pgjobs

app = pgjobs.App()  # $PGJOBS_URL, set by bench.py to its own database


@app.task
async def noop_async(n: int) -> None:
    """Nothing: measures the queue, not the work."""


@app.task
def noop_sync(n: int) -> None:
    """Nothing, on the worker's thread pool."""
