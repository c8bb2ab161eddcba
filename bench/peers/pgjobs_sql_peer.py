"""pgjobs' own enqueue statements with none of its Python: the ceiling its schema allows.

bulk:   the transaction `enqueue_many()` runs for 1,000 jobs (`copy_jobs_begin`, then
        `copy_jobs` in chunks of COPY_CHUNK rows, then COMMIT), with every row's COPY data
        made by pgjobs' own code before the clock starts: no validation, no JSON, no ids
        and no `Job` objects while it is timed.
single: the `enqueue_job` statement, autocommit, on one held connection, sent the way
        pgjobs sends it (prepared on the connection, through libpq: pgjobs.db.prepared),
        for jobs made by pgjobs' own code beforehand: no validation, no pool and no `Job`
        while it is timed.

Both read the statements from sql/queries.sql, so they stay the ones pgjobs sends. The gap
between this row and pgjobs' is what pgjobs' Python costs; the gap between this row and the
bare floor is what the job row (its uuid key, its indexes, its checks) costs the server.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Iterator
from importlib.metadata import version

import psycopg
from psycopg.rows import dict_row

from bench.peers._common import PgCounter, main
from bench.peers.pgjobs_peer import app
from pgjobs.client.encoding import NewJob, prepare_many
from pgjobs.client.enqueue import (
    COPY_CHUNK,
    COPY_END,
    COPY_START,
    copy_row_parts,
    copy_rows,
    copy_shared,
    one_job_params,
)
from pgjobs.db.driver import PoolConnection, copy_statement, statement
from pgjobs.db.queries import sql


def copy_chunks(rows: list[NewJob], columns: tuple[str, ...]) -> list[bytes]:
    """One call's rows as the COPY data enqueue_many() writes for them, chunk by chunk."""
    task = app.tasks["noop"]
    shared = copy_shared(task, task.defaults, None)
    assert tuple(shared) == columns
    head, tail = copy_row_parts(task.name, shared, "utf-8")
    chunks = [
        copy_rows(
            [r.id.int for r in part],
            [r.args_json for r in part],
            [r.kwargs_json for r in part],
            head,
            tail,
        )
        for part in (rows[i : i + COPY_CHUNK] for i in range(0, len(rows), COPY_CHUNK))
    ]
    return [COPY_START, *chunks, COPY_END]


class PgjobsSqlPeer:
    """pgjobs' statements sent by hand: bulk and single enqueue only, no worker."""

    name = "pgjobs SQL alone"
    version = version("pgjobs")
    config = (
        "psycopg 3; the statements of enqueue_many() and enqueue(), sent as they send them, "
        "rows made beforehand"
    )

    def __init__(self) -> None:
        self.url = ""
        self.conn: PoolConnection | None = None
        self.cur: psycopg.Cursor[dict[str, object]] | None = None
        self.count = PgCounter("")
        self.calls: list[list[bytes]] = []
        self.columns: tuple[str, ...] = ()
        self.singles: Iterator[NewJob] = iter(())

    def setup(self, args: argparse.Namespace) -> None:
        """Migrate, empty the tables, and write the bulk rows' COPY data in advance."""
        from pgjobs.db.migrations import upgrade

        self.url = args.pg_url
        self.count = PgCounter(self.url)
        upgrade(self.url)
        self.conn = PoolConnection.connect(self.url, autocommit=True, row_factory=dict_row)
        self.conn.execute("TRUNCATE pgjobs.jobs, pgjobs.attempts, pgjobs.dedup_keys")
        self.conn.execute("VACUUM ANALYZE pgjobs.jobs")
        self.cur = self.conn.cursor()
        task = app.tasks["noop"]
        if args.scenario == "single":
            # One more than the count: the scenario's first call is not timed.
            self.singles = iter(
                prepare_many(task, task.defaults, [(i,) for i in range(args.count + 1)])
            )
        if args.scenario == "bulk":
            # pgjobs' own rows, validated and written as COPY data by its own code,
            # before the clock starts.
            rows = prepare_many(task, task.defaults, [(i,) for i in range(args.count)])
            self.columns = tuple(copy_shared(task, task.defaults, None))
            for start in range(0, args.count, 1000):
                self.calls.append(copy_chunks(rows[start : start + 1000], self.columns))

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        """One transaction per 1,000 rows, as enqueue_many() runs it."""
        assert self.conn is not None and self.cur is not None and batch == 1000
        for chunks in self.calls:
            with self.conn.transaction():
                self.cur.execute(sql("copy_jobs_begin"), {"status": "pending", "queue": "default"})
                with self.cur.copy(copy_statement("copy_jobs", {"columns": self.columns})) as copy:
                    for chunk in chunks:
                        copy.write(chunk)

    def enqueue_one(self, task: str, arg: float) -> None:
        """The enqueue_job statement for the next job made in setup, autocommit."""
        assert self.conn is not None
        params = one_job_params(next(self.singles))
        self.conn.run_prepared(statement("enqueue_job", params.names), params.values)

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        """No worker: this row measures enqueue only."""
        raise RuntimeError("pgjobs SQL alone has no worker")

    def done(self) -> int:
        """Succeeded jobs (none: there is no worker)."""
        return self.count("SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'")

    def backlog(self) -> int:
        """Pending jobs."""
        return self.count("SELECT count(*) FROM pgjobs.jobs WHERE status = 'pending'")

    def close(self) -> None:
        """Close connections."""
        self.count.close()
        if self.conn is not None:
            self.conn.close()


if __name__ == "__main__":
    main(PgjobsSqlPeer())
