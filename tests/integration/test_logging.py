"""Structured logs: one line per job transition, as text or JSON, from real workers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import sys
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgjobs import Status, Worker
from pgjobs.core.jobs import can_transition
from pgjobs.maintenance import rescuer
from pgjobs.observe.logs import (
    EXTRA_KEY,
    JsonFormatter,
    configure_logging,
    parse_levels,
    transition,
)
from tests import sample_app
from tests.support.common import wait_for

FIELDS = ("job_id", "task", "queue", "from", "to", "attempt", "duration")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

Step = tuple[str | None, str, int]


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line of a worker's output, each of which must be one JSON object."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "the worker wrote nothing"
    return [json.loads(line) for line in lines]


def transitions_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "pgjobs.jobs"]


def as_json(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    """Records caught in this process, through the same formatter a worker uses."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in records if r.name == "pgjobs.jobs"]


def steps_by_job(lines: list[dict[str, Any]]) -> dict[str, list[Step]]:
    out: dict[str, list[Step]] = {}
    for line in sorted(lines, key=lambda line: line["time"]):
        out.setdefault(line["job_id"], []).append((line["from"], line["to"], line["attempt"]))
    return out


def check_line(line: dict[str, Any], level: str | None = None) -> None:
    """What every transition line carries, whatever the transition."""
    for key in FIELDS:
        assert key in line, (key, line)
    assert ISO_UTC.match(line["time"]), line["time"]
    uuid.UUID(line["job_id"])
    assert isinstance(line["attempt"], int)
    assert isinstance(line["duration"], float) and line["duration"] >= 0, line
    assert line["level"] == (level or ("WARNING" if line["to"] == "failed" else "INFO")), line
    # The message says the same as the fields, for people.
    source = line["from"] or "new"
    assert f"job {line['job_id']} {line['task']} {line['queue']} " in line["message"]
    assert f" {source} -> {line['to']} (attempt {line['attempt']}, " in line["message"]
    if line["from"] is not None:
        assert can_transition(line["from"], line["to"]), line


def test_a_json_worker_logs_every_transition_of_every_kind_of_job(
    app: Any, db: psycopg.Connection[Any], spawn_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pgjobs.jobs"):
        ok = sample_app.add.enqueue(1, 2)
        flaky = sample_app.flaky.enqueue(1)  # fails its first attempt, then succeeds
        bad = sample_app.fail.enqueue("boom")  # no retries: fails for good
        waiting = sample_app.add.enqueue(3, 4)
        app.cancel(waiting.id)  # cancelled while pending
        later = sample_app.add.options(delay=0.5).enqueue(5, 6)
        long = sample_app.cancellable_async.enqueue(30)

        w = spawn_worker("--log-format", "json", "--concurrency", "4", "--poll-interval", "0.2")
        wait_for(lambda: db.execute("SELECT count(*) FROM test_runs").fetchone() == (1,))
        app.cancel(long.id)  # cancelled while running: its worker stops it
        ended = [ok, flaky, bad, later, long]
        wait_for(lambda: all(app.get_job(j.id).is_terminal for j in ended), timeout=30)
        assert w.stop() == 0, w.log()
    here = as_json(caplog.records)

    lines = json_lines(w.log())
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any("started:" in line["message"] for line in lines)  # not only transitions
    worker_lines = transitions_of(lines)
    for line in worker_lines + here:
        check_line(line)

    steps = steps_by_job(worker_lines + here)
    assert steps[str(ok.id)] == [
        (None, "pending", 0),
        ("pending", "running", 1),
        ("running", "succeeded", 1),
    ]
    assert steps[str(flaky.id)] == [
        (None, "pending", 0),
        ("pending", "running", 1),
        ("running", "retrying", 1),
        ("retrying", "pending", 1),
        ("pending", "running", 2),
        ("running", "succeeded", 2),
    ]
    assert steps[str(bad.id)] == [
        (None, "pending", 0),
        ("pending", "running", 1),
        ("running", "failed", 1),
    ]
    assert steps[str(waiting.id)] == [(None, "pending", 0), ("pending", "cancelled", 0)]
    assert steps[str(later.id)] == [
        (None, "scheduled", 0),
        ("scheduled", "pending", 0),
        ("pending", "running", 1),
        ("running", "succeeded", 1),
    ]
    assert steps[str(long.id)] == [
        (None, "pending", 0),
        ("pending", "running", 1),
        ("running", "cancelled", 1),
    ]
    assert len(steps) == 6  # nothing about any other job

    by_step = {
        (line["job_id"], line["from"], line["to"], line["attempt"]): line
        for line in worker_lines + here
    }
    failed = by_step[(str(bad.id), "running", "failed", 1)]
    assert (failed["level"], failed["error"], failed["reason"]) == ("WARNING", "ValueError", "boom")
    assert failed["task"] == "fail" and failed["queue"] == "default"
    retry = by_step[(str(flaky.id), "running", "retrying", 1)]
    assert retry["error"] == "ConnectionError" and 0 <= retry["retry_in"] <= 0.1
    assert "next in" in retry["message"]
    # Durations are of what ended: the delay waited, the run that was cancelled.
    assert by_step[(str(later.id), "scheduled", "pending", 0)]["duration"] >= 0.45
    stopped = by_step[(str(long.id), "running", "cancelled", 1)]
    assert stopped["error"] == "CancelledByRequest" and stopped["duration"] > 0.01
    assert by_step[(str(ok.id), None, "pending", 0)]["duration"] < 5


def test_the_text_format_prints_the_human_line(
    app: Any, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGJOBS_LOG_FORMAT", raising=False)
    ok = sample_app.add.enqueue(2, 3)
    bad = sample_app.fail.enqueue("broken")
    w = spawn_worker("--burst", wait=False)
    assert w.wait(60) == 0, w.log()
    log = w.log()
    ms = r"\d+\.\d+ m?s"
    assert re.search(
        rf" INFO pgjobs\.jobs: job {ok.id} add default pending -> running \(attempt 1, {ms}\)$",
        log,
        re.MULTILINE,
    ), log
    assert re.search(
        rf" INFO pgjobs\.jobs: job {ok.id} add default running -> succeeded \(attempt 1, {ms}\)$",
        log,
        re.MULTILINE,
    ), log
    assert re.search(
        rf" WARNING pgjobs\.jobs: job {bad.id} fail default running -> failed "
        rf"\(attempt 1, {ms}\): ValueError: broken$",
        log,
        re.MULTILINE,
    ), log
    assert not log.lstrip().startswith("{")


def test_pgjobs_log_format_in_the_environment_selects_json(
    app: Any, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGJOBS_LOG_FORMAT", "json")
    job = sample_app.add.enqueue(1, 1)
    w = spawn_worker("--burst", wait=False)
    assert w.wait(60) == 0, w.log()
    steps = steps_by_job(transitions_of(json_lines(w.log())))
    assert steps == {str(job.id): [("pending", "running", 1), ("running", "succeeded", 1)]}


def test_transitions_can_be_silenced_but_failures_for_good_are_still_logged(
    app: Any, spawn_worker: Any
) -> None:
    ok = sample_app.add.enqueue(1, 2)
    bad = sample_app.fail.enqueue("still logged")
    w = spawn_worker(
        "--burst", "--log-format", "json", "--log-level", "INFO,pgjobs.jobs=WARNING", wait=False
    )
    assert w.wait(60) == 0, w.log()
    lines = json_lines(w.log())
    assert any("burst done" in line["message"] for line in lines)  # INFO elsewhere still on
    steps = steps_by_job(transitions_of(lines))
    assert steps == {str(bad.id): [("running", "failed", 1)]}
    assert str(ok.id) not in w.log()


def test_a_worker_stopping_past_its_grace_period_logs_the_hand_back(
    app: Any, spawn_worker: Any
) -> None:
    job = sample_app.asleep.enqueue(30)
    w = spawn_worker("--log-format", "json", "--grace-period", "0")
    wait_for(lambda: app.get_job(job.id).status is Status.RUNNING)
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0, w.log()
    lines = transitions_of(json_lines(w.log()))
    for line in lines:
        check_line(line)
    assert steps_by_job(lines) == {
        str(job.id): [("pending", "running", 1), ("running", "pending", 1)]
    }
    assert lines[-1]["reason"] == "the worker is stopping"
    assert app.get_job(job.id).status is Status.PENDING


def test_enqueue_logs_one_line_per_new_job_and_none_for_a_duplicate_or_below_info(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pgjobs.jobs"):
        sample_app.add.enqueue_many([(i, i) for i in range(150)])
    assert as_json(caplog.records) == []

    with caplog.at_level(logging.INFO, logger="pgjobs.jobs"):
        jobs = sample_app.add.enqueue_many([(i, i) for i in range(150)])  # by COPY
        few = sample_app.add.enqueue_many([(i, i) for i in range(3)])  # one INSERT
        keyed = sample_app.add.options(dedup_key="once").enqueue(1, 1)
        again = sample_app.add.options(dedup_key="once").enqueue(1, 1)
    assert again.deduplicated
    lines = as_json(caplog.records)
    for line in lines:
        check_line(line)
    assert [line["job_id"] for line in lines] == [str(j.id) for j in [*jobs, *few, keyed]]
    assert {(line["from"], line["to"], line["attempt"]) for line in lines} == {(None, "pending", 0)}


def test_cancel_and_replay_log_the_status_they_leave(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    scheduled = sample_app.add.options(delay=60).enqueue(1, 1)
    bad = sample_app.fail.enqueue("again")
    with caplog.at_level(logging.INFO, logger="pgjobs.jobs"):
        app.cancel(scheduled.id)
        Worker(app, burst=True).run(install_signal_handlers=False)
        app.replay(bad.id)
        app.replay(scheduled.id)
    lines = as_json(caplog.records)
    for line in lines:
        check_line(line)
    assert steps_by_job(lines) == {
        str(scheduled.id): [("scheduled", "cancelled", 0), ("cancelled", "pending", 0)],
        str(bad.id): [
            ("pending", "running", 1),
            ("running", "failed", 1),
            ("failed", "pending", 1),
        ],
    }
    assert [line.get("reason") for line in lines if line["to"] == "pending"] == ["replayed"] * 2


def test_a_claim_of_a_limited_task_logs_how_long_the_job_waited(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    job = sample_app.fragile_api.enqueue(1, 0.0)
    with caplog.at_level(logging.INFO, logger="pgjobs.jobs"):
        Worker(app, burst=True).run(install_signal_handlers=False)
    lines = as_json(caplog.records)
    claim = [line for line in lines if line["to"] == "running"]
    assert len(claim) == 1 and claim[0]["job_id"] == str(job.id)
    check_line(claim[0])


def test_a_rescue_is_logged_as_a_warning_with_the_lost_worker(
    app: Any, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    again = sample_app.flaky.enqueue(0)  # attempts left: it runs again
    last = sample_app.add.enqueue(1, 2)  # its only attempt: a lost one does not spend it
    spent = sample_app.add.enqueue(2, 2)  # lost twice before: the crash budget is spent
    db.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, heartbeat_at)"
        " VALUES ('w-gone', 'h', 1, '{default}', 1, now() - interval '1 hour')"
    )
    db.execute(
        "UPDATE pgjobs.jobs SET status = 'running', attempt = 1, worker_id = 'w-gone',"
        " started_at = now() - interval '2 seconds'"
    )
    db.execute("UPDATE pgjobs.jobs SET attempt = 3, max_attempts = 3 WHERE id = %s", (spent.id,))
    db.execute(
        "INSERT INTO pgjobs.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)"
        " VALUES (%s, 1, 'w-old', now(), now(), 'lost'), (%s, 2, 'w-old', now(), now(), 'lost')",
        (spent.id, spent.id),
    )

    async def rescue() -> int:
        async with await psycopg.AsyncConnection.connect(app.url, autocommit=True) as conn:
            return await rescuer.run_once(conn)

    with caplog.at_level(logging.WARNING, logger="pgjobs.jobs"):
        assert asyncio.run(rescue()) == 3
    lines = as_json(caplog.records)
    for line in lines:
        check_line(line, level="WARNING")  # a worker died: worth a warning
        assert line["error"] == "WorkerLost" and "rescued from worker w-gone" in line["reason"]
        assert line["duration"] >= 2
    assert steps_by_job(lines) == {
        str(again.id): [("running", "pending", 1)],
        str(last.id): [("running", "pending", 1)],
        str(spent.id): [("running", "failed", 3)],
    }
    assert "the crash budget is spent" in next(
        line["reason"] for line in lines if line["job_id"] == str(spent.id)
    )


def test_the_json_formatter_writes_exc_info_and_the_fields_as_keys() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pgjobs.test_logging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.error("it broke: %s", "here", exc_info=True, extra={EXTRA_KEY: {"n": 1}})
        logger.warning("plain")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert ISO_UTC.match(first["time"])
    assert (first["level"], first["logger"], first["message"], first["n"]) == (
        "ERROR",
        "pgjobs.test_logging",
        "it broke: here",
        1,
    )
    assert first["exc_info"].startswith("Traceback (most recent call last):")
    assert first["exc_info"].endswith("ValueError: bad\nthing")
    assert "exc_info" not in second and "n" not in second
    written = datetime.fromisoformat(first["time"])
    assert written.utcoffset() == timedelta(0)
    assert abs(written.timestamp() - time.time()) < 60


def test_a_transition_record_carries_its_fields_under_one_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = uuid.uuid4()
    with caplog.at_level(logging.INFO, logger="pgjobs.jobs"):
        transition(job_id, "emails.send", "default", Status.RUNNING, Status.SUCCEEDED, 1, 0.0123)
    [record] = caplog.records
    assert record.getMessage() == (
        f"job {job_id} emails.send default running -> succeeded (attempt 1, 12.3 ms)"
    )
    assert getattr(record, EXTRA_KEY) == {
        "job_id": str(job_id),
        "task": "emails.send",
        "queue": "default",
        "from": "running",
        "to": "succeeded",
        "attempt": 1,
        "duration": 0.0123,
    }
    assert record.levelno == logging.INFO
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pgjobs.jobs"):
        transition(job_id, "t", "q", Status.PENDING, Status.RUNNING, 1, 0.5)
        transition(job_id, "t", "q", Status.RUNNING, Status.FAILED, 1, 2.5, error="E")
    assert [r.getMessage() for r in caplog.records] == [
        f"job {job_id} t q running -> failed (attempt 1, 2.50 s): E"
    ]


def test_configure_logging_picks_the_format_and_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgjobs.core.errors import ConfigurationError

    assert parse_levels("warning,pgjobs.jobs=error, pgjobs.worker = debug") == (
        logging.WARNING,
        {"pgjobs.jobs": logging.ERROR, "pgjobs.worker": logging.DEBUG},
    )
    with pytest.raises(ConfigurationError, match="unknown log level 'LOUD'"):
        parse_levels("LOUD")
    with pytest.raises(ConfigurationError, match="unknown log format 'xml'"):
        configure_logging("INFO", "xml")

    root = logging.getLogger()
    level = root.level
    monkeypatch.setenv("PGJOBS_LOG_FORMAT", "json")
    try:
        stream = io.StringIO()
        first = configure_logging("INFO", stream=stream)
        second = configure_logging("INFO", stream=stream)  # replaces its own handler only
        assert first not in root.handlers and root.handlers.count(second) == 1
        assert isinstance(second.formatter, JsonFormatter)
        logging.getLogger("pgjobs.test_logging").info("hello")
        assert json.loads(stream.getvalue())["message"] == "hello"
        text = configure_logging("INFO", "text", stream=sys.stderr)
        assert not isinstance(text.formatter, JsonFormatter)
    finally:
        for h in [h for h in root.handlers if h.get_name() == "pgjobs"]:
            root.removeHandler(h)
        root.setLevel(level)
        logging.captureWarnings(False)
