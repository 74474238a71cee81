"""The Django admin: find tasks, read their history, retry or cancel them.

Tasks are never saved from the admin. A ModelAdmin save writes every column of the row it read, which would race
the workers (and bypass the state machine), so the task pages are view-only, and the only changes are the retry and
cancel actions, which call the same services as the API, the pages and the commands. New tasks are created from the
dashboard, the API or `manage.py create_task`, which enqueue them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from . import maintenance, task_types
from .models import Task, TaskAttempt, TaskLog


def format_seconds(delta) -> str:
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class TaskTypeFilter(admin.SimpleListFilter):
    """The registered types, from the registry: no SELECT DISTINCT over every task to build the list."""

    title = "type"
    parameter_name = "task_type"

    def lookups(self, request, model_admin):
        return [(task_type.name, task_type.name) for task_type in task_types.all_types()]

    def queryset(self, request, queryset):
        return queryset.filter(task_type=self.value()) if self.value() else queryset


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Whoever may view a task may view its history.
        return request.user.has_perm("tasks.view_task") or request.user.has_perm("tasks.change_task")


class TaskAttemptInline(ReadOnlyInline):
    model = TaskAttempt
    verbose_name_plural = "attempts"
    fields = ["number", "status", "started_at", "finished_at", "attempt_duration", "heartbeat_at", "worker_name",
              "error", "traceback_details"]
    readonly_fields = fields
    ordering = ["number"]

    @admin.display(description="duration")
    def attempt_duration(self, attempt):
        return format_seconds(attempt.duration)

    @admin.display(description="traceback")
    def traceback_details(self, attempt):
        if not attempt.traceback:
            return "-"
        return format_html("<details><summary>show</summary><pre>{}</pre></details>", attempt.traceback)


class TaskLogInline(ReadOnlyInline):
    model = TaskLog
    verbose_name_plural = "log"
    fields = ["created_at", "level", "attempt_number", "message"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("attempt").order_by("id")

    @admin.display(description="attempt")
    def attempt_number(self, log):
        return log.attempt_number or "-"


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: rows are written by services, never by a form."""

    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "task_type", "status", "attempts_used", "owner", "created_at", "duration_display"]
    list_display_links = ["id", "name"]
    list_filter = ["status", TaskTypeFilter, "owner", "created_at"]
    list_select_related = ["owner"]
    search_fields = ["name"]
    search_help_text = "Name contains the text, or the id is the number (e.g. 42 or #42)."
    ordering = ["-created_at", "-id"]
    actions = ["retry_tasks", "cancel_tasks"]
    inlines = [TaskAttemptInline, TaskLogInline]
    fieldsets = [
        (None, {"fields": ["name", "task_type", "execution_time", "owner"]}),
        ("State", {"fields": ["status", "attempts_used", "last_attempt_number", "progress", "version",
                              "next_retry_at"]}),
        ("Times", {"fields": ["created_at", "updated_at", "started_at", "finished_at", "duration_display"]}),
    ]
    readonly_fields = ["name", "task_type", "execution_time", "owner", "status", "attempts_used",
                       "last_attempt_number", "progress", "version", "next_retry_at", "created_at", "updated_at",
                       "started_at", "finished_at", "duration_display"]

    @admin.display(description="attempts", ordering="attempts")
    def attempts_used(self, task):
        return f"{task.attempts}/{task.max_attempts}"

    @admin.display(description="duration")
    def duration_display(self, task):
        return format_seconds(task.duration)

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            results |= queryset.filter(pk=int(term))
        return results, may_have_duplicates

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deleting history in bulk is `manage.py prune_tasks`
        return actions

    def has_delete_permission(self, request, obj=None):
        # A finished task may be deleted from its page; a pending or running one is cancelled instead.
        return super().has_delete_permission(request, obj) and (obj is None or obj.is_finished)

    def get_deleted_objects(self, objs, request):
        # A task's attempts and log lines go with it: no separate delete permission is needed for them (their own
        # admins are view-only, which would otherwise block every delete).
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        history = {TaskAttempt._meta.verbose_name, TaskLog._meta.verbose_name}
        return deleted, counts, {name for name in perms_needed if name not in history}, protected

    def has_operate_permission(self, request):
        return request.user.has_perm("tasks.change_task")

    @admin.action(description="Retry selected tasks (failed or cancelled ones)", permissions=["operate"])
    def retry_tasks(self, request, queryset):
        self.report(request, maintenance.tasks_retry(task_ids=queryset.values_list("pk", flat=True),
                                                     actor=request.user))

    @admin.action(description="Cancel selected tasks (pending or running ones)", permissions=["operate"])
    def cancel_tasks(self, request, queryset):
        self.report(request, maintenance.tasks_cancel(task_ids=queryset.values_list("pk", flat=True),
                                                      actor=request.user))

    def report(self, request, outcome: maintenance.BulkOutcome) -> None:
        if outcome.changed:
            self.message_user(request, outcome.changed_sentence(), messages.SUCCESS)
        if outcome.refused:
            self.message_user(request, outcome.refused_sentence(), messages.WARNING)


@admin.register(TaskAttempt)
class TaskAttemptAdmin(ReadOnlyAdmin):
    """Every attempt of every task: find lost and failed attempts across tasks, by worker or error."""

    list_display = ["id", "task", "number", "status", "started_at", "duration", "worker_name", "error_type"]
    list_filter = ["status", "started_at"]
    list_select_related = ["task"]
    search_fields = ["worker_name", "error_type"]
    ordering = ["-id"]
    raw_id_fields = ["task"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TaskLog)
class TaskLogAdmin(ReadOnlyAdmin):
    list_display = ["id", "task", "attempt_number", "level", "created_at", "message"]
    list_filter = ["level", "created_at"]
    list_select_related = ["task", "attempt"]
    ordering = ["-id"]
    raw_id_fields = ["task", "attempt"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="attempt")
    def attempt_number(self, log):
        return log.attempt_number or "-"
