"""Workers for tests: in-process (drain the queues, or run one on a thread) and real processes."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from pgjobs import Worker


def drain(app: Any, **options: Any) -> Worker:
    """Run an in-process worker until the queues are empty."""
    options.setdefault("queues", ["default", "fast", "other"])
    worker = Worker(app, burst=True, **options)
    worker.run(install_signal_handlers=False)
    return worker


def start_in_thread(app: Any, **options: Any) -> tuple[Worker, threading.Thread]:
    worker = Worker(app, **options)
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    assert worker.wait_started(30)
    return worker, thread


class WorkerProcess:
    """A real `pgjobs worker` process on the test database."""

    def __init__(self, proc: subprocess.Popen[str], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(10)
        return self.proc.returncode
