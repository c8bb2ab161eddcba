"""`pgjobs workflow`: show a chain, group or chord step by step, or cancel it."""

from __future__ import annotations

import json
from typing import Any

import click

from pgjobs.cli import _app, _echo_json, app_option, main, url_option


@main.group()
def workflow() -> None:
    """Look at and cancel workflows (chains, groups, chords)."""


def _shape_lines(shape: dict[str, Any], steps: dict[str, Any], depth: int = 0) -> list[str]:
    pad = "  " * depth
    if "job_id" in shape:
        s = steps[shape["job_id"]]
        error = f"  {s.error.get('type')}: {s.error.get('message', '')}" if s.error else ""
        waiting = f" (waits for {s.waiting_for})" if s.status.value == "blocked" else ""
        return [f"{pad}{s.job_id}  {s.task:24} {s.status.value}{waiting}{error[:90]}"]
    if "chord" in shape:
        body = shape["chord"]
        return [
            f"{pad}chord" + (" (allow_failures)" if body.get("allow_failures") else ""),
            *_shape_lines(body["header"], steps, depth + 1),
            f"{pad}  then",
            *_shape_lines(body["callback"], steps, depth + 2),
        ]
    kind = "chain" if "chain" in shape else "group"
    lines = [f"{pad}{kind}"]
    for part in shape[kind]:
        lines += _shape_lines(part, steps, depth + 1)
    return lines


@workflow.command("show")
@click.argument("workflow_id")
@url_option
@app_option
@click.option("--json", "as_json", is_flag=True)
def workflow_show(workflow_id: str, url: str | None, app_spec: str | None, as_json: bool) -> None:
    """A workflow's status and each step's job."""
    info = _app(app_spec, url).get_workflow(workflow_id)
    if as_json:
        _echo_json(
            {
                "id": info.id,
                "kind": info.kind,
                "name": info.name,
                "status": info.status,
                "created_at": info.created_at,
                "result": info.result() if info.status == "succeeded" else None,
                "canvas": info.canvas,
                "steps": [{"job_id": s.id, **s.model_dump(mode="json")} for s in info.steps],
            }
        )
        return
    name = f" {info.name}" if info.name else ""
    click.echo(f"{info.kind}{name} {info.id}: {info.status}")
    steps = {str(s.job_id): s for s in info.steps}
    for line in _shape_lines(info.canvas, steps, 1):
        click.echo(line)
    if info.status == "succeeded":
        click.echo(f"result: {json.dumps(info.result(), default=str)[:200]}")


@workflow.command("cancel")
@click.argument("workflow_id")
@url_option
@app_option
def workflow_cancel(workflow_id: str, url: str | None, app_spec: str | None) -> None:
    """Cancel every step that has not ended; running ones are asked to stop."""
    cancelled, asked = _app(app_spec, url).cancel_workflow(workflow_id)
    click.echo(f"cancelled {cancelled} waiting steps; asked {asked} running steps to stop")
