"""The outcomes of finished attempts on their way to the database.

The running attempts put them here, the completer sends them, the producer counts
them: a module of its own, below all three.
"""

from __future__ import annotations

import asyncio

from pgjobs.worker import ops
from pgjobs.worker.executor import Outcome


class Outcomes:
    """Outcomes on their way from the finished attempts to the database.

    A job holds its slot until its outcome is recorded, not when its function
    returns: so the database never shows more running jobs than the worker's
    concurrency (per-task limits count on that).
    """

    def __init__(self) -> None:
        self.pending: list[Outcome] = []  # not yet sent to the database
        self.sending: list[list[Outcome]] = []  # batches on their way
        #: set when there is something to send, or a writer's slot came free
        self.ready = asyncio.Event()

    def unrecorded(self) -> int:
        """Outcomes not yet in the database: their jobs still hold their slots."""
        return len(self.pending) + sum(len(b) for b in self.sending)

    def runs(self) -> set[ops.Run]:
        """(job id, attempt) of every outcome not yet recorded."""
        runs = {(o.job_id, o.attempt) for o in self.pending}
        runs.update((o.job_id, o.attempt) for batch in self.sending for o in batch)
        return runs

    def take(self, size: int) -> list[Outcome]:
        """The next batch to send, of at most `size` outcomes; on its way until sent()."""
        batch = self.pending[:size]
        del self.pending[:size]
        self.sending.append(batch)
        return batch

    def sent(self, batch: list[Outcome]) -> None:
        """A batch's statement has ended (recorded, or failed and put back)."""
        self.sending.remove(batch)
