"""Put tasks into a given state through the services, as workers and people do (for the ops tests)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from tasks import services
from tasks.models import Task, TaskStatus


def make(owner, status: str = TaskStatus.PENDING, **fields) -> Task:
    """A task created by task_create and driven to `status` by the worker and person services."""
    fields.setdefault("name", f"a {status} task")
    fields.setdefault("task_type", "always_succeeds")
    fields.setdefault("execution_time", "0")
    if status == TaskStatus.FAILED:
        fields["max_attempts"] = 1
    task = services.task_create(owner=owner, **fields)
    if status == TaskStatus.PENDING:
        return task
    if status == TaskStatus.CANCELLED:
        return services.task_cancel(task_id=task.pk)
    attempt = services.attempt_start(task_id=task.pk, number=1, worker_name="testhost:1", worker_pid=1)
    services.task_log(task_id=task.pk, message="working", attempt=attempt)
    if status == TaskStatus.COMPLETED:
        services.attempt_succeed(attempt=attempt)
    elif status == TaskStatus.FAILED:
        services.attempt_fail(attempt=attempt, error_type="Boom", message="it broke", traceback="Traceback: boom")
    return Task.objects.get(pk=task.pk)


def set_times(task: Task, *, created_ago: timedelta | None = None, started_ago: timedelta | None = None,
              took: timedelta | None = None) -> Task:
    """Move a task's timestamps into the past (status untouched): created/started that long ago, finished `took`
    after it started."""
    now = timezone.now()
    changes = {}
    if created_ago is not None:
        changes["created_at"] = now - created_ago
    if started_ago is not None:
        changes["started_at"] = now - started_ago
        if took is not None:
            changes["finished_at"] = now - started_ago + took
    Task.objects.filter(pk=task.pk).update(**changes)
    return Task.objects.get(pk=task.pk)
