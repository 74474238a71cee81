"""manage.py list_tasks [--status S] [--type T] [--limit N] [--json]"""

from django.core.management.base import BaseCommand, CommandError

from tasks import selectors, task_types
from tasks.api.serializers import TaskSerializer
from tasks.models import TaskStatus

from ._common import OPERATOR, fmt_delta, fmt_time, positive_int, table, to_json


class Command(BaseCommand):
    help = "List tasks, newest first."

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=TaskStatus.values, help="Only tasks in this status.")
        parser.add_argument("--type", dest="task_type", metavar="TYPE",
                            help=f"Only tasks of this type: {', '.join(task_types.names())}.")
        parser.add_argument("--search", metavar="TEXT", help="Only tasks whose name contains TEXT.")
        parser.add_argument("--limit", type=positive_int, default=20, metavar="N", help="At most N tasks (20).")
        parser.add_argument("--json", action="store_true", help="Print the API's JSON representation.")

    def handle(self, *args, status, task_type, search, limit, json, **options):
        if task_type and task_type not in task_types.names():
            raise CommandError(f"Unknown task type {task_type!r}. Valid types: {', '.join(task_types.names())}.")
        tasks = list(selectors.task_list(user=OPERATOR, status=status, task_type=task_type, search=search)[:limit])
        if json:
            self.stdout.write(to_json(TaskSerializer(tasks, many=True).data))
            return
        if not tasks:
            self.stdout.write("No tasks.")
            return
        self.stdout.write(table(
            ["ID", "STATUS", "TYPE", "ATTEMPTS", "PROGRESS", "OWNER", "CREATED", "DURATION", "NAME"],
            [[task.pk, task.status, task.task_type, f"{task.attempts}/{task.max_attempts}", f"{task.progress}%",
              task.owner.get_username(), fmt_time(task.created_at), fmt_delta(task.duration), task.name]
             for task in tasks],
        ))
