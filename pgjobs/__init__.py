"""pgjobs: a Postgres-native background job queue for Python."""

import logging as _logging

from pgjobs.client.app import App, use_worker
from pgjobs.client.context import JobContext, current_job
from pgjobs.client.tasks import Task
from pgjobs.client.workflows import Call, Workflow, WorkflowInfo, chain, chord, group
from pgjobs.core.errors import (
    CancelledByRequest,
    ConfigurationError,
    HardTimeout,
    IllegalTransition,
    InvalidArguments,
    JobCancelled,
    JobFailed,
    JobNotFound,
    PayloadTooLarge,
    Permanent,
    PgJobsError,
    Retry,
    SerializationError,
    SoftTimeout,
    UnknownTask,
    WaitTimeout,
    WorkerCrashed,
)
from pgjobs.core.jobs import DeadLetter, Job, JobList, Status
from pgjobs.core.pages import Page, QueueStats
from pgjobs.core.retry import Backoff, RetryPolicy
from pgjobs.db.driver import DatabaseUnavailable, SchemaMissing
from pgjobs.worker import Worker

__version__ = "0.1.0"

# App.run_worker() runs the Worker: the client layer is below the worker and does not
# import it, so the package, which imports both, wires them.
use_worker(Worker)

# A library logs; the application decides where the lines go.
_logging.getLogger("pgjobs").addHandler(_logging.NullHandler())

__all__ = [
    "App",
    "Backoff",
    "Call",
    "CancelledByRequest",
    "ConfigurationError",
    "DatabaseUnavailable",
    "DeadLetter",
    "HardTimeout",
    "IllegalTransition",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobList",
    "JobNotFound",
    "Page",
    "PayloadTooLarge",
    "Permanent",
    "PgJobsError",
    "QueueStats",
    "Retry",
    "RetryPolicy",
    "SchemaMissing",
    "SerializationError",
    "SoftTimeout",
    "Status",
    "Task",
    "UnknownTask",
    "WaitTimeout",
    "Worker",
    "WorkerCrashed",
    "Workflow",
    "WorkflowInfo",
    "chain",
    "chord",
    "current_job",
    "group",
]
