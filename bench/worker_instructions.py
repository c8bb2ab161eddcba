"""Client instructions per job of a burst worker: its claims and finish-and-claim statements.

The companion of bench/instructions.py (which counts the enqueue paths) for the worker's hot
path: a burst `Worker` drains `--jobs` no-op jobs enqueued beforehand, at concurrency 50 (so
batches of 25 outcomes, each recording its batch and claiming the next jobs with
finish_and_claim). The child runs twice under valgrind's callgrind, once draining the jobs and
once as a burst worker of an empty queue, with the same jobs enqueued in both; the difference
per job is what claiming, running and recording one job costs the worker's process (the
server's work runs in other processes and is not counted). Which statements carry the batches
depends on timing, so two runs differ by a fraction of a percent more than the enqueue cases.

    .venv/bin/python -m bench.worker_instructions                   # the working tree
    .venv/bin/python -m bench.worker_instructions --rev HEAD~3      # pgjobs as committed there

Needs valgrind on the PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONCURRENCY = 50


def workload(url: str, jobs: int, drain: bool) -> int:
    """The child: enqueue `jobs` no-ops, then run a burst worker on their queue or an empty one.

    Returns the jobs that succeeded, so that a run that stopped working could not pass for a
    cheap one.
    """
    import pgjobs
    from pgjobs.migrations import upgrade

    logging.basicConfig(level=logging.WARNING)
    upgrade(url)
    app = pgjobs.App(url)

    @app.task(queue="bench")
    async def noop(i: int) -> None:
        """Does nothing."""

    with app.connection() as conn:
        conn.execute("TRUNCATE pgjobs.jobs, pgjobs.attempts")
    noop.enqueue_many([(i,) for i in range(jobs)])
    worker = pgjobs.Worker(
        app, queues=["bench" if drain else "idle"], concurrency=CONCURRENCY, burst=True
    )
    asyncio.run(worker.arun(install_signal_handlers=False))
    with app.connection() as conn:
        row = conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'")
        done = row.fetchone()
    app.close()
    assert done is not None
    return int(done[0])


def count(src: Path, url: str, jobs: int, drain: bool, valgrind: str) -> int:
    """Instructions the child executes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            valgrind,
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--jobs",
            str(jobs),
            "--url",
            url,
            *(["--drain"] if drain else []),
        ]
        run = subprocess.run(
            command,
            cwd=src,
            env={**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"Collected : (\d+)", run.stderr)
        if run.returncode != 0 or found is None:
            raise SystemExit(f"the child failed:\n{run.stderr[-3000:]}")
        succeeded = re.search(r"succeeded: (\d+)", run.stdout)
        want = jobs if drain else 0
        if succeeded is None or int(succeeded.group(1)) != want:
            raise SystemExit(f"the child ran {succeeded and succeeded.group(1)} jobs, not {want}")
        return int(found.group(1))


def _source(rev: str | None, tmp: str) -> Path:
    """The tree whose pgjobs is measured: this checkout, or `rev` exported from git."""
    if rev is None:
        return ROOT
    archive = subprocess.run(
        ["git", "archive", rev, "pgjobs", "sql", "alembic"], cwd=ROOT, capture_output=True
    )
    if archive.returncode != 0:
        raise SystemExit(archive.stderr.decode())
    subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
    return Path(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--url", default=os.environ.get("PGJOBS_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--rev", help="measure pgjobs as committed at this revision")
    args = parser.parse_args()
    if args.child:
        print(f"succeeded: {workload(args.url, args.jobs, args.drain)}")
        return
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not on the PATH")
    # Here, not at the top: the child runs this file as a script, where `bench` is bench.py.
    from bench.instructions import database

    url = database(args.url, "bench_worker_instructions")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = _source(args.rev, tmp)
            idle = count(src, url, args.jobs, False, valgrind)
            busy = count(src, url, args.jobs, True, valgrind)
    finally:
        database(args.url, "bench_worker_instructions", drop=True)
    print(f"pgjobs at {args.rev or 'the working tree'}: {(busy - idle) / args.jobs:,.0f} per job")


if __name__ == "__main__":
    main()
