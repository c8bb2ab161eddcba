"""The worker: claims jobs, runs them, and records their outcomes."""

from pgjobs.worker.config import WorkerConfig
from pgjobs.worker.worker import Worker

__all__ = ["Worker", "WorkerConfig"]
