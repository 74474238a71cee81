"""The API's representations. TaskSerializer's output is also the payload of every task.updated event."""

from django.urls import reverse
from rest_framework import serializers

from ..models import Task, TaskAttempt, TaskLog, TaskStatus


class TaskCreateSerializer(serializers.Serializer):
    """Input for POST /api/tasks/. Parsing only: the rules (known type, time range) live in
    services.validate_task_input, shared with the pages, admin and commands."""

    name = serializers.CharField(max_length=200, help_text="1 to 200 characters.")
    task_type = serializers.CharField(max_length=64, help_text="One of the registered task types.")
    execution_time = serializers.DecimalField(
        max_digits=10, decimal_places=3, min_value=0, help_text="Seconds, from 0 to TASKRUNNER_MAX_EXECUTION_TIME."
    )
    max_attempts = serializers.IntegerField(min_value=1, max_value=10, required=False,
                                            help_text="1 to 10 attempts (default 3).")


class TaskActionSerializer(serializers.Serializer):
    """Optional body of retry and cancel: act only if the task is still at this version (else 409)."""

    version = serializers.IntegerField(min_value=1, max_value=2147483647, required=False,
                                       help_text="The version you saw; the action is refused if the task changed.")


class TaskSerializer(serializers.ModelSerializer):
    # Plain attributes and a method field rather than `source="get_absolute_url"`: DRF inspects the signature of a
    # callable source on every row, which was a third of the time to serialize a page of 50 tasks.
    owner = serializers.CharField(source="owner.username", read_only=True)
    url = serializers.SerializerMethodField(help_text="The task's page.")
    status = serializers.ChoiceField(choices=TaskStatus.choices, read_only=True)
    stale = serializers.BooleanField(
        read_only=True, default=False,
        help_text="Running, but its worker has sent no heartbeat for a while; it is recovered if that goes on.",
    )

    class Meta:
        model = Task
        fields = [
            "id", "name", "task_type", "execution_time", "status", "attempts", "max_attempts", "progress", "version",
            "created_at", "updated_at", "started_at", "finished_at", "next_retry_at", "owner", "url", "stale",
        ]
        read_only_fields = fields


    def get_url(self, task) -> str:
        return task_page_url(task.pk)


def task_page_url(task_id: int) -> str:
    """The task's page, from the URL pattern reversed once (a reverse() per row is slow)."""
    global _TASK_URL_TEMPLATE
    if _TASK_URL_TEMPLATE is None:
        _TASK_URL_TEMPLATE = reverse("task-detail", args=[987654321]).replace("987654321", "{}")
    return _TASK_URL_TEMPLATE.format(task_id)


_TASK_URL_TEMPLATE: str | None = None


class TaskAttemptSerializer(serializers.ModelSerializer):
    duration = serializers.SerializerMethodField()

    class Meta:
        model = TaskAttempt
        fields = ["number", "status", "started_at", "finished_at", "duration", "heartbeat_at", "error_type",
                  "error_message", "traceback", "worker_name", "worker_pid"]
        read_only_fields = fields

    def get_duration(self, attempt) -> float | None:
        """Seconds."""
        return attempt.duration.total_seconds() if attempt.duration is not None else None


class TaskDetailSerializer(TaskSerializer):
    attempt_history = TaskAttemptSerializer(source="attempt_rows", many=True, read_only=True)

    class Meta(TaskSerializer.Meta):
        fields = TaskSerializer.Meta.fields + ["attempt_history"]
        read_only_fields = fields


class TaskLogSerializer(serializers.ModelSerializer):
    attempt = serializers.IntegerField(source="attempt.number", read_only=True, allow_null=True, default=None)

    class Meta:
        model = TaskLog
        fields = ["id", "attempt", "level", "message", "created_at"]
        read_only_fields = fields


class TaskTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
