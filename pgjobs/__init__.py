"""pgjobs: a Postgres-native background job queue for Python."""

import logging as _logging

from pgjobs._db import DatabaseUnavailable, SchemaMissing
from pgjobs.app import App, Page, QueueStats
from pgjobs.context import JobContext, current_job
from pgjobs.errors import (
    ConfigurationError,
    IllegalTransition,
    InvalidArguments,
    JobCancelled,
    JobFailed,
    JobNotFound,
    PayloadTooLarge,
    PgJobsError,
    SerializationError,
    UnknownTask,
    WaitTimeout,
)
from pgjobs.jobs import Job, Status
from pgjobs.retry import Backoff
from pgjobs.tasks import Task
from pgjobs.worker import Worker

__version__ = "0.1.0"

# A library logs; the application decides where the lines go.
_logging.getLogger("pgjobs").addHandler(_logging.NullHandler())

__all__ = [
    "App",
    "Backoff",
    "ConfigurationError",
    "DatabaseUnavailable",
    "IllegalTransition",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "Page",
    "PayloadTooLarge",
    "PgJobsError",
    "QueueStats",
    "SchemaMissing",
    "SerializationError",
    "Status",
    "Task",
    "UnknownTask",
    "WaitTimeout",
    "Worker",
    "current_job",
]
