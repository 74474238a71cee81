"""Row factories for tests that need tasks in a given state without running them."""

from django.db import connection

from tasks import services
from tasks.models import Task


def set_status(task: Task, status: str, **columns) -> Task:
    """Force a row into a status for a test, bypassing the state machine on purpose (tests only)."""
    assignments = ", ".join(f"{name} = %s" for name in ["status", *columns])
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE tasks_task SET {assignments} WHERE id = %s", [status, *columns.values(), task.pk])  # nosec
    return Task.objects.get(pk=task.pk)


def run_next_attempt(task: Task) -> str:
    """Run the task's next attempt synchronously in this process, as a worker would."""
    from tasks import jobs

    task.refresh_from_db()
    return jobs.run_attempt(task.pk, task.last_attempt_number + 1)


def make_running(task: Task):
    """Claim the next attempt of a pending task, leaving it running (as if a worker were mid-handler)."""
    task.refresh_from_db()
    return services.attempt_start(task_id=task.pk, number=task.last_attempt_number + 1, worker_name="test-worker")
