"""Task, TaskAttempt and TaskLog: the durable history of every task.

The database is the source of truth; constraints here hold even against code that forgets a Python check. Status is
written only by tasks.lifecycle (a conditional UPDATE), never by saving a model instance.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    """Waiting for a worker: just created, or a retry is scheduled (next_retry_at says when)."""
    RUNNING = "running", "Running"
    """An attempt has been claimed by a worker and its handler is executing."""
    COMPLETED = "completed", "Completed"
    """An attempt succeeded. Final."""
    FAILED = "failed", "Failed"
    """The last allowed attempt failed. A person may retry it with a fresh budget."""
    CANCELLED = "cancelled", "Cancelled"
    """A person stopped it. A person may retry it with a fresh budget."""


class AttemptStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost"
    """The worker running it died or stopped sending heartbeats."""
    CANCELLED = "cancelled", "Cancelled"


class LogLevel(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class TaskQuerySet(models.QuerySet):
    def visible_to(self, user) -> "TaskQuerySet":
        """Staff see every task; everyone else sees their own."""
        if user.is_staff:
            return self
        return self.filter(owner=user)

    def pending(self) -> "TaskQuerySet":
        return self.filter(status__in=[TaskStatus.PENDING])

    def running(self) -> "TaskQuerySet":
        return self.filter(status__in=[TaskStatus.RUNNING])


class AttemptQuerySet(models.QuerySet):
    def running(self) -> "AttemptQuerySet":
        return self.filter(status__in=[AttemptStatus.RUNNING])


class Task(models.Model):
    name = models.CharField(max_length=200)
    task_type = models.CharField(max_length=64)
    execution_time = models.DecimalField(max_digits=10, decimal_places=3, help_text="Seconds.")
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING, editable=False)
    attempts = models.PositiveSmallIntegerField(
        default=0, editable=False, help_text="Attempts started in the current budget."
    )
    max_attempts = models.PositiveSmallIntegerField(default=3)
    last_attempt_number = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Number of the latest TaskAttempt row. Unlike attempts, it never resets on a manual retry, so "
        "attempt numbers (and RQ job ids) stay unique over the task's whole history.",
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    progress = models.PositiveSmallIntegerField(default=0, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_retry_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=TaskStatus.values), name="task_status_valid"),
            models.CheckConstraint(
                condition=Q(attempts__gte=0) & Q(attempts__lte=F("max_attempts")), name="task_attempts_in_budget"
            ),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1) & Q(max_attempts__lte=10), name="task_max_attempts_range"
            ),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=100), name="task_progress_range"),
            models.CheckConstraint(condition=Q(execution_time__gte=0), name="task_execution_time_positive"),
            models.CheckConstraint(condition=Q(version__gte=1), name="task_version_positive"),
        ]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="task_recent_idx"),
            models.Index(fields=["status", "-created_at"], name="task_status_recent_idx"),
            models.Index(fields=["task_type", "-created_at"], name="task_type_recent_idx"),
            models.Index(fields=["owner", "-created_at"], name="task_owner_recent_idx"),
            models.Index(fields=["-updated_at"], name="task_updated_idx"),
            models.Index(fields=["name"], name="task_name_idx"),
            # The sweeper's scan for work to (re-)enqueue touches only the few pending rows.
            models.Index(
                fields=["next_retry_at"], condition=Q(status=TaskStatus.PENDING), name="task_pending_retry_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("task-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)

    @property
    def duration(self):
        """Wall time from the first start to the end (or to now while it runs)."""
        if not self.started_at:
            return None
        end = self.finished_at or (timezone.now() if self.status == TaskStatus.RUNNING else None)
        return (end - self.started_at) if end else None


class TaskAttempt(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.DurationField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    worker_pid = models.PositiveIntegerField(null=True, blank=True)

    objects = AttemptQuerySet.as_manager()

    class Meta:
        ordering = ["task", "number"]
        constraints = [
            models.UniqueConstraint(fields=["task", "number"], name="attempt_unique_number"),
            models.CheckConstraint(condition=Q(status__in=AttemptStatus.values), name="attempt_status_valid"),
            models.CheckConstraint(condition=Q(number__gte=1), name="attempt_number_positive"),
        ]
        indexes = [
            # The sweeper looks for running attempts with a stale heartbeat.
            models.Index(
                fields=["heartbeat_at"], condition=Q(status=AttemptStatus.RUNNING), name="attempt_running_hb_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of task {self.task_id}"

    @property
    def error(self) -> str:
        return f"{self.error_type}: {self.error_message}" if self.error_type else self.error_message


class TaskLog(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="logs")
    attempt = models.ForeignKey(TaskAttempt, on_delete=models.CASCADE, null=True, blank=True, related_name="logs")
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["task", "id"], name="log_task_idx")]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message}"

    @property
    def attempt_number(self):
        return self.attempt.number if self.attempt_id else None
