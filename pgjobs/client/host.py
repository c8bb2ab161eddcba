"""What tasks, enqueuing and workflows need of the App that made them.

The App satisfies Host; the modules below it in pgjobs.client take a Host rather than
importing the App, which imports them.
"""

from __future__ import annotations

from typing import Protocol

from pgjobs.core.jobs import JobSource
from pgjobs.db.connections import Database


class Host(JobSource, Protocol):
    """An App as its tasks, enqueue operations and workflows see it."""

    #: The largest arguments, as JSON, that a job may carry (App(max_payload_bytes=...)).
    max_payload_bytes: int
    #: Its pools and how operations run on them.
    database: Database
