"""Client instructions per enqueued job: pgjobs' calls against its statements sent alone.

Wall-clock time on a shared machine swings by a fifth from one minute to the next, more than
the gaps this measures; the number of instructions the client process executes does not. Each
case runs in a child process under valgrind's callgrind twice, with no calls and with
`--calls` calls, and the difference, divided by the jobs those calls enqueued, is what one job
costs the client (with one hash seed and thousands of jobs, two runs agree to a few hundredths
of a percent). Everything a case needs beforehand (rows, COPY data) is made in both runs, so
only the calls differ. The server's work is not counted: it runs in other processes.

    .venv/bin/python bench/instructions.py            # the four cases, a table on stdout
    .venv/bin/python bench/instructions.py --out bench/results
    .venv/bin/python bench/instructions.py --case enqueue_many   # one case only

Needs valgrind on the PATH; says so and exits 2 when it is missing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

#: case -> (what it is, jobs per call)
CASES: dict[str, tuple[str, int]] = {
    "enqueue": ("`noop.enqueue(i)`: validation, pool, statement, `Job`", 1),
    "enqueue_job": ("the `enqueue_job` statement alone, as pgjobs sends it, rows made before", 1),
    "enqueue_many": ("`noop.enqueue_many()` of 1,000 jobs, per job", 1000),
    "copy_jobs": ("its transaction and COPY alone, COPY data made before, per job", 1000),
}


def workload(case: str, calls: int, made: int, url: str) -> int:
    """The child: `calls` calls of one case, after making what `made` calls would need.

    Returns the jobs the calls inserted, counted in the table, so that a case that
    stopped enqueueing could not pass for a cheap one.
    """
    from psycopg.rows import dict_row

    os.environ["PGJOBS_URL"] = url
    from bench.peers.pgjobs_peer import app
    from bench.peers.pgjobs_sql_peer import copy_chunks
    from pgjobs.client.encoding import prepare_many
    from pgjobs.client.enqueue import copy_shared, one_job_params
    from pgjobs.db.driver import PoolConnection, copy_statement, statement
    from pgjobs.db.migrations import upgrade
    from pgjobs.db.queries import sql

    upgrade(url)
    task = app.tasks["noop"]
    conn = PoolConnection.connect(url, autocommit=True, row_factory=dict_row)
    cur = conn.cursor()
    per_call = CASES[case][1]
    # What the calls need, plus a warm-up call's worth, made in both runs alike.
    rows = prepare_many(task, task.defaults, [(i,) for i in range((made + 1) * per_call)])
    columns = tuple(copy_shared(task, task.defaults, None))
    params = [one_job_params(r) for r in rows]
    chunks = [copy_chunks(rows[s : s + per_call], columns) for s in range(0, len(rows), per_call)]
    # Out of the collector's sight: a full collection walking all that happens in one of the
    # two runs and not in the other, by millions of instructions (a COPY case came out
    # negative). What the calls themselves allocate is still collected as usual.
    gc.collect()
    gc.freeze()

    def call(n: int) -> None:
        if case == "enqueue":
            task.enqueue(n)
        elif case == "enqueue_job":
            conn.run_prepared(statement("enqueue_job", params[n].names), params[n].values)
        elif case == "enqueue_many":
            task.enqueue_many([(i,) for i in range(per_call)])
        else:
            with conn.transaction():
                cur.execute(sql("copy_jobs_begin"), {"status": "pending", "queue": "default"})
                with cur.copy(copy_statement("copy_jobs", {"columns": columns})) as copy:
                    for chunk in chunks[n]:
                        copy.write(chunk)

    conn.execute("TRUNCATE pgjobs.jobs")
    # Warm: the statement prepared, the pool's connection open, every path run once.
    for _ in range(6 if per_call == 1 else 1):
        call(made)
        conn.execute("DELETE FROM pgjobs.jobs")
    for n in range(calls):
        call(n)
    row = conn.execute("SELECT count(*) AS n FROM pgjobs.jobs").fetchone()
    app.close()
    conn.close()
    assert row is not None
    return int(row["n"])


def child_command(case: str, calls: int, made: int, url: str) -> list[str]:
    """The command that runs one case's child (from the project's root)."""
    return [
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        case,
        "--calls",
        str(calls),
        "--made",
        str(made),
        "--url",
        url,
    ]


def count(case: str, calls: int, made: int, url: str, valgrind: str) -> int:
    """Instructions the child executes for `calls` calls of a case."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                *child_command(case, calls, made, url),
            ],
            cwd=ROOT,
            # One hash seed for every run: with random ones the layout of dicts and sets
            # differs from run to run, and so, by millions, does the count of start-up.
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"Collected : (\d+)", run.stderr)
        if run.returncode != 0 or found is None:
            raise SystemExit(f"case {case}: the child failed:\n{run.stderr[-3000:]}")
        return int(found.group(1))


def database(admin_url: str, name: str, drop: bool = False) -> str:
    """A fresh database `name` beside `admin_url`'s (dropped with `drop`); its URL."""
    import psycopg
    from psycopg import sql as psql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
        )
        if not drop:
            conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--made", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=os.environ.get("PGJOBS_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--single-calls", type=int, default=3000, help="calls of the one-job cases")
    parser.add_argument("--bulk-calls", type=int, default=20, help="calls of the 1,000-job cases")
    parser.add_argument("--out", type=Path, help="also write instructions.{md,json} here")
    parser.add_argument(
        "--case",
        action="append",
        choices=sorted(CASES),
        help="count only this case (repeatable; default: all four)",
    )
    args = parser.parse_args()
    if args.child:
        inserted = workload(args.child, args.calls, args.made, args.url)
        expected = args.calls * CASES[args.child][1]
        if inserted != expected:
            raise SystemExit(f"case {args.child}: {inserted} jobs inserted, {expected} expected")
        print(f"{args.child}: {inserted} jobs inserted")
        return
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("bench/instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        raise SystemExit(2)
    url = database(args.url, "bench_instructions")
    results: dict[str, float] = {}
    try:
        for case, (_, per_call) in CASES.items():
            if args.case and case not in args.case:
                continue
            calls = args.single_calls if per_call == 1 else args.bulk_calls
            none = count(case, 0, calls, url, valgrind)
            some = count(case, calls, calls, url, valgrind)
            results[case] = (some - none) / (calls * per_call)
            print(f"{case}: {results[case]:,.0f} instructions per job", file=sys.stderr)
    finally:
        database(args.url, "bench_instructions", drop=True)
    table = report(results)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "instructions.md").write_text(table)
        (args.out / "instructions.json").write_text(json.dumps(results, indent=2) + "\n")


def report(results: dict[str, float]) -> str:
    """The markdown table: each case, its instructions per job, and pgjobs' share over its SQL."""
    lines = [
        f"Client instructions per job, {datetime.now(UTC):%Y-%m-%d}, Python "
        f"{sys.version.split()[0]} (callgrind; the server's work is not counted)",
        "",
        "| case | instructions per job |",
        "|---|---:|",
    ]
    lines += [f"| {CASES[c][0]} | {n:,.0f} |" for c, n in results.items()]
    for app_case, sql_case in (("enqueue", "enqueue_job"), ("enqueue_many", "copy_jobs")):
        if app_case in results and sql_case in results:
            extra = results[app_case] - results[sql_case]
            lines.append(f"| pgjobs' Python over its statement ({app_case}) | {extra:,.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
