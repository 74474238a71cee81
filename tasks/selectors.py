"""Read paths shared by the API, the pages, the consumers and the commands.

Each returns a queryset or value built with a fixed number of queries, whatever the number of rows.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Prefetch
from django.utils import timezone

from .models import Task, TaskAttempt, TaskLog, TaskStatus


def task_list(*, user, status: str | None = None, task_type: str | None = None, search: str | None = None):
    """Tasks the user may see, newest first, with their owners (one query per page, plus the count)."""
    queryset = with_staleness(Task.objects.visible_to(user).select_related("owner"))
    if status:
        queryset = queryset.filter(status=status)
    if task_type:
        queryset = queryset.filter(task_type=task_type)
    if search:
        queryset = queryset.filter(name__icontains=search)
    return queryset


def task_detail_queryset(*, user):
    """Tasks the user may see, each with its attempts prefetched (two queries for any number of attempts)."""
    return with_staleness(Task.objects.visible_to(user).select_related("owner")).prefetch_related(
        Prefetch("attempt_rows", queryset=TaskAttempt.objects.order_by("number"))
    )


def with_staleness(queryset):
    """Annotate `stale`: the task's running attempt has not sent a heartbeat for TASKRUNNER_STALE_AFTER seconds
    (its worker may be gone; the sweeper recovers it after TASKRUNNER_HEARTBEAT_TIMEOUT)."""
    cutoff = timezone.now() - timedelta(seconds=settings.TASKRUNNER_STALE_AFTER)
    late = TaskAttempt.objects.running().filter(task=OuterRef("pk"), heartbeat_at__lt=cutoff)
    return queryset.annotate(stale=Exists(late))


def task_get(*, user, task_id: int) -> Task | None:
    """The task if the user may see it, else None (callers answer 404: another user's task does not exist)."""
    return task_detail_queryset(user=user).filter(pk=task_id).first()


def task_is_visible(*, user, task_id: int) -> bool:
    return Task.objects.visible_to(user).filter(pk=task_id).exists()


def task_logs(*, task: Task, attempt: int | None = None, after_id: int | None = None):
    """A task's log lines, oldest first, each with its attempt number."""
    queryset = TaskLog.objects.filter(task=task).select_related("attempt").order_by("id")
    if attempt is not None:
        queryset = queryset.filter(attempt__number=attempt)
    if after_id is not None:
        queryset = queryset.filter(id__gt=after_id)
    return queryset


def task_status_counts(*, user) -> dict[str, int]:
    """Counts per status of the tasks the user may see (one query), every status present."""
    rows = Task.objects.visible_to(user).order_by().values("status").annotate(n=Count("id"))
    counts = {status: 0 for status in TaskStatus.values}
    counts.update({row["status"]: row["n"] for row in rows})
    counts["total"] = sum(counts[status] for status in TaskStatus.values)
    return counts
