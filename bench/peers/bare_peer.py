"""The floor: what plain SQL on the same server does, with no queue library at all.

bulk:    COPY of 1,000 rows per call into a logged table;
single:  one-row autocommit INSERT of an id and a jsonb;
process: worker processes that claim 100 rows with FOR UPDATE SKIP LOCKED and
         mark them done in one UPDATE, in a loop (`python -m bench.peers.bare_peer loop`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import psycopg

from bench.peers._common import PgCounter, main, spawn

SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    args jsonb NOT NULL,
    done boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS bare_jobs_todo ON bare_jobs (id) WHERE NOT done;
"""

CLAIM_AND_FINISH = """
WITH picked AS (
    SELECT id FROM bare_jobs WHERE NOT done ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED
)
UPDATE bare_jobs b SET done = true FROM picked WHERE b.id = picked.id
"""


class BarePeer:
    """Plain SQL through psycopg 3."""

    name = "postgres (bare SQL)"
    version = psycopg.__version__
    config = "psycopg 3; COPY / one-row INSERT / claim 100 + UPDATE loop"

    def __init__(self) -> None:
        self.url = ""
        self.conn: psycopg.Connection[tuple[int]] | None = None
        self.count = PgCounter("")

    def setup(self, args: argparse.Namespace) -> None:
        """Create the table and empty it."""
        self.url = args.pg_url
        self.count = PgCounter(self.url)
        self.conn = psycopg.connect(self.url, autocommit=True)
        self.conn.execute(SCHEMA)
        self.conn.execute("TRUNCATE bare_jobs")
        self.conn.execute("VACUUM ANALYZE bare_jobs")

    def enqueue_bulk(self, task: str, count: int, batch: int) -> None:
        """COPY, `batch` rows per transaction."""
        assert self.conn is not None
        for start in range(0, count, batch):
            with (
                self.conn.transaction(),
                self.conn.cursor().copy("COPY bare_jobs (args) FROM STDIN") as copy,
            ):
                for i in range(start, min(count, start + batch)):
                    copy.write_row((f"[{i}]",))

    def enqueue_one(self, task: str, arg: float) -> None:
        """One INSERT, autocommit."""
        assert self.conn is not None
        self.conn.execute("INSERT INTO bare_jobs (args) VALUES (%s::jsonb)", (f"[{arg}]",))

    def start_workers(self, processes: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
        """Claim-and-finish loops."""
        cmd = [sys.executable, "-m", "bench.peers.bare_peer", "loop", "--pg-url", self.url]
        return spawn(cmd, processes, "bare")

    def done(self) -> int:
        """Rows marked done."""
        return self.count("SELECT count(*) FROM bare_jobs WHERE done")

    def backlog(self) -> int:
        """Rows not done."""
        return self.count("SELECT count(*) FROM bare_jobs WHERE NOT done")

    def close(self) -> None:
        """Close the connection."""
        self.count.close()
        if self.conn is not None:
            self.conn.close()


def loop(url: str) -> None:
    """Claim and finish until stopped."""
    import time

    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            if conn.execute(CLAIM_AND_FINISH).rowcount == 0:
                time.sleep(0.005)


if __name__ == "__main__":
    if sys.argv[1:2] == ["loop"]:
        loop(sys.argv[3])
    else:
        main(BarePeer())
