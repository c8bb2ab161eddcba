"""The embedded default: no URL, no server to install, and a clean stop."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.support.common import ROOT

SCRIPT = textwrap.dedent(
    """
    import pgjobs

    app = pgjobs.App()

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    app.migrate()
    job = double.enqueue(21)
    pgjobs.Worker(app, burst=True).run()
    print("embedded:", app.embedded, "result:", job.wait(10), "url:", app.url)
    app.close()
    """
)


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_URL",)}
    env["PGJOBS_DATA_DIR"] = str(data)
    return env


def test_an_app_without_a_url_runs_jobs_on_the_embedded_postgres(tmp_path: Path) -> None:
    data = tmp_path / "pgdata"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "embedded: True result: 42" in result.stdout
    assert f"host={data}" in result.stdout  # a Unix socket in the data folder, no TCP port
    assert (data / "PG_VERSION").read_text().strip() == "18"
    # The server stops when the last process using it exits.
    deadline = time.monotonic() + 20
    while (data / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (data / "postmaster.pid").exists()


def test_pgjobs_demo_runs_to_completion(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pgjobs", "demo", "--data-dir", str(tmp_path / "demo")],
        cwd=ROOT,
        env=_env(tmp_path / "unused"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    out = result.stdout
    assert "using embedded Postgres" in out
    assert "summary" in out
    for task in ("export_report", "send_email", "call_webhook"):
        assert task in out
    assert "100.0%  succeeded" in out  # the report exports' progress bars reached the end
    assert "60/60" in out
