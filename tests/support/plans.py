"""The claim's parameters as a worker sends them, for tests that plan or run it by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgjobs.worker.frontier import SWEEP

WORKER = "plan-test-worker"
BATCH = 50


def claim_params(
    limit: int, worker: str = WORKER, front: Mapping[str, Any] = SWEEP
) -> dict[str, Any]:
    """A claim of up to `limit` jobs from the queue 'default'; a sweep unless `front` says
    where to read it from (as Frontier.params does)."""
    return {
        "queues": ["default"],
        "weights": [1.0],
        "offsets": [0.0],
        "order": "priority",
        "limit": limit,
        "worker_id": worker,
        **front,
    }
