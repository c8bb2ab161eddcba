"""`pgjobs demo`: example tasks, a worker in this process, live progress, a summary."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from itertools import chain
from typing import Any, TextIO

from pgjobs.client.admin import task_summary_op
from pgjobs.client.app import App
from pgjobs.client.context import current_job
from pgjobs.core.jobs import TERMINAL, Job
from pgjobs.core.retry import Backoff
from pgjobs.worker import Worker

BAR = 28


def build_app() -> App:
    """The demo's App and its three example tasks: on $PGJOBS_URL when set, else the embedded
    Postgres, which the demo asks for by name."""
    app = App(url=None if os.environ.get("PGJOBS_URL") else "embedded")

    @app.task(queue="reports")
    def export_report(report: str, rows: int) -> dict[str, Any]:
        """A slow export that reports its progress as it goes."""
        job = current_job()
        step = max(1, rows // 20)
        for done in range(0, rows + 1, step):
            job.set_progress(done, rows, f"{report}: {done}/{rows} rows")
            time.sleep(0.12)
        return {"report": report, "rows": rows, "file": f"/exports/{report}.csv"}

    @app.task(queue="emails")
    async def send_email(to: str, subject: str) -> str:
        """A quick email sender; the idempotency key would go to the mail API."""
        import asyncio

        await asyncio.sleep(random.uniform(0.005, 0.03))
        return f"sent to {to} ({current_job().idempotency_key})"

    @app.task(queue="webhooks", retries=3, backoff=Backoff(base=0.3, cap=2.0))
    def call_webhook(url: str, event: str) -> int:
        """A webhook to a flaky service: some calls fail, and retries carry them through."""
        time.sleep(random.uniform(0.01, 0.05))
        if random.random() < 0.45:
            raise ConnectionError(f"{url} timed out")
        return 200

    return app


def _bar(fraction: float) -> str:
    filled = round(BAR * max(0.0, min(1.0, fraction)))
    return "█" * filled + "░" * (BAR - filled)


def _frame(reports: list[Job], groups: dict[str, list[Job]]) -> list[str]:
    lines = ["", "  reports (progress set by the task)"]
    for job in reports:
        p = job.progress or {}
        frac = 1.0 if job.status.value == "succeeded" else float(p.get("percent", 0.0)) / 100
        lines.append(f"    {job.args[0]:<16} {_bar(frac)} {100 * frac:5.1f}%  {job.status.value}")
    lines.append("  queues")
    for name, jobs in groups.items():
        done = sum(1 for j in jobs if j.status in TERMINAL)
        retrying = sum(1 for j in jobs if j.status.value == "retrying")
        extra = f"  ({retrying} retrying)" if retrying else ""
        lines.append(f"    {name:<16} {_bar(done / len(jobs))} {done:>4}/{len(jobs):<4}{extra}")
    return lines


def run_demo(emails: int = 60, timeout: float = 50.0) -> int:
    """Run the demo; returns the exit status."""
    app = build_app()
    out = sys.stdout
    out.write("pgjobs demo\n")
    out.write("  starting Postgres and applying migrations...\n")
    out.flush()
    started = time.monotonic()
    app.migrate()
    where = "embedded Postgres" if app.embedded else "the Postgres at $PGJOBS_URL"
    out.write(f"  using {where}\n")

    worker = Worker(
        app, queues=["reports", "emails", "webhooks"], concurrency=16, poll_interval=1.0
    )
    thread = threading.Thread(
        target=worker.run, kwargs={"install_signal_handlers": False}, daemon=True
    )
    thread.start()
    worker.wait_started(30)

    reports = [
        app.tasks["export_report"].enqueue(name, rows)
        for name, rows in (("sales-2026-q3", 2000), ("customers", 1200), ("inventory", 800))
    ]
    mails = app.tasks["send_email"].enqueue_many(
        [(f"user{i}@example.com", "Welcome!") for i in range(emails)]
    )
    hooks = app.tasks["call_webhook"].enqueue_many(
        [("https://hooks.example.com/orders", f"order.paid.{i}") for i in range(20)]
    )
    ids: list[uuid.UUID] = [j.id for j in reports + mails + hooks]
    out.write(f"  enqueued {len(ids)} jobs: 3 report exports, {emails} emails, 20 webhooks\n")
    _watch(app, out, reports, {"emails": list(mails), "webhooks": list(hooks)}, timeout)

    worker.stop()
    thread.join(30)
    unfinished = _summary(app, out, ids, started)
    app.close()
    if unfinished:
        out.write(f"  {unfinished} jobs did not finish in {timeout:.0f} s\n")
        return 1
    return 0


def _watch(
    app: App, out: TextIO, reports: list[Job], groups: dict[str, list[Job]], timeout: float
) -> None:
    """Draw the jobs' progress until they have all ended or `timeout` has passed."""
    tty = out.isatty()
    drawn = 0
    last_plain = 0.0
    deadline = time.monotonic() + timeout
    while True:
        fresh = {j.id: j for j in app.jobs(limit=1000).jobs}
        now_reports = [fresh.get(j.id, j) for j in reports]
        now = {name: [fresh.get(j.id, j) for j in jobs] for name, jobs in groups.items()}
        lines = _frame(now_reports, now)
        finished = all(j.status in TERMINAL for j in chain(now_reports, *now.values()))
        if tty:
            if drawn:
                out.write(f"\x1b[{drawn}A")
            out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            drawn = len(lines)
        elif finished or time.monotonic() - last_plain > 2:
            out.write("\n".join(lines) + "\n")
            last_plain = time.monotonic()
        out.flush()
        if finished or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _summary(app: App, out: TextIO, ids: list[uuid.UUID], started: float) -> int:
    """Write the per-task summary table; returns how many jobs have not finished."""
    rows = app.database.run(task_summary_op(ids))
    out.write("\n  summary\n")
    header = f"{'task':<16}{'jobs':>6}{'succeeded':>11}{'failed':>8}{'attempts':>10}"
    out.write(f"    {header}{'avg run':>10}\n")
    unfinished = 0
    for r in rows:
        avg = f"{1000 * float(r['avg_run_seconds'] or 0):.0f} ms"
        out.write(
            f"    {r['task']:<16}{r['jobs']:>6}{r['succeeded']:>11}{r['failed']:>8}"
            f"{r['attempts']:>10}{avg:>10}\n"
        )
        unfinished += r["unfinished"]
    failed = sum(r["failed"] for r in rows)
    out.write(f"\n  done in {time.monotonic() - started:.1f} s.")
    if failed:
        out.write(
            f" {failed} webhook call(s) failed on every attempt and wait in the dead letters:\n"
            "  see them with `pgjobs dead-letters list`, run them again with"
            " `pgjobs dead-letters replay --task call_webhook`."
        )
    out.write("\n")
    return int(unfinished)
