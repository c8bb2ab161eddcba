"""The pgjobs command line: demo, worker, migrate, enqueue, status, jobs, queues, dead letters.

This module holds the `main` group, what every command shares (loading the App,
the duration type, the --url/--app options) and the commands on single jobs;
check, dead-letters, workflow and web live in modules of their own.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import click

from pgjobs.client.app import App
from pgjobs.client.loading import load_app
from pgjobs.core.errors import ConfigurationError, InvalidArguments, PgJobsError
from pgjobs.core.jobs import Status


class _Mistake(click.ClickException):
    """A usage mistake, shown as every other pgjobs error is: one line on stderr, exit 1."""

    prefix = "Error: "

    def show(self, file: Any = None) -> None:
        click.echo(f"{self.prefix}{self.format_message()}", err=True)


class _CheckMistake(_Mistake):
    """A usage mistake of `pgjobs check`: exit 2, as when it cannot check, since 1 is a breach."""

    exit_code = 2
    prefix = "pgjobs check: "


def _one_line(exc: click.UsageError) -> _Mistake:
    # click shows a usage error as the usage, a hint and the error, and exits 2.
    if exc.ctx is not None and isinstance(exc.ctx.command, _CheckCommand):
        return _CheckMistake(exc.format_message())
    return _Mistake(exc.format_message())


class _Group(click.Group):
    """Turns every pgjobs error and every usage mistake into one clear line and exit status 1.

    `--help` is untouched, and so is a group called without a command, which shows its help.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except PgJobsError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None


class _CheckCommand(click.Command):
    """`pgjobs check`: a usage mistake exits 2, as every other reason it cannot check does."""


def _app(spec: str | None, url: str | None, pooler: str | None = None) -> App:
    handlers = logging.getLogger("pgjobs").handlers + logging.getLogger().handlers
    if all(isinstance(h, logging.NullHandler) for h in handlers):
        # A command that logs nothing else still says when it falls back to the embedded
        # Postgres (resolve_url's WARNING), on stderr.
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("pgjobs: %(message)s"))
        logging.getLogger("pgjobs").addHandler(handler)
    app = load_app(spec) if spec else App()
    # An explicit --url wins over the App's own URL; $PGJOBS_URL (which click also hands in
    # as `url`) does not: the App reads it itself when it was given none (resolve_url).
    source = click.get_current_context().get_parameter_source("url")
    if url is not None and source is not click.core.ParameterSource.ENVIRONMENT:
        app.url = url  # an explicit --url '' is refused by the App, not ignored
    if pooler is not None:
        # As --url: an explicit --pooler wins over the App's own and $PGJOBS_POOLER.
        from pgjobs.db.driver import pooler_mode

        app.pooler = pooler_mode(pooler, "--pooler")
        # The worker's child processes (--processes) load the App anew: they read it here.
        os.environ["PGJOBS_POOLER"] = app.pooler or "none"
    # Close the pool before the interpreter tears down: a pool left to its
    # finaliser at exit can print "Exception ignored" noise on stderr.
    click.get_current_context().call_on_close(app.close)
    return app


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_json_default, indent=2))


# Subscripted only for the type checker: click before 8.5 has no type parameters at run time.
if TYPE_CHECKING:
    _DurationBase: TypeAlias = click.ParamType[float | None, str | float]
else:
    _DurationBase = click.ParamType


class _Duration(_DurationBase):
    """A duration option, read by the one parser every duration of the CLI goes through
    (_age): seconds (90, 1.5) or 90s, 30m, 2h, 7d; 'forever' (None) where `forever`."""

    name = "duration"

    def __init__(self, minimum: float = 0.0, *, forever: bool = False) -> None:
        self.minimum = minimum
        self.forever = forever

    def convert(
        self, value: str | float, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if isinstance(value, (int, float)):
            seconds: float | None = float(value)  # a default given in seconds
        elif self.forever and value.strip() == "forever":
            return None
        else:
            seconds = _age(value.strip())
        # The message names the option as the CLI's other mistakes do ("--delay takes ..."),
        # not as click's "Invalid value for ...".
        option = param.opts[0] if param is not None and param.opts else "a duration"
        if seconds is None:
            also = " or 'forever'" if self.forever else ""
            raise click.UsageError(
                f"{option} takes a duration (90, 1.5, 90s, 30m, 2h, 7d){also}, got {value!r}", ctx
            )
        if seconds < self.minimum:
            raise click.UsageError(
                f"{option} must be at least {self.minimum:g} seconds, got {value!r}", ctx
            )
        return seconds


url_option = click.option(
    "--url",
    envvar="PGJOBS_URL",
    help="Postgres URL, or 'embedded' (default: the APP's own URL, else $PGJOBS_URL).",
)
pooler_option = click.option(
    "--pooler",
    metavar="MODE",
    help="'transaction': the URL leads through a transaction-pooling PgBouncer or proxy; "
    "no session state on its connections, listen_url for what needs one "
    "(default: the APP's own, else $PGJOBS_POOLER, else none).",
)
app_option = click.option(
    "--app", "app_spec", envvar="PGJOBS_APP", help="The App to use, as package.module:app."
)


@click.group(cls=_Group)
@click.version_option(package_name="pgjobs")
def main() -> None:
    """pgjobs: a Postgres-native background job queue."""


@main.command()
@click.option("--jobs", "count", default=60, show_default=True, help="How many email jobs.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Embedded Postgres folder.")
def demo(count: int, data_dir: str | None) -> None:
    """Run a worker with example tasks on the embedded Postgres and watch them."""
    from pgjobs.demo import run_demo

    if data_dir:
        os.environ["PGJOBS_DATA_DIR"] = data_dir
    sys.exit(run_demo(emails=count))


def _worker_settings(command: Any) -> Any:
    """The `worker` command's options for the Worker's settings, made from their one
    definition (pgjobs.worker.config.SETTINGS): name, type, default, bound and help."""
    from pgjobs.worker.config import SETTINGS, default_text

    for s in reversed([s for s in SETTINGS if s.option is not None]):
        assert s.option is not None
        names = [s.option, *([s.short] if s.short else []), s.name]
        extra: dict[str, Any] = {}
        if s.default is not None:
            extra = {"default": default_text(s), "show_default": True}
        if s.kind == "flag":
            extra = {"is_flag": True}
        elif s.kind == "switch":
            names[0] = f"{s.option}/--no-{s.option[2:]}"
        elif s.kind == "count":
            extra["type"] = click.IntRange(int(s.minimum or 0))
        else:
            forever = s.kind == "retention"
            extra["type"] = _Duration(s.minimum or 0.0, forever=forever)
        command = click.option(*names, help=s.help, **extra)(command)
    return command


@main.command()
@click.argument("app_spec", metavar="APP")
@url_option
@pooler_option
@click.option(
    "--queues",
    "-q",
    default="default",
    show_default=True,
    help="Comma-separated; with weights (emails=3,reports=1) the claims share by weight.",
)
@click.option(
    "--strict", is_flag=True, help="Claim the first queue's jobs before any of the next's."
)
@_worker_settings
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    help="A level, and levels of single loggers: INFO,pgjobs.jobs=WARNING keeps job "
    "transitions out of the log but failures for good.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    envvar="PGJOBS_LOG_FORMAT",
    show_envvar=True,
    default="text",
    show_default=True,
    help="json: one object per line, job transitions with their fields as keys.",
)
def worker(
    app_spec: str,
    url: str | None,
    pooler: str | None,
    queues: str,
    strict: bool,
    log_level: str,
    log_format: str,
    **settings: Any,
) -> None:
    """Run a worker for APP (package.module:app) until SIGTERM or SIGINT."""
    from pgjobs.observe.logs import configure_logging
    from pgjobs.worker import Worker, WorkerConfig

    plan = _queues(queues)  # a mistake there is reported before any connection is made
    configure_logging(log_level, log_format)
    app = _app(app_spec, url, pooler)
    if app.embedded:
        app.migrate()
    _wait_for_database(app)
    config = WorkerConfig.make(
        queues=plan, queue_order="strict" if strict else None, app_spec=app_spec, **settings
    )
    w = Worker(app, config)
    # Said once the database answers, has the schema and the options are sound: a mistake
    # before that stays one line.
    _say_database("worker", app)
    w.run()
    if w.abandoned_threads:
        # Their jobs were handed back or failed already; a thread cannot be
        # stopped, and waiting for it would keep a job running in a worker
        # that no longer owns it. Leave now.
        logging.getLogger("pgjobs.worker").warning(
            "exiting with %d task threads still running", w.abandoned_threads
        )
        logging.shutdown()
        os._exit(w.exit_code)
    sys.exit(w.exit_code)


def _say_database(command: str, app: App) -> None:
    """A long-running command's first line: which database it uses (never the password).

    The worker says it in its log, so that a JSON log stays JSON."""
    from pgjobs.db.driver import describe

    url = app.url
    where = "the embedded Postgres at " if app.embedded else ""
    line = f"pgjobs {command}: database {where}{describe(url)}"
    if command == "worker":
        logging.getLogger("pgjobs.worker").info(line)
    else:
        click.echo(line, err=True)


def _wait_for_database(app: Any) -> None:
    """Check the schema, waiting while the database cannot be reached.

    A worker started during an outage (the database restarting in the same
    deploy, a supervisor that starts everything at once) waits for it and says
    so, instead of exiting; a schema that is missing is still an error at once.
    """
    from pgjobs.db.driver import DatabaseUnavailable, describe

    log = logging.getLogger("pgjobs.worker")
    waited = 0.0
    while True:
        try:
            app.check_schema()
        except DatabaseUnavailable as exc:
            if waited == 0.0:
                log.warning(
                    "cannot reach the database at %s (%s); waiting for it", describe(app.url), exc
                )
            delay = min(1.0, 0.1 + waited / 10)
            time.sleep(delay)
            waited += delay
            continue
        if waited:
            log.info("the database answers again after %.0f s", waited)
        return


def _queues(text: str) -> list[str] | dict[str, float]:
    """'a,b' -> ['a', 'b']; 'a=3,b=1' -> {'a': 3.0, 'b': 1.0}."""
    names = [q.strip() for q in text.split(",")]
    if not any(names):
        raise ConfigurationError(f"--queues needs at least one queue name, got {text!r}")
    if not all(q.partition("=")[0].strip() for q in names):
        # A stray comma or a bare =weight: the worker would silently serve fewer queues.
        raise ConfigurationError(f"--queues has an empty queue name in {text!r}")
    if not any("=" in q for q in names):
        return names
    weights: dict[str, float] = {}
    for item in names:
        name, _, weight = item.partition("=")
        try:
            weights[name.strip()] = float(weight or "1")
        except ValueError:
            raise InvalidArguments(
                f"--queues: {item!r} is not name=weight with a number for weight"
            ) from None
    return weights


@main.command()
@url_option
@pooler_option
@app_option
def migrate(url: str | None, pooler: str | None, app_spec: str | None) -> None:
    """Create or upgrade the pgjobs schema."""
    from pgjobs.db import migrations

    app = _app(app_spec, url, pooler)
    app.migrate()
    click.echo(f"pgjobs schema is at revision {migrations.current(app.url, app.pooler)}")


@main.command()
@click.argument("task")
@app_option
@url_option
@click.option("--args", "args_json", default="[]", help="Positional arguments, a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments, a JSON object.")
@click.option("--queue", help="Queue (default: the task's).")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--delay", type=_Duration(), help="How long before it may run (90, 30m, 2h, 7d).")
@click.option("--dedup-key", help="Return the existing job if this key was used.")
@click.option(
    "--dedup-window",
    type=_Duration(),
    help="How long the key holds after its job ended (90, 30m, 2h, 7d).",
)
def enqueue(
    task: str,
    app_spec: str | None,
    url: str | None,
    args_json: str,
    kwargs_json: str,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    dedup_key: str | None,
    dedup_window: float | None,
) -> None:
    """Enqueue TASK of --app with JSON arguments; prints the job id."""
    if not task.strip():
        raise InvalidArguments(f"enqueue needs a TASK name, got {task!r}")
    if not app_spec:
        raise ConfigurationError("enqueue needs --app (or $PGJOBS_APP) to know the tasks")
    args = _parse_json("--args", args_json, list, "array")
    kwargs = _parse_json("--kwargs", kwargs_json, dict, "object")
    app = _app(app_spec, url)
    job = app.enqueue(
        task,
        args,
        kwargs,
        queue=queue,
        priority=priority,
        delay=delay,
        dedup_key=dedup_key,
        dedup_window=dedup_window,
    )
    note = " (existing job: same dedup key)" if job.deduplicated else ""
    click.echo(f"{job.id}{note}")


def _parse_json(option: str, text: str, kind: type, name: str) -> Any:
    from pgjobs.client.encoding import MAX_DEPTH

    try:
        value = json.loads(text)
    except RecursionError:
        # json.loads recurses once a level: text nested this deep is far past
        # the limit that enqueue checks for what it parses.
        raise InvalidArguments(
            f"{option} nests arrays and objects deeper than {MAX_DEPTH} levels"
        ) from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise InvalidArguments(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise InvalidArguments(f"{option} must be a JSON {name}, got {text!r}")
    return value


@main.command()
@click.argument("job_id")
@url_option
@app_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(job_id: str, url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Show one job's status, progress, result or error."""
    job = _app(app_spec, url).get_job(job_id)
    view = job.status_view()
    if as_json:
        _echo_json(view)
        return
    for key in (
        "job_id",
        "task",
        "queue",
        "status",
        "attempts",
        "created_at",
        "started_at",
        "completed_at",
    ):
        click.echo(f"{key:>13}: {view[key] if view[key] is not None else '-'}")
    if job.progress:
        click.echo(f"{'progress':>13}: {json.dumps(job.progress)}")
    if view["result"] is not None:
        click.echo(f"{'result':>13}: {json.dumps(view['result'])}")
    if job.error:
        click.echo(f"{'error':>13}: {job.error.get('type')}: {job.error.get('message')}")


@main.command()
@url_option
@app_option
@click.option("--status", "status_filter", help="Only jobs in this status.")
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--task", help="Only jobs of this task.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", help="next_cursor of the previous page.")
@click.option("--json", "as_json", is_flag=True)
def jobs(
    url: str | None,
    app_spec: str | None,
    status_filter: str | None,
    queue: str | None,
    task: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    page = _app(app_spec, url).jobs(
        status=status_filter, queue=queue, task=task, limit=limit, cursor=cursor
    )
    if as_json:
        _echo_json({"jobs": [j.status_view() for j in page.jobs], "next_cursor": page.next_cursor})
        return
    click.echo(f"{'id':36}  {'task':20} {'queue':12} {'status':10} {'att':>3}  created")
    for j in page.jobs:
        created = j.created_at.strftime("%Y-%m-%d %H:%M:%S") if j.created_at else "-"
        click.echo(
            f"{j.id!s:36}  {j.task[:20]:20} {j.queue[:12]:12} {j.status.value:10} "
            f"{j.attempts:>3}  {created}"
        )
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@main.command()
@url_option
@app_option
@click.option("--json", "as_json", is_flag=True)
def queues(url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Show each queue's depth by status and the age of its oldest ready job."""
    stats = _app(app_spec, url).queues()
    if as_json:
        _echo_json(
            [
                {
                    "queue": q.queue,
                    "depth": q.depth,
                    "counts": q.counts,
                    "oldest_pending_age": q.oldest_pending_age,
                }
                for q in stats
            ]
        )
        return
    cols = ("scheduled", "pending", "running", "retrying", "succeeded", "failed", "cancelled")
    click.echo(f"{'queue':16}" + "".join(f"{c:>11}" for c in cols) + f"{'oldest':>9}")
    for q in stats:
        age = f"{q.oldest_pending_age:.1f}s" if q.oldest_pending_age is not None else "-"
        click.echo(
            f"{q.queue[:16]:16}" + "".join(f"{q.counts.get(c, 0):>11}" for c in cols) + f"{age:>9}"
        )
    if not stats:
        click.echo("(no jobs)")


@main.command()
@click.argument("job_id")
@url_option
@app_option
def cancel(job_id: str, url: str | None, app_spec: str | None) -> None:
    """Cancel a job; a running one is stopped by its worker, wherever that runs.

    A job that already succeeded or failed cannot be cancelled: one line, exit status 1.
    """
    job = _app(app_spec, url).cancel(job_id)
    if job.is_terminal and job.status is not Status.CANCELLED:
        raise click.ClickException(f"job {job.id} already {job.status.value}: nothing to cancel")
    if job.status is Status.RUNNING:
        click.echo(f"{job.id} running: cancellation requested from its worker")
    else:
        click.echo(f"{job.id} {job.status.value}")


# -- durations ---------------------------------------------------------------------


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _age(value: str) -> float | None:
    """Seconds in '90', '30s', '30m', '2h', '7d'; None when it is not such a text."""
    number, unit = (value[:-1], value[-1]) if value[-1:] in _UNITS else (value, "s")
    if not number.replace(".", "", 1).isdigit():
        return None
    return float(number) * _UNITS[unit]


# The commands of these modules register on `main` as they are imported.
from pgjobs.cli import check, dead_letters, web, workflows  # noqa: E402

__all__ = ["check", "dead_letters", "load_app", "main", "web", "workflows"]

if __name__ == "__main__":
    main()
