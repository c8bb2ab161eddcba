"""Bad input gets a clear error and inserts nothing."""

from __future__ import annotations

import socket
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import (
    ConfigurationError,
    DatabaseUnavailable,
    InvalidArguments,
    PayloadTooLarge,
    SerializationError,
    UnknownTask,
)
from pgjobs.client.encoding import MAX_DEPTH
from tests import sample_app
from tests.support.common import count


@pytest.fixture
def seeded(app: Any, db: psycopg.Connection[Any]) -> int:
    """A few jobs already in the table: a bad call must leave them as they are."""
    sample_app.add.enqueue_many([(i, i) for i in range(3)])
    return count(db)


def unchanged(db: psycopg.Connection[Any], before: int) -> None:
    assert count(db) == before
    assert count(db, "SELECT count(*) FROM pgjobs.dedup_keys") == 0


def test_too_few_arguments(seeded: int, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(InvalidArguments, match=r"task 'add': missing a required argument: 'b'"):
        sample_app.add.enqueue(1)
    unchanged(db, seeded)


def test_too_many_arguments(seeded: int, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(InvalidArguments, match=r"task 'add': too many positional arguments"):
        sample_app.add.enqueue(1, 2, 3)
    unchanged(db, seeded)


def test_an_unexpected_keyword(seeded: int, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(InvalidArguments, match=r"unexpected keyword argument 'c'"):
        sample_app.add.enqueue(1, 2, c=3)
    unchanged(db, seeded)


def test_a_wrong_type_names_the_argument(seeded: int, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(
        InvalidArguments, match=r"task 'add': argument 'b': Input should be a valid integer"
    ):
        sample_app.add.enqueue(1, "two")
    with pytest.raises(InvalidArguments, match=r"argument 'where': .*city"):
        sample_app.typed.enqueue(datetime.now(), {"street": "x"}, [])
    unchanged(db, seeded)


def test_a_value_that_is_not_json(seeded: int, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(
        SerializationError, match=r"task 'store': argument 'payload' cannot be stored as JSON"
    ):
        sample_app.store.enqueue({"when": object()})
    with pytest.raises(SerializationError, match="argument 'payload' cannot be stored as JSON"):
        sample_app.app.enqueue("store", [{"x": b"\xff\xfe"}])
    # An undecodable byte kept by surrogateescape: jsonb refuses its escape.
    name = b"report-\xff.csv".decode("utf-8", "surrogateescape")
    with pytest.raises(SerializationError, match="contain an unpaired surrogate character"):
        sample_app.fail.enqueue(name)
    with pytest.raises(SerializationError, match=r"item 150: .*unpaired surrogate"):
        sample_app.fail.enqueue_many([f"{i}" for i in range(150)] + [name])
    # Characters past U+FFFF travel as surrogate pairs, which jsonb takes.
    assert sample_app.fail.enqueue("\U0001f600").args == ["\U0001f600"]
    unchanged(db, seeded + 1)


def test_an_untyped_parameter_still_refuses_what_json_cannot_hold(
    seeded: int, db: psycopg.Connection[Any]
) -> None:
    app = pgjobs.App(sample_app.app.url)

    @app.task
    def loose(value):  # type: ignore[no-untyped-def]
        return value

    with pytest.raises(
        SerializationError, match=r"task 'loose': argument 'value' cannot be stored as JSON"
    ):
        loose.enqueue({1, 2, object()})
    with pytest.raises(SerializationError, match="cannot be stored as JSON"):
        loose.enqueue(float("nan"))
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(SerializationError, match="cannot be stored as JSON"):
        loose.enqueue(cyclic)
    with pytest.raises(SerializationError, match=r"item 1: .*cannot be stored as JSON"):
        loose.enqueue_many([[1], [cyclic]] + [[i] for i in range(200)])
    app.close()
    unchanged(db, seeded)


def test_an_unknown_task_name(seeded: int, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(
        UnknownTask, match=r"no task named 'send_emial' is registered \(known: .*add"
    ):
        sample_app.app.enqueue("send_emial", ["x"])
    unchanged(db, seeded)


def test_an_oversized_payload(seeded: int, db: psycopg.Connection[Any]) -> None:
    app = pgjobs.App(sample_app.app.url, max_payload_bytes=1000)

    @app.task
    def upload(data: str) -> None: ...

    upload.enqueue("x" * 900)
    with pytest.raises(
        PayloadTooLarge,
        match=r"task 'upload': arguments are 1\d\d\d bytes as JSON, over the limit of 1000",
    ):
        upload.enqueue("x" * 1100)
    # Non-ASCII text counts in bytes of its JSON escape, never fewer than characters.
    with pytest.raises(PayloadTooLarge):
        upload.enqueue("é" * 300)
    app.close()
    unchanged(db, seeded + 1)


def test_the_payload_limit_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGJOBS_MAX_PAYLOAD_BYTES", "123")
    assert pgjobs.App("postgresql://localhost/x").max_payload_bytes == 123


def nested(levels: int) -> list[Any]:
    """A list `levels` deep: nested(1) is [], nested(2) is [[]]."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_arguments_nested_3000_deep_are_one_clear_error_and_insert_nothing(
    seeded: int, db: psycopg.Connection[Any]
) -> None:
    deep = nested(3000)
    too_deep = r"task 'store': argument 'payload' nests lists and objects deeper than 200 levels"
    with pytest.raises(SerializationError, match=too_deep) as info:
        sample_app.store.enqueue({"x": deep})
    assert info.value.field == "payload"
    with pytest.raises(SerializationError, match=too_deep):
        sample_app.store.enqueue(payload={"x": deep})
    with pytest.raises(SerializationError, match=too_deep):
        sample_app.app.enqueue("store", [{"x": deep}])
    with pytest.raises(SerializationError, match=r"item 1: .*deeper than 200 levels"):
        sample_app.store.enqueue_many([({"x": 1},), ({"x": deep},)] + [({"x": 2},)] * 200)
    unchanged(db, seeded)


def test_the_nesting_limit_is_200_levels_for_typed_and_untyped_arguments(
    seeded: int, db: psycopg.Connection[Any]
) -> None:
    app = pgjobs.App(sample_app.app.url)

    @app.task
    def loose(value):  # type: ignore[no-untyped-def]
        return value

    @app.task
    def rows(value: list[Any]) -> None: ...

    for task in (loose, rows):
        # At the limit: stored, and read back as it was, by the reader workers use too.
        job = task.enqueue(nested(MAX_DEPTH))
        assert db.execute("SELECT args FROM pgjobs.jobs WHERE id = %s", [job.id]).fetchone() == (
            [nested(200)],
        )
        assert app.get_job(job.id).args == [nested(200)]
        # One level more, and levels up to where pydantic itself gives up, and past it.
        for levels in (201, 250, 300, 1000, 3000):
            with pytest.raises(SerializationError, match="deeper than 200 levels"):
                task.enqueue(nested(levels))
            with pytest.raises(SerializationError, match="deeper than 200 levels"):
                task.enqueue(value=nested(levels))
    # Brackets inside strings are text, not nesting.
    loose.enqueue(["[" * 500, {"{": "]" * 500}])
    app.close()
    unchanged(db, seeded + 3)


def test_the_depth_check_reads_only_what_lies_outside_strings() -> None:
    from pgjobs.client.encoding import nested_deeper_than, to_json

    deep = to_json(nested(300))
    assert nested_deeper_than(deep, 299) and not nested_deeper_than(deep, 300)
    for text in ("[" * 400, '"]"' * 400, '\\"[' * 200, "[{" * 200):
        value = [text, {text: [text]}, [[text]]]
        assert not nested_deeper_than(to_json(value), 3)
        assert nested_deeper_than(to_json(value), 2)
    wide = [{"id": i, "tags": ["a", "b"], "pos": [i, [i]]} for i in range(300)]
    assert not nested_deeper_than(to_json(wide), 4)
    assert nested_deeper_than(to_json(wide), 3)


def test_the_payload_limit_must_be_a_number_jsonb_can_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://localhost/x"
    for limit in (-1, 33 * 1024 * 1024):
        with pytest.raises(ConfigurationError, match="max_payload_bytes must be between 1 and"):
            pgjobs.App(url, max_payload_bytes=limit)
    assert pgjobs.App(url, max_payload_bytes=32 * 1024 * 1024).max_payload_bytes == 33554432
    monkeypatch.setenv("PGJOBS_MAX_PAYLOAD_BYTES", "1MB")
    with pytest.raises(ConfigurationError, match="PGJOBS_MAX_PAYLOAD_BYTES must be a number"):
        pgjobs.App(url)
    monkeypatch.setenv("PGJOBS_MAX_PAYLOAD_BYTES", str(2**40))
    with pytest.raises(ConfigurationError, match="max_payload_bytes must be between"):
        pgjobs.App(url)


def test_empty_queue_and_task_names_are_refused_where_they_are_given(
    seeded: int, db: psycopg.Connection[Any]
) -> None:
    app = pgjobs.App("postgresql://localhost/x")
    for blank in ("", "  "):
        with pytest.raises(ConfigurationError, match="task 'q': queue must be a non-empty name"):
            app.task(name="q", queue=blank)(lambda: None)
        with pytest.raises(ConfigurationError, match="a task needs a non-empty name"):
            app.task(name=blank)(lambda: None)
        with pytest.raises(ConfigurationError, match="a task needs a non-empty name"):
            app.subscriber("user.created", name=blank)(lambda payload: None)
        with pytest.raises(ConfigurationError, match="task 'q': queue must be a non-empty name"):
            app.subscriber("user.created", name="q", queue=blank)(lambda payload: None)
        with pytest.raises(InvalidArguments, match="queue must be a non-empty name") as info:
            sample_app.add.options(queue=blank)
        assert info.value.field == "queue"
        with pytest.raises(InvalidArguments, match="queue must be a non-empty name"):
            sample_app.app.enqueue("add", [1, 2], queue=blank)
    assert app.tasks == {}
    unchanged(db, seeded)


def test_an_empty_url_is_refused_and_no_url_still_means_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for blank in ("", "   "):
        with pytest.raises(
            ConfigurationError, match="an empty URL is not a database: give a Postgres URL"
        ):
            pgjobs.App(blank)
        app = pgjobs.App("postgresql://localhost/x")
        with pytest.raises(ConfigurationError, match="an empty URL is not a database"):
            app.url = blank
    monkeypatch.setenv("PGJOBS_URL", "postgresql://somewhere/else")
    assert pgjobs.App().url == "postgresql://somewhere/else"


def test_one_bad_item_in_enqueue_many_inserts_none(
    seeded: int, db: psycopg.Connection[Any]
) -> None:
    items = [(i, i) for i in range(100)] + [(1, "x")] + [(i, i) for i in range(100)]
    with pytest.raises(InvalidArguments, match=r"item 100: task 'add': argument 'b'"):
        sample_app.add.enqueue_many(items)
    unchanged(db, seeded)


def test_bad_options(seeded: int, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(InvalidArguments, match="timezone-aware"):
        sample_app.add.options(run_at=datetime(2030, 1, 1)).enqueue(1, 1)
    with pytest.raises(InvalidArguments, match="delay must be between 0 and"):
        sample_app.add.options(delay=-1).enqueue(1, 1)
    for huge in (1e300, float("nan"), float("inf")):  # past any datetime, or no number
        with pytest.raises(InvalidArguments, match="delay must be between 0 and") as info:
            sample_app.add.options(delay=huge).enqueue(1, 1)
        assert info.value.field == "delay"
    with pytest.raises(InvalidArguments, match="priority must fit"):
        sample_app.add.options(priority=10**6).enqueue(1, 1)
    # Options once checked are kept by the object that has them: wrong ones never are.
    wrong = sample_app.add.options(priority=-(10**6))
    for _ in range(2):
        with pytest.raises(InvalidArguments, match="priority must fit"):
            wrong.enqueue(1, 1)
    with pytest.raises(InvalidArguments, match="args must be a list"):
        sample_app.app.enqueue("add", "1, 2")
    unchanged(db, seeded)


def test_a_task_parameter_named_conn_is_refused_at_registration() -> None:
    app = pgjobs.App("postgresql://localhost/x")
    with pytest.raises(ConfigurationError, match="'conn' is taken by enqueue"):

        @app.task
        def bad(conn: str) -> None: ...


def test_registering_two_tasks_under_one_name_is_refused() -> None:
    app = pgjobs.App("postgresql://localhost/x")

    @app.task
    def one() -> None: ...

    with pytest.raises(ConfigurationError, match="already registered"):
        app.task(name="one")(lambda: None)


def test_a_wrong_conn_type(seeded: int, db: psycopg.Connection[Any]) -> None:
    with pytest.raises(ConfigurationError, match="conn= takes a psycopg Connection"):
        sample_app.add.enqueue(1, 2, conn="postgresql://localhost")
    unchanged(db, seeded)


def test_a_malformed_url() -> None:
    with pytest.raises(ConfigurationError, match="not a valid Postgres URL"):
        pgjobs.App("postgresql://host:notaport/db?bogus_option=1")
    with pytest.raises(ConfigurationError, match="not a valid Postgres URL"):
        pgjobs.App("this is not a dsn")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_database_is_one_clear_error_and_quick(
    seeded: int, db: psycopg.Connection[Any]
) -> None:
    app = pgjobs.App(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x", connect_timeout=2)

    @app.task
    def noop() -> None: ...

    started = time.monotonic()
    with pytest.raises(
        DatabaseUnavailable, match=r"cannot reach Postgres at 127\.0\.0\.1:\d+/x: .*refused"
    ):
        noop.enqueue()
    assert time.monotonic() - started < 10
    with pytest.raises(DatabaseUnavailable):
        app.get_job("01a20c20-868c-7000-866a-d80bc838d789")
    app.close()
    unchanged(db, seeded)


def test_a_database_without_the_schema_says_to_migrate(admin_url: str) -> None:
    app = pgjobs.App(admin_url)

    @app.task
    def noop() -> None: ...

    with pytest.raises(pgjobs.SchemaMissing, match="run `pgjobs migrate`"):
        noop.enqueue()
    with pytest.raises(pgjobs.SchemaMissing):
        app.check_schema()
    app.close()


def test_an_unknown_job_id(app: Any) -> None:
    with pytest.raises(pgjobs.JobNotFound, match="no job with id"):
        app.get_job("01a20c20-868c-7000-866a-d80bc838d789")
    with pytest.raises(pgjobs.JobNotFound, match="is not a job id"):
        app.get_job("42")
