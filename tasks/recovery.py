"""The sweeper: finds work that Redis or a worker lost, and puts it right. PostgreSQL is the source of truth.

One pass (`sweep()`, also `manage.py recover_tasks`):
1. A running attempt whose heartbeat is older than TASKRUNNER_HEARTBEAT_TIMEOUT is marked lost; the task is retried
   while it has attempts left, else failed.
2. A pending task whose retry time has come is enqueued.
3. A pending task that has waited a while but has no live job in Redis (the enqueue was lost, Redis restarted empty,
   a FLUSHALL, a job that died before claiming) is enqueued again.
Every change goes through services, so a sweep racing a worker or another sweep is harmless; a PostgreSQL advisory
lock keeps concurrent sweepers from doing the same scan twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from . import queueing, realtime, services
from .models import AttemptStatus, Task, TaskAttempt

logger = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x7A5C_5EE9  # "taskrunner sweeper"
ENQUEUE_GRACE = timedelta(seconds=5)  # a fresh job may not have reached Redis yet
BATCH = 500


@dataclass
class SweepReport:
    lost_attempts: list[int] = field(default_factory=list)
    due_retries: list[int] = field(default_factory=list)
    reenqueued: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    skipped: bool = False

    def __bool__(self) -> bool:
        return bool(self.lost_attempts or self.due_retries or self.reenqueued)


def sweep(*, heartbeat_timeout: float | None = None) -> SweepReport:
    report = SweepReport()
    if not _try_lock():
        report.skipped = True
        return report
    try:
        report.stale = flag_stale_attempts()
        report.lost_attempts = recover_lost_attempts(heartbeat_timeout)
        report.due_retries = enqueue_due_retries()
        report.reenqueued = reenqueue_orphans()
    finally:
        _unlock()
    return report


_flagged_stale: set[int] = set()


def flag_stale_attempts() -> list[int]:
    """Announce running tasks whose heartbeat is late, once each, so pages show them as stale before recovery."""
    cutoff = timezone.now() - timedelta(seconds=settings.TASKRUNNER_STALE_AFTER)
    late = dict(TaskAttempt.objects.running().filter(heartbeat_at__lt=cutoff).values_list("pk", "task_id")[:BATCH])
    _flagged_stale.intersection_update(late)
    fresh = [task_id for attempt_id, task_id in late.items() if attempt_id not in _flagged_stale]
    for task in Task.objects.running().filter(pk__in=fresh).select_related("owner"):
        task.stale = True
        realtime.task_updated(task)
    _flagged_stale.update(late)
    return fresh


def recover_lost_attempts(heartbeat_timeout: float | None = None) -> list[int]:
    timeout = settings.TASKRUNNER_HEARTBEAT_TIMEOUT if heartbeat_timeout is None else heartbeat_timeout
    cutoff = timezone.now() - timedelta(seconds=timeout)
    stale = list(
        TaskAttempt.objects.running().filter(heartbeat_at__lt=cutoff)
        .select_related("task__owner")[:BATCH]
    )
    for attempt in stale:
        silent = (timezone.now() - attempt.heartbeat_at).total_seconds()
        who = attempt.worker_name or "unknown worker"
        services.attempt_fail(
            attempt=attempt, error_type="WorkerLost", status=AttemptStatus.LOST,
            message=f"the worker was lost ({who} sent no heartbeat for {silent:.0f}s)",
        )
    return [attempt.task_id for attempt in stale]


def enqueue_due_retries() -> list[int]:
    """Enqueue retries whose time has come. Clearing next_retry_at claims them, so each is enqueued once."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            Task.objects.select_for_update(skip_locked=True)
            .pending().filter(next_retry_at__lte=now)
            .values_list("pk", "last_attempt_number", "execution_time")[:BATCH]
        )
        if due:
            Task.objects.pending().filter(pk__in=[pk for pk, _, _ in due]).update(next_retry_at=None)
    for pk, last_number, execution_time in due:
        queueing.enqueue_attempt(pk, last_number + 1, execution_time)
    return [pk for pk, _, _ in due]


def reenqueue_orphans() -> list[int]:
    """Pending tasks with no queued or running job for their next attempt get one."""
    cutoff = timezone.now() - ENQUEUE_GRACE
    waiting = list(
        Task.objects.pending().filter(next_retry_at__isnull=True, updated_at__lt=cutoff)
        .order_by("updated_at")
        .values_list("pk", "last_attempt_number", "execution_time")[:BATCH]
    )
    if not waiting:
        return []
    ids = {pk: queueing.job_id(pk, number + 1) for pk, number, _ in waiting}
    live = queueing.live_job_ids(list(ids.values()))
    orphans = [(pk, number, seconds) for pk, number, seconds in waiting if ids[pk] not in live]
    for pk, number, seconds in orphans:
        logger.warning("Task %s had no job in Redis for attempt %s; enqueuing it again.", pk, number + 1)
        queueing.enqueue_attempt(pk, number + 1, seconds)
    return [pk for pk, _, _ in orphans]


def _try_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        return cursor.fetchone()[0]


def _unlock() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


class Sweeper(threading.Thread):
    """Runs sweep() every TASKRUNNER_SWEEP_INTERVAL seconds inside a worker process, surviving outages."""

    def __init__(self, interval: float | None = None):
        super().__init__(name="taskrunner-sweeper", daemon=True)
        self.interval = settings.TASKRUNNER_SWEEP_INTERVAL if interval is None else interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                close_old_connections()
                report = sweep()
                if report:
                    logger.info("Sweep: lost attempts %s, due retries %s, re-enqueued %s",
                                report.lost_attempts, report.due_retries, report.reenqueued)
            except Exception as exc:  # PostgreSQL or Redis unreachable: try again next tick
                logger.warning("Sweep failed: %r", exc)
                connection.close()
        connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)
