from django.apps import AppConfig


class TasksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tasks"
    verbose_name = "Tasks"

    def ready(self):
        # Built-in task types register themselves on import; signal handlers connect here.
        from . import signals, task_types  # noqa: F401
