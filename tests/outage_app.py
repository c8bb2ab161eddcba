"""An App for the tests on a Postgres of their own: `tick` records each run in a file, not
in the database, so that runs are counted even while the database is down."""

from __future__ import annotations

import os
import time

import pgjobs

app = pgjobs.App()


def _note(line: str) -> None:
    # One short write per line with O_APPEND: lines from many threads and
    # processes never interleave.
    fd = os.open(os.environ["PGJOBS_TEST_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@app.task
def tick(n: int, seconds: float) -> int:
    """Runs for `seconds`; writes when each run starts and ends, with its attempt number."""
    job = pgjobs.current_job()
    _note(f"start {job.id} {job.attempt} {time.time():.6f} {os.getpid()}")
    time.sleep(seconds)
    _note(f"end {job.id} {job.attempt} {time.time():.6f} {os.getpid()}")
    return n


@app.task
def noop(n: int) -> int:
    return n
