"""The shared body of retry_task and cancel_task: one line per task, a non-zero exit if any was refused."""

from django.core.management.base import BaseCommand, CommandError

from tasks import maintenance

from ._common import OPERATOR


class BulkCommand(BaseCommand):
    action = None  # maintenance.tasks_retry / maintenance.tasks_cancel

    def add_arguments(self, parser):
        parser.add_argument("task_ids", nargs="+", type=int, metavar="ID")

    def handle(self, *args, task_ids, **options):
        outcome = self.action(task_ids=task_ids, actor=OPERATOR)
        changed = {task.pk: task for task in outcome.changed}
        refused = {refusal.task_id: refusal for refusal in outcome.refused}
        for task_id in dict.fromkeys(task_ids):
            if task_id in changed:
                self.stdout.write(f"Task #{task_id} {outcome.verb}: now {changed[task_id].status}.")
            else:
                reason = maintenance.refusal_reason(refused[task_id])
                self.stdout.write(f"Task #{task_id} not {outcome.verb}: it {reason}.")
        if outcome.refused:
            raise CommandError(outcome.summary())
        self.stdout.write(self.style.SUCCESS(outcome.summary()))
