"""`pgjobs dead-letters`: list, show, replay and purge jobs that failed for good."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from pgjobs.cli import _age, _app, _echo_json, app_option, main, url_option
from pgjobs.core.errors import InvalidArguments


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO timestamp, or an age such as 30m, 2h, 7d meaning that long ago."""
    if value is None:
        return None
    seconds = _age(value)
    if seconds is not None:
        return datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArguments(
            f"{option} takes an ISO time (2026-11-25T09:00:00+00:00) or an age (30m, 2h, 7d), "
            f"got {value!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _filter_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--task", help="Only this task."),
            click.option("--queue", help="Only this queue."),
            click.option("--since", help="Failed at or after: ISO time, or an age (2h, 7d)."),
            click.option("--before", help="Failed before: ISO time, or an age (2h, 7d)."),
        ]
    ):
        fn = option(fn)
    return fn


@main.group("dead-letters")
def dead_letters() -> None:
    """Jobs that failed for good: list, show, replay, purge."""


@dead_letters.command("list")
@url_option
@app_option
@_filter_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", help="The last job id of the previous page.")
@click.option("--json", "as_json", is_flag=True)
def dead_letters_list(
    url: str | None,
    app_spec: str | None,
    task: str | None,
    queue: str | None,
    since: str | None,
    before: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List dead letters, newest first."""
    letters = _app(app_spec, url).dead_letters(
        task=task,
        queue=queue,
        since=_when(since, "--since"),
        before=_when(before, "--before"),
        limit=limit,
        cursor=cursor,
    )
    if as_json:
        _echo_json([d.model_dump(mode="json") for d in letters])
        return
    click.echo(f"{'job id':36}  {'task':20} {'queue':12} {'att':>3}  {'failed at':19}  error")
    for d in letters:
        error = d.error or {}
        message = f"{error.get('type', '')}: {error.get('message', '')}".replace("\n", " ")
        click.echo(
            f"{d.job_id!s:36}  {d.task[:20]:20} {d.queue[:12]:12} {d.attempts:>3}  "
            f"{d.failed_at:%Y-%m-%d %H:%M:%S}  {message[:80]}"
        )
    if not letters:
        click.echo("(no dead letters)")
    elif letters.next_cursor:
        click.echo(f"more: --cursor {letters.next_cursor}")


@dead_letters.command("show")
@click.argument("job_id")
@url_option
@app_option
@click.option("--json", "as_json", is_flag=True)
def dead_letters_show(job_id: str, url: str | None, app_spec: str | None, as_json: bool) -> None:
    """Show one dead letter: arguments, attempts and the last error with its traceback."""
    d = _app(app_spec, url).get_dead_letter(job_id)
    if as_json:
        _echo_json(d.model_dump(mode="json"))
        return
    error = d.error or {}
    click.echo(f"{'job_id':>9}: {d.job_id}")
    click.echo(f"{'task':>9}: {d.task}")
    click.echo(f"{'queue':>9}: {d.queue}")
    click.echo(f"{'args':>9}: {json.dumps(d.args)}")
    click.echo(f"{'kwargs':>9}: {json.dumps(d.kwargs)}")
    click.echo(f"{'attempts':>9}: {d.attempts}")
    click.echo(f"{'failed_at':>9}: {d.failed_at.isoformat()}")
    click.echo(f"{'error':>9}: {error.get('type')}: {error.get('message')}")
    if error.get("traceback"):
        click.echo(str(error["traceback"]).rstrip())


def _scope(
    job_ids: tuple[str, ...],
    task: str | None,
    queue: str | None,
    since: str | None,
    before: str | None,
    everything: bool,
) -> dict[str, Any]:
    """The filters of a bulk replay or purge, once the choice between ids and filters is clear."""
    filtered = any(v is not None for v in (task, queue, since, before))
    if job_ids and (filtered or everything):
        raise InvalidArguments("give job ids or filters, not both")
    if not job_ids and not filtered and not everything:
        raise InvalidArguments("name job ids, give a filter (--task, --queue, ...) or --all")
    return {
        "task": task,
        "queue": queue,
        "since": _when(since, "--since"),
        "before": _when(before, "--before"),
        "everything": everything,
    }


@dead_letters.command("replay")
@click.argument("job_ids", nargs=-1)
@url_option
@app_option
@_filter_options
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter.")
def dead_letters_replay(
    job_ids: tuple[str, ...],
    url: str | None,
    app_spec: str | None,
    task: str | None,
    queue: str | None,
    since: str | None,
    before: str | None,
    everything: bool,
) -> None:
    """Run dead-lettered jobs again: the JOB_IDS given, or all that match the filters."""
    scope = _scope(job_ids, task, queue, since, before, everything)
    app = _app(app_spec, url)
    if job_ids:
        for job in app.replay_many(job_ids):
            click.echo(f"{job.id} replayed: {job.status.value}")
        return
    click.echo(f"replayed {len(app.replay_dead_letters(**scope))} jobs")


@dead_letters.command("purge")
@click.argument("job_ids", nargs=-1)
@url_option
@app_option
@_filter_options
@click.option("--all", "everything", is_flag=True, help="Purge every dead letter.")
def dead_letters_purge(
    job_ids: tuple[str, ...],
    url: str | None,
    app_spec: str | None,
    task: str | None,
    queue: str | None,
    since: str | None,
    before: str | None,
    everything: bool,
) -> None:
    """Forget dead letters for good (the jobs stay `failed`): JOB_IDS, or all that match."""
    scope = _scope(job_ids, task, queue, since, before, everything)
    n = _app(app_spec, url).purge_dead_letters(list(job_ids) or None, **scope)
    click.echo(f"purged {n} dead letters")
