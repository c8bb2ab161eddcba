"""The claim's parameters as a worker sends them, for tests that plan or run it by hand."""

from __future__ import annotations

from typing import Any

WORKER = "plan-test-worker"
BATCH = 50


def claim_params(limit: int) -> dict[str, Any]:
    return {
        "queues": ["default"],
        "weights": [1.0],
        "offsets": [0.0],
        "order": "priority",
        "limit": limit,
        "worker_id": WORKER,
    }
