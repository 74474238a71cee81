"""The Django admin: list, filters, search, read-only history, and the retry/cancel actions (through the services)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tasks.models import Task, TaskAttempt, TaskLog, TaskStatus
from tests.task_states import make, set_times

S = TaskStatus
pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:tasks_task_changelist")


def change_url(task):
    return reverse("admin:tasks_task_change", args=[task.pk])


def listed_ids(response):
    return {task.pk for task in response.context["cl"].result_list}


def messages_of(response):
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]


def test_list_shows_the_columns(admin_client, user):
    task = set_times(make(user, S.COMPLETED, name="resize photos"), started_ago=timedelta(minutes=5),
                     took=timedelta(seconds=2.5))
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    for text in ("resize photos", "always_succeeds", "Completed", "1/3", "alice", "2.50 s"):
        assert text in html
    assert listed_ids(response) == {task.pk}


def test_filters(admin_client, user, other_user):
    done = make(user, S.COMPLETED, name="done")
    failed = make(other_user, S.FAILED, name="failed", task_type="always_fails")
    old = set_times(make(user, name="old"), created_ago=timedelta(days=30))
    assert listed_ids(admin_client.get(CHANGELIST, {"status__exact": "completed"})) == {done.pk}
    assert listed_ids(admin_client.get(CHANGELIST, {"task_type": "always_fails"})) == {failed.pk}
    assert listed_ids(admin_client.get(CHANGELIST, {"owner__id__exact": other_user.pk})) == {failed.pk}
    recent = admin_client.get(CHANGELIST, {"created_at__gte": (old.created_at + timedelta(days=1)).isoformat()})
    assert listed_ids(recent) == {done.pk, failed.pk}
    html = admin_client.get(CHANGELIST).content.decode()
    assert "By status" in html and "By type" in html and "By owner" in html and "By created at" in html


def test_search_by_name_and_id(admin_client, user):
    photos = make(user, name="resize photos")
    report = make(user, name="monthly report")
    assert listed_ids(admin_client.get(CHANGELIST, {"q": "PHOTO"})) == {photos.pk}
    assert listed_ids(admin_client.get(CHANGELIST, {"q": str(report.pk)})) == {report.pk}
    assert listed_ids(admin_client.get(CHANGELIST, {"q": f"#{report.pk}"})) == {report.pk}


def changelist_queries(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST)
    assert response.status_code == 200
    return len(queries), len(response.context["cl"].result_list)


def test_changelist_query_count_does_not_grow_with_rows(admin_client, django_user_model):
    owners = [django_user_model.objects.create_user(f"owner{i}") for i in range(3)]
    for owner in owners:
        make(owner, S.COMPLETED)
    few, shown = changelist_queries(admin_client)
    assert shown == 3
    owners += [django_user_model.objects.create_user(f"more{i}") for i in range(40)]
    for owner in owners[3:]:
        make(owner, S.COMPLETED)
        make(owner)
    many, shown = changelist_queries(admin_client)
    assert shown == 50  # one page
    assert many == few <= 8
    # No full-table count next to the filtered one (show_full_result_count = False).
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CHANGELIST, {"status__exact": "pending"})
    assert sum("COUNT(" in q["sql"].upper() for q in queries.captured_queries) == 1


def test_change_page_is_read_only_with_attempts_and_logs(admin_client, user):
    task = make(user, S.FAILED, name="broken one")
    response = admin_client.get(change_url(task))
    assert response.status_code == 200
    html = response.content.decode()
    assert "broken one" in html and "Failed" in html
    # the attempt inline: worker, error, traceback; the log inline: every line
    assert "testhost:1" in html and "Boom: it broke" in html and "Traceback: boom" in html
    for log in TaskLog.objects.filter(task=task):
        assert log.message in html
    # nothing editable: no form fields for the task, the attempts or the logs, no save button
    for field in ("name", "status", "attempts", "version", "progress", "max_attempts"):
        assert f'name="{field}"' not in html
    assert 'name="_save"' not in html
    assert "attempt_rows-0-status" not in html and "logs-0-message" not in html


def test_change_page_refuses_a_post(admin_client, user):
    task = make(user, S.COMPLETED)
    response = admin_client.post(change_url(task), {"name": "renamed", "status": "pending", "attempts": 0})
    assert response.status_code == 403
    assert Task.objects.get(pk=task.pk).name == task.name
    assert Task.objects.get(pk=task.pk).status == S.COMPLETED


def test_no_add_page_and_no_bulk_delete(admin_client):
    assert admin_client.get(reverse("admin:tasks_task_add")).status_code == 403
    actions = dict(admin_client.get(CHANGELIST).context["action_form"].fields["action"].choices)
    assert set(actions) == {"", "retry_tasks", "cancel_tasks"}


def test_only_finished_tasks_can_be_deleted(admin_client, user):
    running, done = make(user, S.RUNNING), make(user, S.COMPLETED)
    assert admin_client.post(reverse("admin:tasks_task_delete", args=[running.pk]), {"post": "yes"}).status_code == 403
    response = admin_client.post(reverse("admin:tasks_task_delete", args=[done.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Task.objects.filter(pk=done.pk).exists()
    assert not TaskAttempt.objects.filter(task_id=done.pk).exists()
    assert Task.objects.filter(pk=running.pk).exists()


def run_action(client, action, tasks):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [t.pk for t in tasks], "index": 0},
                       follow=True)


def test_retry_action(admin_client, user):
    failed, cancelled = make(user, S.FAILED), make(user, S.CANCELLED)
    done = [make(user, S.COMPLETED), make(user, S.COMPLETED)]
    response = run_action(admin_client, "retry_tasks", [failed, cancelled, *done])
    assert response.status_code == 200
    assert messages_of(response) == [
        ("success", "2 tasks were retried."),
        ("warning", "2 tasks were not retried: 2 tasks were already completed."),
    ]
    assert Task.objects.get(pk=failed.pk).status == S.PENDING
    assert Task.objects.get(pk=cancelled.pk).status == S.PENDING
    assert {Task.objects.get(pk=t.pk).status for t in done} == {S.COMPLETED}
    assert TaskLog.objects.filter(task=failed, message="Retried by admin: a fresh budget of 1 attempts.").exists()


def test_cancel_action(admin_client, user):
    pending, running = make(user), make(user, S.RUNNING)
    done, failed = make(user, S.COMPLETED), make(user, S.FAILED)
    response = run_action(admin_client, "cancel_tasks", [pending, running, done, failed])
    assert messages_of(response) == [
        ("success", "2 tasks were cancelled."),
        ("warning", "2 tasks were not cancelled: 1 task was already completed, 1 task was already failed."),
    ]
    assert Task.objects.get(pk=pending.pk).status == S.CANCELLED
    assert Task.objects.get(pk=running.pk).status == S.CANCELLED
    assert TaskAttempt.objects.get(task=running).status == "cancelled"
    assert Task.objects.get(pk=done.pk).status == S.COMPLETED


def test_all_refused(admin_client, user):
    done = make(user, S.COMPLETED)
    response = run_action(admin_client, "cancel_tasks", [done])
    assert messages_of(response) == [("warning", "1 task was not cancelled: 1 task was already completed.")]


@pytest.fixture
def viewer_client(client, django_user_model):
    """Staff who may view tasks but not change them."""
    viewer = django_user_model.objects.create_user("viewer", password="viewer-password-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_task"))
    client.force_login(viewer)
    return client


def test_viewer_sees_history_but_has_no_actions(viewer_client, user):
    task = make(user, S.FAILED)
    response = viewer_client.get(CHANGELIST)
    assert response.status_code == 200 and listed_ids(response) == {task.pk}
    assert response.context["action_form"] is None or not response.context["cl"].actions
    html = viewer_client.get(change_url(task)).content.decode()
    assert "Boom: it broke" in html  # attempts inline visible without a TaskAttempt permission
    run_action(viewer_client, "retry_tasks", [task])
    assert Task.objects.get(pk=task.pk).status == S.FAILED


def test_attempt_and_log_admins_are_read_only(admin_client, user):
    task = make(user, S.FAILED)
    attempt = TaskAttempt.objects.get(task=task)
    response = admin_client.get(reverse("admin:tasks_taskattempt_changelist"), {"status__exact": "failed"})
    assert response.status_code == 200 and "testhost:1" in response.content.decode()
    assert admin_client.get(reverse("admin:tasks_taskattempt_change", args=[attempt.pk])).status_code == 200
    assert admin_client.post(reverse("admin:tasks_taskattempt_change", args=[attempt.pk]), {}).status_code == 403
    response = admin_client.get(reverse("admin:tasks_tasklog_changelist"), {"level__exact": "error"})
    assert response.status_code == 200 and "Failed after 1 attempts" in response.content.decode()
    assert admin_client.get(reverse("admin:tasks_tasklog_add")).status_code == 403
