"""An App that names its database itself, as most applications' code does."""

from __future__ import annotations

import os

import pgjobs

# The tests set the URL; imported without it, the App names a database that is not there.
app = pgjobs.App(os.environ.get("PGJOBS_TEST_EXPLICIT_URL", "postgresql://postgres@127.0.0.1:1/x"))


@app.task
def mark(n: int) -> int:
    return n
