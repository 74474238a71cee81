"""Operator services: bulk retry/cancel with reasons, and pruning old finished tasks in batches."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks import maintenance
from tasks.models import Task, TaskAttempt, TaskLog, TaskStatus
from tests.task_states import make

S = TaskStatus
pytestmark = pytest.mark.django_db


def finished_days_ago(task, days):
    Task.objects.filter(pk=task.pk).update(finished_at=task.finished_at - timedelta(days=days))
    return task


def test_bulk_retry_reports_each_refusal_reason(user):
    failed, cancelled = make(user, S.FAILED), make(user, S.CANCELLED)
    done1, done2, running = make(user, S.COMPLETED), make(user, S.COMPLETED), make(user, S.RUNNING)
    outcome = maintenance.tasks_retry(task_ids=[failed.pk, cancelled.pk, done1.pk, done2.pk, running.pk, 999999],
                                      actor=user)
    assert sorted(task.pk for task in outcome.changed) == sorted([failed.pk, cancelled.pk])
    assert {task.status for task in outcome.changed} == {S.PENDING}
    assert Task.objects.get(pk=failed.pk).status == S.PENDING
    assert Task.objects.get(pk=done1.pk).status == S.COMPLETED
    assert not outcome.ok
    assert outcome.refusal_summary() == ("2 tasks were already completed, 1 task was still running, "
                                         "1 task does not exist")
    assert outcome.summary() == ("2 tasks were retried. 4 tasks were not retried: 2 tasks were already completed, "
                                 "1 task was still running, 1 task does not exist.")
    assert TaskLog.objects.filter(task=failed, message__contains="Retried by alice").exists()


def test_bulk_cancel(user):
    pending, running, done = make(user), make(user, S.RUNNING), make(user, S.COMPLETED)
    outcome = maintenance.tasks_cancel(task_ids=[pending.pk, running.pk, done.pk, pending.pk])
    assert [task.pk for task in outcome.changed] == [pending.pk, running.pk]  # a repeated id is handled once
    assert Task.objects.get(pk=running.pk).status == S.CANCELLED
    assert TaskAttempt.objects.get(task=running).status == "cancelled"
    assert outcome.refused_sentence() == "1 task was not cancelled: 1 task was already completed."
    assert maintenance.refusal_reason(outcome.refused[0]) == "was already completed"


def test_prune_deletes_old_finished_tasks_with_attempts_and_logs_in_batches(user):
    old = [finished_days_ago(make(user, status), 40) for status in (S.COMPLETED, S.COMPLETED, S.FAILED,
                                                                     S.COMPLETED, S.CANCELLED)]
    recent = make(user, S.COMPLETED)
    active = [make(user), make(user, S.RUNNING)]
    Task.objects.filter(pk__in=[t.pk for t in active]).update(created_at=recent.created_at - timedelta(days=90))
    old_ids = [task.pk for task in old]
    attempts = TaskAttempt.objects.filter(task_id__in=old_ids).count()
    logs = TaskLog.objects.filter(task_id__in=old_ids).count()
    assert attempts == 4 and logs > 10

    with CaptureQueriesContext(connection) as queries:
        result = maintenance.task_prune(older_than=timedelta(days=30), batch_size=2)
    assert (result.tasks, result.attempts, result.logs, result.batches) == (5, attempts, logs, 3)
    assert not Task.objects.filter(pk__in=old_ids).exists()
    assert not TaskAttempt.objects.filter(task_id__in=old_ids).exists()
    assert not TaskLog.objects.filter(task_id__in=old_ids).exists()
    assert set(Task.objects.values_list("pk", flat=True)) == {recent.pk, *(t.pk for t in active)}
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "tasks_task"')]
    assert len(deletes) == 3  # one per batch
    assert any("FOR UPDATE SKIP LOCKED" in q["sql"] for q in queries.captured_queries)


def test_prune_dry_run_counts_and_deletes_nothing(user):
    old = [finished_days_ago(make(user, status), 10) for status in (S.COMPLETED, S.FAILED)]
    expected_logs = TaskLog.objects.filter(task__in=old).count()
    before = Task.objects.count(), TaskAttempt.objects.count(), TaskLog.objects.count()
    result = maintenance.task_prune(older_than=timedelta(days=7), dry_run=True)
    assert (result.tasks, result.attempts, result.logs, result.dry_run) == (2, 2, expected_logs, True)
    assert (Task.objects.count(), TaskAttempt.objects.count(), TaskLog.objects.count()) == before


def test_prune_status_filter(user):
    done = finished_days_ago(make(user, S.COMPLETED), 10)
    failed = finished_days_ago(make(user, S.FAILED), 10)
    result = maintenance.task_prune(older_than=timedelta(days=1), statuses=[S.FAILED])
    assert result.tasks == 1
    assert list(Task.objects.values_list("pk", flat=True)) == [done.pk]
    assert not Task.objects.filter(pk=failed.pk).exists()


@pytest.mark.parametrize("statuses", [[S.PENDING], [S.RUNNING, S.COMPLETED], []])
def test_prune_refuses_unfinished_statuses(statuses):
    with pytest.raises(ValueError, match="Only finished tasks"):
        maintenance.task_prune(older_than=timedelta(days=1), statuses=statuses)
