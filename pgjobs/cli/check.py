"""`pgjobs check`: exit 1 when a queue's backlog or the xmin horizon passes its limit."""

from __future__ import annotations

import click

from pgjobs.cli import _age, _CheckCommand, load_app, main
from pgjobs.core.errors import PgJobsError
from pgjobs.observe import horizon
from pgjobs.observe.health import ANY_QUEUE, Threshold, check_health, merge_thresholds


class _CheckError(Exception):
    """`pgjobs check` cannot check: a usage mistake or no database (exit 2)."""


@main.command(cls=_CheckCommand)
@click.argument("app_spec", metavar="[APP]", required=False)
@click.option("--url", envvar="PGJOBS_URL", help="Postgres URL (default: $PGJOBS_URL).")
@click.option(
    "--max-depth",
    type=click.IntRange(0),
    help="Most jobs a queue may have waiting (pending, scheduled, retrying).",
)
@click.option("--max-age", help="Longest the oldest ready job may wait: seconds, or 90s, 5m, 2h.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="A queue the --max-* limits apply to; repeat it for more (default: every queue).",
)
@click.option(
    "--max-horizon-age",
    envvar="PGJOBS_HORIZON_MAX_AGE",
    show_envvar=True,
    help="Longest a transaction, prepared transaction or slot may hold the xmin horizon: "
    "seconds, or 90s, 5m (default: APP's, else 5m).",
)
def check(
    app_spec: str | None,
    url: str | None,
    max_depth: int | None,
    max_age: str | None,
    queues: tuple[str, ...],
    max_horizon_age: str | None,
) -> None:
    """Exit 1 when a queue's backlog passes a limit or the xmin horizon is held too long, 0
    when neither, 2 when it cannot check.

    Limits come from --max-depth and --max-age, for the --queue queues or
    every queue, and from APP's thresholds (package.module:app); the flags win.
    A queue checked that has pending jobs and no live worker serving it is a
    breach too. The xmin horizon is checked with them, or alone with --max-horizon-age.
    """
    ctx = click.get_current_context()
    try:
        target, thresholds, timeout, horizon_limit = _check_setup(
            app_spec, url, max_depth, max_age, queues, max_horizon_age
        )
        result = check_health(
            target, thresholds, queues, connect_timeout=timeout, horizon_max_age=horizon_limit
        )
    except (_CheckError, PgJobsError) as exc:
        # Exit 1 means a breach; anything that stops the check must not look like one.
        click.echo(f"pgjobs check: {exc}", err=True)
        ctx.exit(2)
    if result.ok:
        if result.horizon is not None and not any(
            t.max_depth is not None or t.max_age is not None for t in thresholds.values()
        ):
            click.echo(result.horizon.summary())  # the horizon alone was checked
        else:
            click.echo(result.summary())
        return
    click.echo(f"pgjobs check: {result.summary()}", err=True)
    ctx.exit(1)


def _check_setup(
    app_spec: str | None,
    url: str | None,
    max_depth: int | None,
    max_age: str | None,
    queues: tuple[str, ...],
    max_horizon_age: str | None = None,
) -> tuple[str, dict[str, Threshold], float, float]:
    """The URL, the merged thresholds, the connect timeout and the xmin horizon's limit of a
    `pgjobs check`."""
    age = None
    if max_age is not None:
        age = _age(max_age.strip())
        if age is None:
            raise _CheckError(f"--max-age takes seconds or 90s, 5m, 2h, got {max_age!r}")
    if any(not q.strip() for q in queues):
        raise _CheckError("--queue needs a queue name")
    horizon_limit = None
    if max_horizon_age is not None:
        # The CLI's one duration parser, as for every other duration it takes.
        horizon_limit = _age(max_horizon_age.strip())
        if not horizon_limit:
            raise _CheckError(
                "--max-horizon-age takes a positive duration (300, 90s, 5m, 2h), "
                f"got {max_horizon_age!r}"
            )
    app = load_app(app_spec) if app_spec else None
    flags: dict[str, Threshold] = {}
    if max_depth is not None or age is not None:
        flags = {q: Threshold(max_depth=max_depth, max_age=age) for q in queues or [ANY_QUEUE]}
    thresholds = merge_thresholds(app.thresholds if app else {}, flags)
    limited = any(t.max_depth is not None or t.max_age is not None for t in thresholds.values())
    if not limited and horizon_limit is None:
        raise _CheckError(
            "nothing to check: give --max-depth and/or --max-age, or an APP with thresholds"
        )
    if horizon_limit is None:
        horizon_limit = app.horizon_max_age if app else horizon.max_age_setting()
    # app.url would start an embedded Postgres when none is configured, and a
    # check of a fresh empty database would always pass: ask for a real one.
    target = url or (getattr(app, "_url", None) if app else None)
    if not target:
        raise _CheckError("no database to check: give --url or set $PGJOBS_URL")
    return target, thresholds, app.connect_timeout if app else 10.0, horizon_limit
