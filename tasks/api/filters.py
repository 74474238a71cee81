import django_filters

from .. import task_types
from ..models import Task, TaskStatus


class TaskFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TaskStatus.choices)
    task_type = django_filters.ChoiceFilter(choices=lambda: [(name, name) for name in task_types.names()])

    class Meta:
        model = Task
        fields = ["status", "task_type"]


class LogFilter(django_filters.FilterSet):
    attempt = django_filters.NumberFilter(field_name="attempt__number", min_value=1,
                                          help_text="Only lines of this attempt number.")
