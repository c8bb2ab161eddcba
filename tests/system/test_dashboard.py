"""The dashboard in a real browser: headless Chromium, a real `pgjobs web`, real workers.

Nothing is mocked: the page talks to a `pgjobs web` process over HTTP, that
process to this run's database, and jobs are run by worker processes (or an
in-process worker where only the outcome matters).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

import pgjobs
from tests import sample_app
from tests.support.common import ROOT, wait_for
from tests.support.web import AUTH, CHROMIUM, TOKEN, serving

README_SCREENSHOT = ROOT / "docs" / "dashboard.png"
WORKFLOW_SCREENSHOT = ROOT / "docs" / "workflow.png"

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def web(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`pgjobs web` on tests.sample_app; stopped at the end."""
    log = tmp_path_factory.mktemp("web") / "web.log"
    with serving("tests.sample_app:app", db_url, log) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, Debian's build; closed at the end whatever happened."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard tests drive Debian's Chromium. "
            "Run `make test`, which installs it.",
            pytrace=False,
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (no token in its session storage); fails the test on a JavaScript error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def enter_token(page: Page) -> None:
    page.locator('[data-action="token"]').click()
    expect(page.locator('[data-testid="token-form"]')).to_be_visible()
    page.locator("#token-input").fill(TOKEN)
    page.locator('[data-action="save-token"]').click()
    expect(page.locator('[data-testid="token-form"]')).to_be_hidden()


def run_burst_worker(spawn_worker: Callable[..., Any]) -> None:
    """Run every ready job in a `pgjobs worker --burst` process, which exits once idle."""
    worker = spawn_worker("--burst", "--concurrency", "4", wait=False)
    assert worker.wait(timeout=60) == 0, worker.log()


def job_row(page: Page, job_id: Any) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def status_and_dead_letter(db: psycopg.Connection[Any], job_id: Any) -> tuple[str, bool]:
    row = db.execute(
        "SELECT status, EXISTS (SELECT 1 FROM pgjobs.dead_letters d WHERE d.job_id = j.id)"
        " FROM pgjobs.jobs j WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_the_jobs_view_follows_a_job_live_and_cancels_with_the_token(
    app: Any, db: psycopg.Connection[Any], page: Page, web: str, spawn_worker: Callable[..., Any]
) -> None:
    page.goto(f"{web}/#/jobs")
    enter_token(page)
    assert page.evaluate("sessionStorage.getItem('pgjobs.token')") == TOKEN
    assert page.evaluate("document.cookie") == ""  # the token never rides in a cookie
    expect(page.locator('[data-action="token"]')).to_have_attribute("data-set", "yes")

    answer = httpx.post(f"{web}/api/jobs", json={"task": "sleep", "args": [2.0]}, headers=AUTH)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    row = job_row(page, job_id)
    expect(row).to_have_attribute("data-status", "pending")
    expect(row.locator('[data-action="cancel"]')).to_be_visible()

    # From here on the page must not reload: a variable set now, and a mark on
    # the row element itself, must both survive until the job has succeeded.
    page.evaluate("window.__sameDocument = 'still here'")
    row.evaluate("tr => { tr.__mark = 'same row' }")
    page.evaluate(
        """id => {
            window.__seen = [];
            const note = () => {
                const tr = document.querySelector(`tr[data-job-id="${id}"]`);
                const s = tr && tr.dataset.status;
                if (s && window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s);
            };
            note();
            new MutationObserver(note).observe(document.getElementById('view'), {
                subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'],
            });
        }""",
        job_id,
    )

    # A scheduled job, cancelled from its row with the token the page holds.
    later = sample_app.add.options(delay=600).enqueue(1, 2)
    later_row = job_row(page, later.id)
    expect(later_row).to_have_attribute("data-status", "scheduled")
    later_row.locator('[data-action="cancel"]').click()
    expect(later_row).to_have_attribute("data-status", "cancelled")
    expect(later_row.locator('[data-action="cancel"]')).to_be_hidden()
    assert status_and_dead_letter(db, later.id) == ("cancelled", False)

    spawn_worker("--concurrency", "2")
    expect(row).to_have_attribute("data-status", "succeeded", timeout=20_000)
    # A refresh every 1.5 s nearly always lands in the 2 s the job runs; a slow
    # machine may step from pending straight to succeeded, never backwards.
    assert page.evaluate("window.__seen") in (
        ["pending", "running", "succeeded"],
        ["pending", "succeeded"],
    )
    assert page.evaluate("window.__sameDocument") == "still here"
    assert row.evaluate("tr => tr.__mark") == "same row"
    expect(row.locator('[data-action="cancel"]')).to_be_hidden()


def test_replaying_a_dead_letter_asks_for_the_token_then_replays_it(
    app: Any, db: psycopg.Connection[Any], page: Page, web: str, spawn_worker: Callable[..., Any]
) -> None:
    job = sample_app.fail.enqueue("card declined")
    run_burst_worker(spawn_worker)
    assert status_and_dead_letter(db, job.id) == ("failed", True)

    page.goto(f"{web}/#/dead-letters")
    row = job_row(page, job.id)
    expect(row).to_contain_text("ValueError")
    expect(row).to_contain_text("card declined")

    # No token in this tab: the API answers 401 and the page asks for one.
    row.locator('[data-action="replay"]').click()
    form = page.locator('[data-testid="token-form"]')
    expect(form).to_be_visible()
    expect(form).to_contain_text("bearer token")
    assert status_and_dead_letter(db, job.id) == ("failed", True)

    # Given the token (Enter saves it), the page runs the replay it was asked for.
    page.locator("#token-input").fill(TOKEN)
    page.locator("#token-input").press("Enter")
    expect(row).to_have_count(0)
    expect(page.locator('[data-testid="toast"]').filter(has_text="Replayed 1 job")).to_be_visible()
    wait_for(lambda: status_and_dead_letter(db, job.id)[1] is False, timeout=10)
    status, dead = status_and_dead_letter(db, job.id)
    assert status in ("pending", "running") and dead is False


def test_the_job_page_shows_arguments_traceback_attempts_and_progress(
    app: Any, db: psycopg.Connection[Any], page: Page, web: str, spawn_worker: Callable[..., Any]
) -> None:
    hostile = '<img src=x onerror="window.__xss = 1">'  # arguments are user input
    failed = sample_app.fail.enqueue(hostile)
    flaky = sample_app.flaky.enqueue(1)
    progress = sample_app.progress.enqueue(3, 0.0)
    # Not --burst: flaky's second attempt is due a moment after its first fails,
    # and a burst worker that finds nothing ready at that instant exits.
    spawn_worker("--concurrency", "4")
    ids = [failed.id, flaky.id, progress.id]
    wait_for(
        lambda: (
            db.execute(
                "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY(%s) AND finished_at IS NOT NULL",
                (ids,),
            ).fetchone()
            == (3,)
        ),
        timeout=20,
    )
    row = db.execute("SELECT worker_id FROM pgjobs.attempts WHERE job_id = %s", (failed.id,))
    (worker_id,) = row.fetchone() or (None,)
    assert worker_id

    page.goto(f"{web}/#/jobs/{failed.id}")
    view = page.locator('[data-view="job"]')
    expect(view).to_have_attribute("data-status", "failed")
    expect(page.locator('[data-field="task"]')).to_have_text("fail")
    expect(page.locator('[data-field="dead-letter"]')).to_be_visible()
    expect(page.locator('[data-field="args"]')).to_contain_text(json.dumps(hostile))
    expect(page.locator('[data-field="error-type"]')).to_have_text("ValueError")
    traceback = page.locator('[data-field="traceback"]')
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text(f"ValueError: {hostile}")
    attempts = page.locator('[data-testid="attempts"] [data-attempt]')
    expect(attempts).to_have_count(1)
    expect(attempts.first).to_have_attribute("data-outcome", "failed")
    expect(attempts.first).to_contain_text(worker_id)
    expect(page.locator('[data-view="job"] [data-action="replay"]')).to_be_visible()
    expect(page.locator('[data-view="job"] [data-action="cancel"]')).to_be_hidden()
    # The hostile argument is shown as text, never run as markup.
    assert page.evaluate("window.__xss") is None
    assert page.locator('img[src="x"]').count() == 0

    page.goto(f"{web}/#/jobs/{flaky.id}")
    expect(view).to_have_attribute("data-status", "succeeded")
    expect(attempts).to_have_count(2)
    outcomes = [a.get_attribute("data-outcome") for a in attempts.all()]
    assert outcomes == ["succeeded", "failed"]  # newest first
    expect(attempts.nth(1)).to_contain_text("ConnectionError")
    expect(page.locator('[data-field="result"]')).to_have_text("2")

    page.goto(f"{web}/#/jobs/{progress.id}")
    expect(view).to_have_attribute("data-status", "succeeded")
    bar = page.locator('[data-testid="progress"]')
    expect(bar).to_be_visible()
    expect(bar).to_contain_text("100%")
    expect(bar).to_contain_text("3 of 3")
    expect(bar).to_contain_text("step 3")


def test_screenshots_of_the_queues_view_wide_and_narrow(
    app: Any,
    db: psycopg.Connection[Any],
    page: Page,
    web: str,
    spawn_worker: Callable[..., Any],
    tmp_path: Path,
) -> None:
    sample_app.add.enqueue_many([(i, i) for i in range(40)])
    sample_app.arecord.enqueue_many([(i,) for i in range(12)])
    for _ in range(4):
        sample_app.elsewhere.enqueue()
    for n in range(3):
        sample_app.fail.enqueue(f"bad input #{n}")
    sample_app.flaky.enqueue(1)
    sample_app.add.options(delay=600).enqueue(1, 1)
    sample_app.sleep.enqueue_many([(0.6,)] * 14)
    sample_app.progress.enqueue(60, 0.5)  # still running when the screenshot is taken
    spawn_worker("--queues", "default,fast,other", "--concurrency", "3", "--grace-period", "0.5")

    page.goto(f"{web}/#/queues")
    expect(page.locator('[data-testid="queues"] tr[data-queue="default"]')).to_be_visible()
    expect(page.locator('[data-testid="workers-summary"] tr[data-worker-id]')).to_have_count(1)
    # Let the sleeps drain for a few refreshes so the depth chart has a history.
    expect(page.locator('[data-testid="depth"] polyline').first).to_be_attached()
    expect(page.locator('[data-testid="throughput"] rect.bar-s').first).to_be_attached()
    page.wait_for_timeout(4500)

    wide = tmp_path / "dashboard.png"
    page.screenshot(path=str(wide), full_page=True)
    README_SCREENSHOT.parent.mkdir(exist_ok=True)
    README_SCREENSHOT.write_bytes(wide.read_bytes())
    for shot in (wide, README_SCREENSHOT):
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", shot
        assert len(data) > 40_000, f"{shot} is only {len(data)} bytes"

    # A phone-width window: nothing sticks out sideways (wide tables scroll inside).
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    narrow = tmp_path / "dashboard-narrow.png"
    page.screenshot(path=str(narrow), full_page=True)
    assert narrow.stat().st_size > 20_000


def test_a_queue_with_pending_jobs_and_no_live_worker_shows_no_worker(
    app: Any, db: psycopg.Connection[Any], page: Page, web: str
) -> None:
    sample_app.add.enqueue(1, 1)
    sample_app.elsewhere.enqueue()  # queue "other": no worker serves it
    db.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency)"
        " VALUES ('serves-default', 'test', 1, '{default}', 1)"
    )
    page.goto(f"{web}/#/queues")
    chip = page.locator('[data-testid="queues"] tr[data-queue="other"] [data-health]')
    expect(chip).to_have_attribute("data-health", "no-worker")
    expect(chip).to_have_text("no worker")
    expect(chip).to_have_attribute("title", re.compile("no live worker serves this queue"))
    served = page.locator('[data-testid="queues"] tr[data-queue="default"] [data-health]')
    expect(served).to_have_attribute("data-health", "healthy")
    expect(page.locator("#queues-sub")).to_contain_text("1 without a worker")
    expect(page.locator("#badge-queues")).to_have_text("1")
    db.execute(
        "INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency)"
        " VALUES ('serves-other', 'test', 2, '{other}', 1)"
    )
    expect(chip).to_have_attribute("data-health", "healthy")
    expect(chip).to_have_text("healthy")


# -- workflows, tasks and events ------------------------------------------------------


def step_card(page: Page, job_id: Any) -> Any:
    return page.locator(f'[data-testid="diagram"] .wf-step[data-job-id="{job_id}"]')


def steps_of(db: psycopg.Connection[Any], workflow_id: Any) -> list[tuple[Any, str]]:
    """The workflow's jobs in the order they were compiled (ids grow): (id, task)."""
    rows = db.execute(
        "SELECT id, task FROM pgjobs.jobs WHERE workflow_id = %s ORDER BY id",
        (workflow_id,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def card_ids(page: Page) -> list[str]:
    return page.locator('[data-testid="diagram"] .wf-step').evaluate_all(
        "cards => cards.map(c => c.dataset.jobId)"
    )


def test_a_workflow_page_draws_the_steps_and_follows_them_live(
    app: Any, db: psycopg.Connection[Any], page: Page, web: str, spawn_worker: Callable[..., Any]
) -> None:
    add = sample_app.add
    wf = pgjobs.chain(add.s(1, 2), add.s(10), pgjobs.group(add.s(1), add.s(2))).enqueue(
        name="totals"
    )

    # The job list: the blocked filter, and a link from each step to its workflow.
    page.goto(f"{web}/#/jobs?status=blocked")
    expect(page.locator('[data-filter="status"]')).to_have_value("blocked")
    rows = page.locator("tr[data-job-id]")
    expect(rows).to_have_count(3)
    for row in rows.all():
        expect(row).to_have_attribute("data-status", "blocked")
        expect(row).to_contain_text("waits for 1")
        expect(row.locator("[data-workflow-link]")).to_have_attribute(
            "href", f"#/workflows/{wf.id}"
        )
    # A blocked job's page says how many jobs it still waits for.
    rows.first.locator("td").nth(1).click()
    expect(page.locator('[data-view="job"]')).to_have_attribute("data-status", "blocked")
    expect(page.locator('[data-field="waiting-for"]')).to_have_text("1 earlier job of its workflow")
    expect(page.locator('[data-testid="no-attempts"]')).to_contain_text("waits for 1 earlier job")
    page.go_back()
    rows.first.locator("[data-workflow-link]").click()

    view = page.locator('[data-view="workflow"]')
    expect(view).to_have_attribute("data-workflow-id", str(wf.id))
    expect(view).to_have_attribute("data-status", "running")
    expect(view.locator('[data-field="name"]')).to_have_text("totals")
    expect(view.locator('[data-field="kind"]')).to_have_text("chain")
    cancel = view.locator('[data-action="cancel-workflow"]')
    expect(cancel).to_be_visible()

    # The diagram: four cards, drawn in the canvas order (a chain, then a group's lanes).
    ids = [str(i) for i, _ in steps_of(db, wf.id)]
    expect(page.locator(".wf-step")).to_have_count(4)
    assert card_ids(page) == ids
    assert page.locator('[data-testid="diagram"] [data-kind="group"] .wf-lane').count() == 2
    first, second, *members = (step_card(page, i) for i in ids)
    expect(first).to_have_attribute("data-status", "pending")
    for card in (second, *members):
        expect(card).to_have_attribute("data-status", "blocked")
        expect(card.locator('[data-field="waiting-for"]')).to_have_text("waits for 1")
    expect(page.locator('[data-testid="step-counts"]')).to_contain_text("3 blocked")

    # Live from here: the same document, the same card elements, updated in place.
    page.evaluate("window.__sameDocument = 'still here'")
    members[-1].evaluate("a => { a.__mark = 'same card' }")
    spawn_worker("--concurrency", "2")
    for card in (first, second, *members):
        expect(card).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(view).to_have_attribute("data-status", "succeeded")
    expect(view.locator('[data-field="status"]')).to_have_text("succeeded")
    expect(view.locator('[data-field="result"]')).to_have_text("[14,15]")
    expect(view.locator('[data-field="steps-done"]')).to_have_text("4 of 4")
    expect(second.locator('[data-field="attempts"]')).to_have_text("attempt 1 of 1")
    expect(second.locator('[data-field="waiting-for"]')).to_have_text("")
    expect(cancel).to_be_hidden()
    assert page.evaluate("window.__sameDocument") == "still here"
    assert members[-1].evaluate("a => a.__mark") == "same card"

    # A card opens its job; the job page links back to the workflow.
    second.click()
    job = page.locator('[data-view="job"]')
    expect(job).to_have_attribute("data-job-id", ids[1])
    expect(job).to_have_attribute("data-status", "succeeded")
    expect(page.locator('[data-field="result"]')).to_have_text("13")
    back = page.locator('[data-field="workflow"]')
    expect(back).to_contain_text("Part of workflow")
    back.click()
    expect(view).to_have_attribute("data-status", "succeeded")

    # The go-to box takes a workflow id too.
    page.goto(f"{web}/#/queues")
    page.locator("#goto").fill(str(wf.id))
    page.locator("#goto").press("Enter")
    expect(view).to_have_attribute("data-workflow-id", str(wf.id))
    assert page.evaluate("location.hash") == f"#/workflows/{wf.id}"


def test_a_failed_step_cancels_the_rest_and_the_cancel_button_stops_a_workflow(
    app: Any,
    db: psycopg.Connection[Any],
    page: Page,
    web: str,
    spawn_worker: Callable[..., Any],
    tmp_path: Path,
) -> None:
    s = sample_app
    # charge fails for good at once (PaymentDeclined is in its fail_on): the step after it
    # never runs.
    broken = pgjobs.chain(s.add.s(1, 1), s.charge.s(), s.add.s(3)).enqueue()
    # For the picture: a chord of three members, one that succeeds, one that sleeps 5 s
    # (the first step's result) with a step waiting behind it, and one that fails.
    showcase = pgjobs.chain(
        s.add.s(2, 3),
        pgjobs.chord([s.inc.s(), pgjobs.chain(s.sleep.s(), s.inc.s()), s.charge.s()], s.total.s()),
        s.add.s(100),
    ).enqueue(name="nightly report")
    spawn_worker("--concurrency", "4", "--grace-period", "0.5")

    view = page.locator('[data-view="workflow"]')
    page.goto(f"{web}/#/workflows/{showcase.id}")
    steps = steps_of(db, showcase.id)
    assert [task for _, task in steps] == [
        *("add", "inc", "sleep", "inc", "charge", "total", "add"),
    ]
    first, _, sleeper, behind, charge, callback, last = (step_card(page, i) for i, _ in steps)
    expect(sleeper).to_have_attribute("data-status", "running", timeout=15_000)
    expect(charge).to_have_attribute("data-status", "failed")
    expect(charge.locator('[data-field="error-type"]')).to_have_text("PaymentDeclined")
    expect(charge.locator('[data-field="attempts"]')).to_have_text("attempt 1 of 4")
    expect(charge.locator('[data-field="error-message"]')).not_to_be_empty()
    for card in (callback, last):
        expect(card).to_have_attribute("data-status", "cancelled")
        expect(card.locator('[data-field="error-type"]')).to_have_text("UpstreamFailed")
    expect(behind).to_have_attribute("data-status", "blocked")
    expect(view).to_have_attribute("data-status", "running")
    expect(view.locator('[data-kind="chord"]')).to_be_visible()
    page.wait_for_timeout(300)  # the running card's clock ticks once more

    # The page down to the diagram's bottom edge, not the empty window below it.
    bottom = page.locator('[data-testid="workflow-steps"]').evaluate(
        "el => Math.ceil(el.getBoundingClientRect().bottom + scrollY) + 18"
    )
    shot = page.screenshot(clip={"x": 0, "y": 0, "width": 1400, "height": bottom}, full_page=True)
    WORKFLOW_SCREENSHOT.parent.mkdir(exist_ok=True)
    WORKFLOW_SCREENSHOT.write_bytes(shot)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(shot) > 30_000, f"{WORKFLOW_SCREENSHOT} is only {len(shot)} bytes"
    # A phone-width window: the chain turns top to bottom and nothing sticks out sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    boxes = [card.bounding_box() for card in (first, sleeper, callback)]
    assert all(b is not None for b in boxes)
    assert boxes[0]["y"] < boxes[1]["y"] < boxes[2]["y"]  # type: ignore[index]
    narrow = tmp_path / "workflow-narrow.png"
    page.screenshot(path=str(narrow), full_page=True)
    assert narrow.stat().st_size > 20_000
    page.set_viewport_size({"width": 1400, "height": 900})

    # The plain chain: failed at its middle step, the last one cancelled behind it.
    page.goto(f"{web}/#/workflows/{broken.id}")
    ok, failed, after = (step_card(page, i) for i, _ in steps_of(db, broken.id))
    expect(view).to_have_attribute("data-status", "failed", timeout=15_000)
    expect(ok).to_have_attribute("data-status", "succeeded")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed).to_contain_text("PaymentDeclined")
    expect(after).to_have_attribute("data-status", "cancelled")
    expect(after.locator('[data-field="error-type"]')).to_have_text("UpstreamFailed")
    expect(after.locator('[data-field="attempts"]')).to_have_text("never ran")
    expect(failed.locator('[data-field="attempts"]')).to_have_text("attempt 1 of 4")
    expect(view.locator('[data-field="failed-step"]')).to_contain_text("charge PaymentDeclined")
    expect(view.locator('[data-testid="result"]')).to_be_hidden()
    expect(view.locator('[data-action="cancel-workflow"]')).to_be_hidden()

    # Cancel: this tab has no token, so the API answers 401 and the page asks for one,
    # then cancels. The waiting step ends at once; the running one is asked to stop.
    # A `def` task is not interrupted: asked to stop, it runs on until its sleep ends.
    stopped = pgjobs.chain(s.sleep.s(5), s.add.s(1)).enqueue()
    page.goto(f"{web}/#/workflows/{stopped.id}")
    (running_id, _), (waiting_id, _) = steps_of(db, stopped.id)
    running, waiting = step_card(page, running_id), step_card(page, waiting_id)
    expect(running).to_have_attribute("data-status", "running", timeout=15_000)
    expect(waiting).to_have_attribute("data-status", "blocked")
    # A second viewer, in a tab of its own, sees the request to stop too.
    other = page.context.new_page()
    other_errors: list[str] = []
    other.on("pageerror", lambda exc: other_errors.append(str(exc)))
    other.goto(f"{web}/#/workflows/{stopped.id}")
    other_running = step_card(other, running_id)
    expect(other_running).to_have_attribute("data-status", "running")
    expect(other.locator('[data-field="cancel-requested"]:visible')).to_have_count(0)
    view.locator('[data-action="cancel-workflow"]').click()
    expect(page.locator('[data-testid="confirm"]')).to_be_visible()
    page.locator('[data-action="confirm"]').click()
    expect(page.locator('[data-testid="token-form"]')).to_be_visible()
    page.locator("#token-input").fill(TOKEN)
    page.locator("#token-input").press("Enter")
    toast = page.locator('[data-testid="toast"]').filter(has_text="cancelled 1 waiting step")
    expect(toast).to_contain_text("asked 1 running step to stop")
    marker = '[data-field="cancel-requested"]'
    expect(other_running).to_have_attribute("data-cancel-requested", "yes")
    expect(other_running.locator(marker)).to_have_text("cancel requested")
    expect(other.locator(f".pagehead {marker}")).to_be_visible()
    expect(step_card(other, waiting_id)).to_have_attribute("data-status", "cancelled")
    expect(view).to_have_attribute("data-status", "cancelled", timeout=15_000)
    expect(waiting).to_have_attribute("data-status", "cancelled")
    expect(waiting).to_contain_text("WorkflowCancelled")
    expect(running).to_have_attribute("data-status", "cancelled")
    expect(view.locator('[data-action="cancel-workflow"]')).to_be_hidden()
    row = db.execute("SELECT status FROM pgjobs.jobs WHERE id = %s", (running_id,)).fetchone()
    assert row == ("cancelled",)
    expect(other_running).to_have_attribute("data-status", "cancelled")
    expect(other_running).not_to_have_attribute("data-cancel-requested", "yes")
    other.close()
    assert not other_errors, f"JavaScript errors on the second tab: {other_errors}"


def workflow_row(page: Page, workflow_id: Any) -> Any:
    return page.locator(f'[data-testid="workflows"] tr[data-workflow-id="{workflow_id}"]')


def test_the_workflows_tab_lists_workflows_newest_first_and_follows_them_live(
    app: Any,
    db: psycopg.Connection[Any],
    page: Page,
    web: str,
    spawn_worker: Callable[..., Any],
    tmp_path: Path,
) -> None:
    s = sample_app
    # Each chain step gets the result of the one before: sleeps of 1 s, 1 s, then 1.0 + 1.
    older = pgjobs.chain(s.sleep.s(1.0), s.sleep.s(), s.add.s(1)).enqueue(name="totals")
    newer = pgjobs.group(s.add.s(1, 1), s.fail.s("no such account"), s.sleep.s(0.3)).enqueue()

    # The tab's badge counts running workflows from any view.
    page.goto(f"{web}/#/queues")
    tab = page.locator('[data-nav="workflows"]')
    badge = tab.locator(".badge")
    expect(badge).to_have_text("2")
    tab.click()
    expect(tab).to_have_attribute("aria-current", "page")
    rows = page.locator('[data-testid="workflows"] tr[data-workflow-id]')
    expect(rows).to_have_count(2)
    order = rows.evaluate_all("trs => trs.map(tr => tr.dataset.workflowId)")
    assert order == [str(newer.id), str(older.id)]  # newest first
    group, chain = workflow_row(page, newer.id), workflow_row(page, older.id)
    expect(chain.locator("b")).to_have_text("totals")
    expect(chain.locator('[data-field="kind"]')).to_have_text("chain")
    expect(group.locator(".unnamed")).to_have_text("group")  # no name: its kind instead
    expect(group.locator('[data-field="kind"]')).to_have_text("group")
    for row in (group, chain):
        expect(row).to_have_attribute("data-status", "running")
        expect(row.locator('[data-field="status"]')).to_have_text("running")
        expect(row.locator('[data-field="steps"]')).to_have_text("0 / 3")
        expect(row.locator('[data-field="duration"]')).to_contain_text("…")

    # Live from here: the same document and row elements; the chain's ended count only grows.
    page.evaluate("window.__sameDocument = 'still here'")
    for row in (group, chain):
        row.evaluate("tr => { tr.__mark = 'same row' }")
    page.evaluate(
        """id => {
            window.__ended = [];
            const note = () => {
                const tr = document.querySelector(`tr[data-workflow-id="${id}"]`);
                const n = tr && Number(tr.dataset.ended);
                if (tr && window.__ended[window.__ended.length - 1] !== n) window.__ended.push(n);
            };
            note();
            new MutationObserver(note).observe(document.getElementById('view'), {
                subtree: true, attributes: true, attributeFilter: ['data-ended'],
            });
        }""",
        str(older.id),
    )
    spawn_worker("--concurrency", "2")
    expect(chain).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(chain.locator('[data-field="steps"]')).to_have_text("3 / 3")
    expect(chain.locator('[data-field="failed"]')).to_have_text("0")
    expect(group).to_have_attribute("data-status", "failed")
    expect(group.locator('[data-field="steps"]')).to_have_text("3 / 3")
    expect(group.locator('[data-field="failed"]')).to_have_text("1")
    expect(badge).to_be_hidden()
    # An ended workflow's duration runs from its creation to when its last step ended.
    for row in (group, chain):
        expect(row.locator('[data-field="duration"]')).to_have_text(re.compile(r"^[\d.]+ (ms|s)$"))
    seen = page.evaluate("window.__ended")
    assert seen[0] == 0 and seen[-1] == 3 and seen == sorted(seen), seen
    assert page.evaluate("window.__sameDocument") == "still here"
    for row in (group, chain):
        assert row.evaluate("tr => tr.__mark") == "same row"

    page.screenshot(path=str(tmp_path / "workflows.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.screenshot(path=str(tmp_path / "workflows-narrow.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})

    # A row opens its workflow; the tab stays the current one.
    chain.locator('[data-field="steps"]').click()
    view = page.locator('[data-view="workflow"]')
    expect(view).to_have_attribute("data-workflow-id", str(older.id))
    expect(view).to_have_attribute("data-status", "succeeded")
    expect(view.locator('[data-field="name"]')).to_have_text("totals")
    expect(tab).to_have_attribute("aria-current", "page")
    assert page.evaluate("location.hash") == f"#/workflows/{older.id}"


def test_the_tasks_view_lists_tasks_events_and_hooks(
    app: Any,
    db: psycopg.Connection[Any],
    page: Page,
    web: str,
    db_url: str,
    tmp_path: Path,
) -> None:
    page.goto(f"{web}/#/tasks")
    tasks = page.locator('[data-testid="tasks"]')
    expect(tasks.locator("tr[data-task]")).to_have_count(len(sample_app.app.tasks))
    expect(tasks.locator('tr[data-task="rated"]')).to_contain_text("5/s")
    expect(tasks.locator('tr[data-task="fragile_api"]')).to_contain_text("3 at a time")
    expect(tasks.locator('tr[data-task="spin"]')).to_contain_text("hard 1 s")
    expect(tasks.locator('tr[data-task="arecord"]')).to_contain_text("async def")
    expect(tasks.locator('tr[data-task="flaky"]')).to_contain_text("Fails its first")
    expect(page.locator('[data-testid="events"]')).to_contain_text("No subscribers")
    expect(page.locator('[data-testid="hooks"]')).to_contain_text("No hooks")
    tasks.locator('tr[data-task="add"] td:first-child a').click()
    expect(page.locator('[data-view="jobs"]')).to_be_visible()
    expect(page.locator('[data-filter="task"]')).to_have_value("add")
    assert page.evaluate("location.hash") == "#/jobs?task=add"

    # An app with subscribers and hooks, served by a second `pgjobs web`.
    with serving("tests.events_app:app", db_url, tmp_path / "events-web.log") as other:
        page.goto(f"{other}/#/tasks")
        events = page.locator('[data-testid="events"] tr[data-event="user.signed_up"]')
        for name in ("send_welcome", "sync_crm", "count_signup"):
            task = f"user.signed_up:{name}"  # a subscriber is a task named after its event
            link = events.locator(f'a[data-task="{task}"]')
            expect(link).to_have_attribute("href", "#/jobs?task=" + quote(task, safe=""))
        hooks = page.locator('[data-testid="hooks"]')
        expect(hooks.locator('tr[data-event="job.failed"]')).to_contain_text("on_failure")
        expect(hooks.locator('tr[data-event="job.*"]')).to_contain_text("broken_hook")
        expect(hooks.locator("a")).to_have_count(0)  # hooks are functions, not tasks
        send = page.locator('[data-testid="tasks"] tr[data-task="user.signed_up:send_welcome"]')
        expect(send).to_contain_text("user.signed_up")


def test_filters_follow_the_url_both_ways(app: Any, page: Page, web: str) -> None:
    sample_app.add.enqueue(1, 1)
    sample_app.elsewhere.enqueue()  # queue "other"
    page.goto(f"{web}/#/jobs?queue=other&task=elsewhere")
    queue = page.locator('[data-filter="queue"]')
    expect(queue).to_have_value("other")
    expect(page.locator('[data-filter="task"]')).to_have_value("elsewhere")
    # A URL without a queue means every queue again, not the one chosen before.
    page.evaluate("location.hash = '#/jobs?task=add'")
    expect(queue).to_have_value("")
    expect(page.locator('[data-filter="task"]')).to_have_value("add")
    # And a filter chosen on the page is written into the URL.
    queue.select_option("other")
    expect(page).to_have_url(f"{web}/#/jobs?queue=other&task=add")
