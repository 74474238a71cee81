"""The pages in a real browser: a real daphne, a real RQ worker, PostgreSQL and Redis; nothing is mocked.

Each test watches the pages change without reloading them: events travel worker -> Redis channel layer -> daphne ->
socket -> the page's live client, which swaps in the server-rendered fragments.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tasks import services
from tasks.models import Task, TaskStatus

from .conftest import screenshot, wait_live

pytestmark = [pytest.mark.e2e]


def row(page, task_id):
    return page.locator(f"#task-{task_id}")


def count(page, key):
    return page.locator(f'#counts [data-count="{key}"]')


def create_in_form(page, name, task_type, execution_time, max_attempts="3"):
    form = page.locator("#create-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Type").select_option(task_type)
    form.get_by_label("Execution time (s)").fill(execution_time)
    form.get_by_label("Max attempts").fill(max_attempts)
    form.get_by_role("button", name="Create task").click()


def test_a_task_created_in_the_form_runs_live_in_every_browser_of_its_owner(worker, open_page, user, other_user):
    worker()
    worker()  # a second one, so a long task does not hold up the others
    page = open_page(user, sign_in_with_form=True)
    expect(page.locator(".who")).to_have_text("alice")
    second = open_page(user)  # another browser of the same user
    stranger = open_page(other_user)

    create_in_form(page, "Nightly export", "always_succeeds", "2")
    expect(page.locator(".toast", has_text="“Nightly export” queued.")).to_be_visible()
    task = Task.objects.get(name="Nightly export")

    for viewer in (page, second):
        expect(row(viewer, task.pk)).to_be_visible()  # appeared without a reload
        expect(row(viewer, task.pk).locator("[data-role=status]")).to_have_text(re.compile("Pending|Running"))
    # Running, with the progress bar moving (seen at two different values below 100).
    expect(row(page, task.pk)).to_have_attribute("data-status", "running", timeout=10_000)
    bar = row(page, task.pk).locator('[role="progressbar"]')
    seen = set()
    page.wait_for_function(
        f"""() => {{
            const bar = document.querySelector('#task-{task.pk} [role=progressbar]');
            if (!bar) return false;
            (window.__seen = window.__seen || new Set()).add(bar.getAttribute('aria-valuenow'));
            return [...window.__seen].filter(v => v !== '0' && v !== '100').length >= 2;
        }}""",
        polling=50, timeout=10_000,
    )
    seen = page.evaluate("() => [...window.__seen]")
    assert len([v for v in seen if v not in ("0", "100")]) >= 2, seen
    expect(count(page, "running")).to_have_text("1")

    for viewer in (page, second):
        expect(row(viewer, task.pk)).to_have_attribute("data-status", "completed", timeout=15_000)
        expect(row(viewer, task.pk).locator("[data-role=status]")).to_have_text("Completed")
        expect(row(viewer, task.pk).locator(".attempts")).to_have_text("1/3")
        expect(count(viewer, "completed")).to_have_text("1")
        expect(count(viewer, "running")).to_have_text("0")
        expect(count(viewer, "total")).to_have_text("1")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(page.locator(".toast", has_text="“Nightly export” completed.")).to_be_visible()
    expect(second.locator(".toast", has_text="“Nightly export” completed.")).to_be_visible()

    # The other user saw none of it.
    expect(row(stranger, task.pk)).to_have_count(0)
    expect(count(stranger, "total")).to_have_text("0")
    expect(stranger.locator(".toast", has_text="Nightly export")).to_have_count(0)
    assert stranger.goto(f"/tasks/{task.pk}/").status == 404

    # A reload shows the same state: the page never diverged from the database.
    page.reload()
    wait_live(page)
    expect(row(page, task.pk)).to_have_attribute("data-status", "completed")
    expect(count(page, "completed")).to_have_text("1")

    # More rows, one of them running, for a realistic screenshot.
    for name, kind, seconds in [("Sync invoices", "always_fails", "0.2"), ("Warm caches", "always_succeeds", "0.5"),
                                ("Resize uploads", "always_succeeds", "30")]:
        services.task_create(owner=user, name=name, task_type=kind, execution_time=seconds, max_attempts=2)
    expect(page.locator("#task-rows tr")).to_have_count(4)
    expect(count(page, "failed")).to_have_text("1", timeout=15_000)
    expect(page.locator(".toast", has_text="“Sync invoices” failed after 2 attempts.")).to_be_visible()
    resize = Task.objects.get(name="Resize uploads")
    expect(row(page, resize.pk)).to_have_attribute("data-status", "running", timeout=15_000)
    expect(count(page, "completed")).to_have_text("2")
    expect(count(page, "total")).to_have_text("4")
    page.wait_for_timeout(1200)
    screenshot(page, "dashboard.png")
    services.task_cancel(task_id=resize.pk)
    expect(row(page, resize.pk)).to_have_attribute("data-status", "cancelled")

    # Filters and search swap the table in place (and keep it live); the count cards filter by status too.
    page.locator("#filter-q").fill("sync")
    expect(page.locator("#task-rows tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=sync"))
    page.locator("#filter-q").fill("")
    page.locator("#counts a.count-completed").click()
    expect(page.locator("#task-rows tr")).to_have_count(2)
    expect(page.locator("#filter-status")).to_have_value("completed")
    services.task_create(owner=user, name="Not completed yet", task_type="always_succeeds", execution_time="0")
    expect(count(page, "total")).to_have_text("5")
    expect(page.locator("#task-rows tr")).to_have_count(3, timeout=10_000)  # it completed: the filter takes it in
    page.locator("#filter-status").select_option("")
    expect(page.locator("#task-rows tr")).to_have_count(5)

    # Usable on a phone: nothing wider than the screen, the form still reachable.
    phone = open_page(user, viewport={"width": 390, "height": 844})
    expect(phone.locator("#task-rows tr")).to_have_count(5)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    expect(phone.locator("#create-form").get_by_label("Name")).to_be_visible()
    screenshot(phone, "dashboard-phone.png")


def test_a_flaky_task_retries_live_on_its_page_and_ends_completed_after_three_attempts(worker, open_page, user):
    worker()
    page = open_page(user)
    create_in_form(page, "Import ledger", "flaky", "1.5")
    task = wait_for_task("Import ledger")
    page.locator(f"#task-{task.pk} a.task-link").click()
    page.wait_for_url(f"**/tasks/{task.pk}/")
    wait_live(page)

    summary = page.locator("#task-summary")
    log = page.locator("#log li")
    lines_at_start = log.count()
    # The log appends while the page stays put: a line of the second attempt arrives without a reload.
    expect(page.locator("#log", has_text="Started attempt 2 of 3")).to_be_visible(timeout=15_000)
    assert log.count() > lines_at_start
    expect(page.locator(".toast", has_text="attempt 1 failed, retrying")).to_be_visible()
    expect(page.locator("#task-timeline [data-outcome=failed]").first).to_be_visible()

    expect(summary).to_have_attribute("data-status", "completed", timeout=20_000)
    expect(summary.locator("[data-role=status]")).to_have_text("Completed")
    expect(summary.locator('[data-field="attempts"]')).to_have_text("3/3")
    expect(page.locator("#task-timeline li.attempt")).to_have_count(3)
    expect(page.locator("#task-timeline [data-outcome=failed]")).to_have_count(2)
    expect(page.locator("#task-timeline [data-outcome=succeeded]")).to_have_count(1)
    expect(page.locator("#log", has_text="Third time lucky.")).to_be_visible()
    expect(page.locator(".toast", has_text="“Import ledger” completed.")).to_be_visible()
    # Completed: neither retry nor cancel is offered.
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    # The error of a failed attempt, with its traceback folded away until asked for.
    first_error = page.locator("#task-timeline details.error").first
    expect(first_error.locator(".traceback")).not_to_be_visible()
    first_error.locator("summary").click()
    expect(first_error.locator(".traceback")).to_contain_text("SimulatedFailure")

    # Everything the page collected live is what the database says: a reload shows the same lines.
    live_lines = page.locator("#log li").all_inner_texts()
    page.reload()
    wait_live(page)
    assert page.locator("#log li").all_inner_texts() == live_lines
    expect(page.locator("#task-timeline li.attempt")).to_have_count(3)
    page.locator("#task-timeline details.error").first.locator("summary").click()
    screenshot(page, "task-detail.png")


def test_cancel_a_running_task_from_its_page_then_retry_it(worker, open_page, user):
    worker()
    task = services.task_create(owner=user, name="Rebuild search index", task_type="always_succeeds",
                                execution_time="30")
    page = open_page(user, path=f"/tasks/{task.pk}/")
    summary = page.locator("#task-summary")
    expect(summary).to_have_attribute("data-status", "running", timeout=15_000)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)

    page.get_by_role("button", name="Cancel").click()
    expect(summary).to_have_attribute("data-status", "cancelled")
    expect(page.locator(".toast", has_text="“Rebuild search index” was cancelled.")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.locator("#task-timeline [data-outcome=cancelled]")).to_have_count(1)
    expect(page.locator("#log", has_text="Cancelled by alice.")).to_be_visible()
    assert Task.objects.get(pk=task.pk).status == TaskStatus.CANCELLED

    # A refused action shows the reason (here: cancelling what is already cancelled, as a stale page would).
    page.evaluate(f"htmx.ajax('POST', '/tasks/{task.pk}/cancel/', {{swap: 'none'}})")
    expect(page.locator(".toast-error", has_text="is cancelled; it can become cancelled only from")).to_be_visible()

    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".toast", has_text="“Rebuild search index” was retried.")).to_be_visible()
    expect(summary).to_have_attribute("data-status", "running", timeout=15_000)
    expect(page.locator("#task-timeline li.attempt")).to_have_count(2)
    services.task_cancel(task_id=task.pk)
    expect(summary).to_have_attribute("data-status", "cancelled")


def wait_for_task(name):
    from tests.support import wait_for

    return wait_for(lambda: Task.objects.filter(name=name).first(), timeout=10, message=f"task {name!r}")


def test_after_the_server_restarts_the_pages_reconnect_and_catch_up(worker, server, open_page, user):
    worker()
    running = services.task_create(owner=user, name="Long backup", task_type="always_succeeds", execution_time="60")
    dashboard = open_page(user)
    detail = open_page(user, path=f"/tasks/{running.pk}/")
    expect(row(dashboard, running.pk)).to_have_attribute("data-status", "running", timeout=15_000)
    expect(detail.locator("#task-summary")).to_have_attribute("data-status", "running")

    server.stop()
    for page in (dashboard, detail):
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "offline")
    # Changes while no page can hear about them.
    services.task_cancel(task_id=running.pk)
    created = services.task_create(owner=user, name="Made while offline", task_type="always_succeeds",
                                   execution_time="0")
    server.start()

    for page in (dashboard, detail):
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live", timeout=20_000)
    # Caught up without a reload: the state the database has now.
    expect(row(dashboard, running.pk)).to_have_attribute("data-status", "cancelled", timeout=5_000)
    expect(row(dashboard, created.pk)).to_have_attribute("data-status", "completed", timeout=10_000)
    expect(count(dashboard, "total")).to_have_text("2")
    expect(count(dashboard, "cancelled")).to_have_text("1")
    expect(detail.locator("#task-summary")).to_have_attribute("data-status", "cancelled", timeout=5_000)
    expect(detail.locator("#log", has_text="Cancelled.")).to_be_visible()
    expect(detail.locator("#task-timeline [data-outcome=cancelled]")).to_have_count(1)
