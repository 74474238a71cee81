"""The server-rendered pages through Django's test client: login, dashboard, create form, detail, actions."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tasks import lifecycle, services
from tasks.models import Task, TaskStatus

pytestmark = pytest.mark.django_db

S = TaskStatus


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def force_status(task, status):
    """Put a row in a given status for the test, bypassing the state machine on purpose."""
    Task.objects.filter(pk=task.pk).update(status=status)


def rows(response):
    return re.findall(r'<tr id="task-(\d+)"', response.content.decode())


def count_of(response, key):
    return int(re.search(rf'data-count="{key}">(\d+)<', response.content.decode()).group(1))


HX = {"HTTP_HX_REQUEST": "true"}


# --- Login ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/", "/tasks/1/", "/tasks/1/log/"])
def test_pages_need_a_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_signs_in_and_logout_is_a_post(client, user):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'<label for="id_username">Username</label>' in page.content
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-password-123"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.get("/").status_code == 200
    assert client.get(reverse("logout")).status_code == 405  # logging out takes a POST (CSRF-protected)
    assert client.post(reverse("logout")).status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_shows_an_error(client, user):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b'role="alert"' in response.content


# --- Dashboard -------------------------------------------------------------------------------------------------------------

def test_dashboard_shows_counts_rows_and_the_form(signed_in, make_task, other_user):
    first = make_task(name="first")
    second = make_task(name="second", task_type="flaky")
    make_task(owner=other_user, name="not mine")
    force_status(second, S.FAILED)
    response = signed_in.get("/")
    assert response.status_code == 200
    assert rows(response) == [str(second.pk), str(first.pk)]  # newest first; only the user's own
    assert count_of(response, "total") == 2
    assert count_of(response, "pending") == 1
    assert count_of(response, "failed") == 1
    html = response.content.decode()
    assert "not mine" not in html
    assert f'data-version="{first.version}"' in html
    assert '<span class="attempts" title="Attempts used of the budget">0/3</span>' in html
    for label in ("Name", "Type", "Execution time (s)", "Max attempts", "Search", "Status"):
        assert f">{label}</label>" in html
    assert "Fails its first two attempts and succeeds on the third." in html  # type descriptions
    assert 'id="live-indicator"' in html


def test_staff_see_everyones_tasks(client, staff_user, make_task, other_user):
    make_task(owner=other_user, name="bob's")
    client.force_login(staff_user)
    assert len(rows(client.get("/"))) == 1


def test_dashboard_filters_by_status_type_and_name(signed_in, make_task):
    export = make_task(name="Nightly export")
    flaky = make_task(name="Flaky import", task_type="flaky")
    report = make_task(name="Weekly report")
    force_status(report, S.COMPLETED)
    assert rows(signed_in.get("/?status=completed")) == [str(report.pk)]
    assert rows(signed_in.get("/?type=flaky")) == [str(flaky.pk)]
    assert rows(signed_in.get("/?q=EXPORT")) == [str(export.pk)]
    assert rows(signed_in.get("/?q=port&status=pending")) == [str(flaky.pk), str(export.pk)]
    assert rows(signed_in.get("/?q=port&type=flaky")) == [str(flaky.pk)]
    assert rows(signed_in.get("/?status=bogus&type=nope")) == [str(report.pk), str(flaky.pk), str(export.pk)]
    empty = signed_in.get("/?q=zzz")
    assert rows(empty) == [] and "No tasks match these filters." in empty.content.decode()
    # Counts stay the totals whatever the filter (they are the status filter's buttons).
    assert count_of(signed_in.get("/?status=completed"), "total") == 3


def test_dashboard_paginates_with_a_fixed_number_of_queries(signed_in, make_task, django_assert_max_num_queries):
    from tasks.views import PAGE_SIZE

    for i in range(PAGE_SIZE * 2 + 5):
        make_task(name=f"task {i}")
    # session, user, status counts, page count, page rows: the same for any number of tasks.
    with django_assert_max_num_queries(5):
        first = signed_in.get("/")
    with django_assert_max_num_queries(5):
        third = signed_in.get("/?page=3")
    assert len(rows(first)) == PAGE_SIZE
    assert len(rows(third)) == 5
    assert "Page 1 of 3" in first.content.decode()
    assert 'rel="next"' in first.content.decode() and 'rel="next"' not in third.content.decode()
    assert rows(signed_in.get("/?page=999")) == rows(third)  # out of range: the last page


def test_the_live_region_alone_for_htmx_and_resyncs(signed_in, make_task):
    task = make_task(name="one")
    response = signed_in.get("/?status=pending", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="live-region")
    html = response.content.decode()
    assert '<div id="live-region" data-status="pending"' in html
    assert "<html" not in html and 'id="create-form"' not in html
    assert rows(response) == [str(task.pk)]
    assert "data-synced-at=" in html


# --- Create form -----------------------------------------------------------------------------------------------------------

def test_create_form_creates_through_the_service(signed_in, user):
    response = signed_in.post(reverse("task-create"), {"name": " Export ", "task_type": "always_succeeds",
                                                        "execution_time": "1.5", "max_attempts": "4"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    task = Task.objects.get()
    assert (task.name, task.task_type, str(task.execution_time), task.max_attempts, task.owner) == (
        "Export", "always_succeeds", "1.500", 4, user)
    assert "“Export” queued." in signed_in.get("/").content.decode()  # a message, shown as a toast


def test_create_form_with_htmx_answers_a_fresh_form_and_an_event(signed_in):
    response = signed_in.post(reverse("task-create"), {"name": "x", "task_type": "flaky", "execution_time": "0",
                                                        "max_attempts": ""}, **HX)
    assert response.status_code == 200
    task = Task.objects.get()
    assert task.max_attempts == 3  # the service's default
    assert 'id="create-form"' in response.content.decode() and 'value="x"' not in response.content.decode()
    assert '"task-created"' in response["HX-Trigger"] and f'"id": {task.pk}' in response["HX-Trigger"]


@pytest.mark.parametrize("htmx", [False, True])
def test_create_form_shows_the_services_errors_inline(signed_in, htmx):
    data = {"name": "  ", "task_type": "nope", "execution_time": "-1", "max_attempts": "11"}
    response = signed_in.post(reverse("task-create"), data, **(HX if htmx else {}))
    assert response.status_code == 200
    html = response.content.decode()
    assert Task.objects.count() == 0
    assert '<p class="field-error" id="name-error">A name is required.</p>' in html
    assert "Unknown task type &#x27;nope&#x27;" in html
    assert "Execution time must be a number of seconds from 0 to" in html
    assert "Max attempts must be a whole number from 1 to 10." in html
    assert html.count('aria-invalid="true"') == 4
    assert ("<html" in html) is not htmx  # htmx swaps just the form


def test_create_form_parses_max_attempts(signed_in):
    response = signed_in.post(reverse("task-create"), {"name": "a", "task_type": "flaky", "execution_time": "1",
                                                        "max_attempts": "three"}, **HX)
    assert "Enter a whole number." in response.content.decode()
    assert Task.objects.count() == 0


# --- Detail ----------------------------------------------------------------------------------------------------------------

def test_detail_page_shows_fields_attempts_and_log(signed_in, make_task, django_assert_max_num_queries):
    task = make_task(name="Export", task_type="flaky")
    attempt = services.attempt_start(task_id=task.pk, number=1, worker_name="w1")
    try:
        raise ValueError("disk full")
    except ValueError as exc:
        services.attempt_fail_from_exception(attempt=attempt, exc=exc)
    with django_assert_max_num_queries(6):
        response = signed_in.get(task.get_absolute_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert '<h1 id="task-title">Export</h1>' in html
    assert 'data-attempt="1" data-outcome="failed"' in html
    assert "ValueError: disk full" in html
    assert re.search(r"<details class=\"error\">.*Traceback \(most recent call last\)", html, re.S)
    assert "Queued by alice." in html and "Started attempt 1 of 3 on w1." in html
    assert 'id="log"' in html and 'data-log-url="/tasks/%d/log/"' % task.pk in html


def test_detail_of_another_users_task_is_404(signed_in, make_task, other_user):
    task = make_task(owner=other_user)
    assert signed_in.get(task.get_absolute_url()).status_code == 404
    assert signed_in.get(reverse("task-log", args=[task.pk])).status_code == 404
    assert signed_in.post(reverse("task-cancel", args=[task.pk])).status_code == 404
    assert signed_in.post(reverse("task-retry", args=[task.pk])).status_code == 404
    assert Task.objects.get(pk=task.pk).status == S.PENDING
    assert signed_in.get("/tasks/999999/").status_code == 404


@pytest.mark.parametrize("status,buttons", [
    (S.PENDING, ["cancel"]), (S.RUNNING, ["cancel"]), (S.COMPLETED, []), (S.FAILED, ["retry"]),
    (S.CANCELLED, ["retry"]),
])
def test_buttons_follow_the_lifecycle(signed_in, make_task, status, buttons):
    task = make_task()
    force_status(task, status)
    html = signed_in.get(task.get_absolute_url()).content.decode()
    assert sorted(re.findall(r'data-action="(\w+)"', html)) == buttons
    assert ("cancel" in buttons) == (status in lifecycle.CANCELLABLE)
    assert ("retry" in buttons) == (status in lifecycle.RETRYABLE)


def test_log_lines_after_an_id(signed_in, make_task):
    task = make_task()
    services.task_log(task_id=task.pk, message="second line")
    first, second = task.logs.order_by("id")
    html = signed_in.get(reverse("task-log", args=[task.pk]), {"after": first.pk}).content.decode()
    assert f'id="log-{second.pk}"' in html and f'id="log-{first.pk}"' not in html


def test_detail_live_fragment(signed_in, make_task):
    task = make_task()
    html = signed_in.get(task.get_absolute_url(), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="task-live").content.decode()
    assert '<div id="task-live">' in html
    assert 'id="task-summary"' in html and 'id="task-timeline"' in html and 'id="log"' not in html


# --- Actions ---------------------------------------------------------------------------------------------------------------

def test_cancel_button_calls_the_service(signed_in, make_task):
    task = make_task(name="Export")
    response = signed_in.post(reverse("task-cancel", args=[task.pk]))
    assert response.status_code == 302 and response["Location"] == task.get_absolute_url()
    assert Task.objects.get(pk=task.pk).status == S.CANCELLED
    page = signed_in.get(task.get_absolute_url()).content.decode()
    assert "“Export” cancelled." in page and "Cancelled by alice." in page


def test_retry_button_calls_the_service(signed_in, make_task):
    task = make_task()
    force_status(task, S.FAILED)
    response = signed_in.post(reverse("task-retry", args=[task.pk]), **HX)
    assert response.status_code == 204  # the new state arrives over the socket
    assert Task.objects.get(pk=task.pk).status == S.PENDING


def test_a_refused_action_shows_the_reason(signed_in, make_task):
    task = make_task()
    force_status(task, S.COMPLETED)
    response = signed_in.post(reverse("task-cancel", args=[task.pk]), **HX)
    assert response.status_code == 409
    assert response.content.decode() == f"Task {task.pk} is completed; it can become cancelled only from pending, running."
    response = signed_in.post(reverse("task-retry", args=[task.pk]), follow=True)
    assert f"Task {task.pk} is completed; it can become pending only from cancelled, failed." in response.content.decode()
    assert Task.objects.get(pk=task.pk).status == S.COMPLETED


def test_actions_need_a_post_and_csrf(make_task, user):
    from django.test import Client

    task = make_task()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(reverse("task-cancel", args=[task.pk])).status_code == 405
    assert client.post(reverse("task-cancel", args=[task.pk])).status_code == 403
    assert Task.objects.get(pk=task.pk).status == S.PENDING


# --- Fragments for live updates ----------------------------------------------------------------------------------------------

def test_event_fragments_are_the_page_partials_and_run_no_query(make_task, django_assert_num_queries):
    from tasks import rendering

    task = Task.objects.select_related("owner").get(pk=make_task(name="Export").pk)
    log = task.logs.select_related("attempt").get()
    with django_assert_num_queries(0):
        fragments = rendering.task_fragments(task)
        line = rendering.log_fragment(log)
    assert fragments["row"].strip().startswith(f'<tr id="task-{task.pk}"')
    assert f'data-version="{task.version}"' in fragments["row"]
    assert fragments["summary"].strip().startswith('<section id="task-summary"')
    assert 'data-action="cancel"' in fragments["summary"]
    assert "csrfmiddlewaretoken" not in fragments["summary"]  # viewer-independent: the token travels in a header
    assert line.strip().startswith(f'<li id="log-{log.pk}"') and "Queued by alice." in line


@pytest.mark.django_db(transaction=True)
def test_a_running_task_with_a_late_heartbeat_is_shown_stale(client, user, make_task):
    from datetime import timedelta

    from django.utils import timezone

    from tasks import rendering
    from tasks.models import TaskAttempt
    from tests.factories import make_running

    task = make_task(name="quiet one")
    attempt = make_running(task)
    client.force_login(user)
    assert 'data-role="stale"' not in client.get("/").content.decode()
    TaskAttempt.objects.filter(pk=attempt.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=20))
    assert 'data-role="stale"' in client.get("/").content.decode()
    assert 'data-role="stale"' in client.get(f"/tasks/{task.pk}/").content.decode()
    task.refresh_from_db()
    task.stale = True  # as the sweeper's event announces it
    assert 'data-role="stale"' in rendering.task_fragments(task)["row"]
