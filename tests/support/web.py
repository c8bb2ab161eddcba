"""A real `pgjobs web` process, and the browser the dashboard tests drive."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.common import ROOT

# `make test` installs Debian's chromium and points PGJOBS_CHROMIUM at it.
CHROMIUM = Path(os.environ.get("PGJOBS_CHROMIUM", "/usr/bin/chromium"))
TOKEN = "dashboard-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app_ref: str, db_url: str, log: Path) -> Iterator[str]:
    """A real `pgjobs web` process for `app_ref`, with a token, on a free port."""
    port = free_port()
    # The token goes in the environment, not on the command line where `ps` shows it.
    env = {**os.environ, "PGJOBS_URL": db_url, "PGJOBS_WEB_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgjobs", "web", app_ref, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"pgjobs web exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"pgjobs web did not answer within 30 s:\n{log.read_text()}")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
