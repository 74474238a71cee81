"""manage.py show_task ID [--json]"""

from django.core.management.base import BaseCommand, CommandError

from tasks import selectors
from tasks.api.serializers import TaskDetailSerializer, TaskLogSerializer

from ._common import OPERATOR, fmt_delta, fmt_time, table, to_json


class Command(BaseCommand):
    help = "Show one task: its fields, every attempt and its log."

    def add_arguments(self, parser):
        parser.add_argument("task_id", type=int, metavar="ID")
        parser.add_argument("--json", action="store_true", help="The API's JSON: the task, attempts and log.")

    def handle(self, *args, task_id, json, **options):
        task = selectors.task_get(user=OPERATOR, task_id=task_id)
        if task is None:
            raise CommandError(f"Task {task_id} does not exist.")
        logs = list(selectors.task_logs(task=task))
        if json:
            self.stdout.write(to_json({**TaskDetailSerializer(task).data,
                                       "log": TaskLogSerializer(logs, many=True).data}))
            return
        write = self.stdout.write
        write(f"Task #{task.pk}: {task.name}")
        fields = [
            ("status", task.status), ("type", task.task_type), ("execution time", f"{task.execution_time}s"),
            ("attempts", f"{task.attempts} of {task.max_attempts} in this budget"),
            ("progress", f"{task.progress}%"), ("owner", task.owner.get_username()), ("version", task.version),
            ("created", fmt_time(task.created_at)), ("updated", fmt_time(task.updated_at)),
            ("started", fmt_time(task.started_at)), ("finished", fmt_time(task.finished_at)),
            ("duration", fmt_delta(task.duration)),
        ]
        if task.next_retry_at:
            fields.append(("next retry", fmt_time(task.next_retry_at)))
        width = max(len(label) for label, _ in fields)
        for label, value in fields:
            write(f"  {label.ljust(width)}  {value}")
        write("")
        attempts = list(task.attempt_rows.all())
        write(f"Attempts ({len(attempts)}):")
        if attempts:
            write(table(["#", "STATUS", "STARTED", "DURATION", "WORKER", "ERROR"],
                        [[a.number, a.status, fmt_time(a.started_at), fmt_delta(a.duration), a.worker_name or "-",
                          a.error or "-"] for a in attempts]))
        write("")
        write(f"Log ({len(logs)} lines):")
        for log in logs:
            attempt = f" attempt {log.attempt_number}:" if log.attempt_id else ""
            write(f"  {fmt_time(log.created_at)}  [{log.level}]{attempt} {log.message}")
