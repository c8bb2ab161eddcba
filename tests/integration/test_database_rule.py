"""One rule picks the database for the App, every CLI command, the worker and the web server:
an explicit URL (App(url), --url) wins over $PGJOBS_URL; the embedded Postgres only when asked
for by name or, with nothing configured, with the `embedded` extra installed and a WARNING
naming its data folder; otherwise a one-line ConfigurationError."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import ConfigurationError
from pgjobs.db.driver import describe
from tests.support.common import ROOT, count, wait_for

# Each test runs `pgjobs` commands as processes of their own.
pytestmark = pytest.mark.processes

NO_EMBEDDED = str(ROOT / "tests" / "support" / "no_embedded")
DEAD = "postgresql://postgres@127.0.0.1:1/nobody"


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bare_env(**extra: str) -> dict[str, str]:
    """The environment without any database configured."""
    env = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_URL", "PGJOBS_APP")}
    return {**env, **extra}


def test_an_explicit_url_wins_over_pgjobs_url_in_process(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGJOBS_URL", DEAD)
    app = pgjobs.App(db_url)
    assert app.url == db_url and not app.embedded
    assert pgjobs.App().url == DEAD  # no URL of its own: $PGJOBS_URL


def test_with_nothing_configured_and_no_embedded_extra_every_command_is_one_clear_line(
    tmp_path: Path,
) -> None:
    env = bare_env(PYTHONPATH=NO_EMBEDDED, PGJOBS_DATA_DIR=str(tmp_path / "data"))
    for args in (
        ("migrate",),
        ("enqueue", "add", "--app", "tests.sample_app:app", "--args", "[1, 2]"),
        ("queues",),
        ("status", "01a24f00-0000-7000-8000-000000000000"),
        ("worker", "tests.sample_app:app", "--burst"),
    ):
        result = run(*args, env=env)
        assert result.returncode == 1, (args, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert "no database configured" in lines[0] and "PGJOBS_URL" in lines[0], lines
    assert not (tmp_path / "data").exists()  # nothing was started or written


def test_the_embedded_extra_without_a_name_missing_is_one_clear_line(tmp_path: Path) -> None:
    env = bare_env(PYTHONPATH=NO_EMBEDDED, PGJOBS_URL="embedded")
    result = run("queues", env=env)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result
    assert "pip install 'pgjobs[embedded]'" in result.stderr


def test_with_nothing_configured_the_embedded_postgres_is_named_with_its_folder(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = bare_env(PGJOBS_DATA_DIR=str(data))
    result = run("migrate", env=env, timeout=120)
    assert result.returncode == 0, result
    assert "using the embedded Postgres in" in result.stderr and str(data) in result.stderr


def test_in_pgjobs_worker_the_apps_own_url_wins_over_pgjobs_url_and_the_first_line_names_it(
    db: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    env = bare_env(PGJOBS_URL=DEAD, PGJOBS_TEST_EXPLICIT_URL=db_url, PYTHONUNBUFFERED="1")
    from tests import explicit_url_app

    explicit_url_app.app.url = db_url
    job = explicit_url_app.mark.enqueue(7)
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgjobs", "worker", "tests.explicit_url_app:app"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        done = f"SELECT count(*) FROM pgjobs.jobs WHERE id = '{job.id}' AND status = 'succeeded'"
        wait_for(lambda: count(db, done) == 1, timeout=30)
    finally:
        proc.terminate()
        proc.wait(30)
        explicit_url_app.app.close()
    first = log.read_text().splitlines()[0]
    assert first.endswith(f"INFO pgjobs.worker: pgjobs worker: database {describe(db_url)}"), first
    assert describe(DEAD) not in log.read_text()


def test_an_explicit_url_on_the_command_line_wins_over_the_apps_own(
    db_url: str, tmp_path: Path
) -> None:
    env = bare_env(PGJOBS_TEST_EXPLICIT_URL=DEAD)
    started = time.monotonic()
    result = run("queues", "--app", "tests.explicit_url_app:app", "--url", db_url, env=env)
    assert result.returncode == 0, result
    assert time.monotonic() - started < 30


def test_app_with_an_empty_or_missing_configuration_raises_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGJOBS_URL", raising=False)
    from pgjobs.db import embedded

    monkeypatch.setattr(embedded, "available", lambda: False)
    with pytest.raises(ConfigurationError, match="no database configured"):
        _ = pgjobs.App().url
