"""manage.py recover_tasks [--heartbeat-timeout SECONDS]"""

from django.core.management.base import BaseCommand

from tasks import recovery

from ._common import non_negative_float


def ids(task_ids):
    return ", ".join(f"#{task_id}" for task_id in task_ids)


class Command(BaseCommand):
    help = ("Run one pass of the sweeper that every worker runs in the background: flag running tasks whose "
            "heartbeat is late as stale, mark attempts of dead workers lost (then retry or fail their tasks), enqueue retries that are due, and enqueue pending tasks whose "
            "job Redis lost.")

    def add_arguments(self, parser):
        parser.add_argument("--heartbeat-timeout", type=non_negative_float, metavar="SECONDS",
                            help="Treat a running attempt silent this long as lost (TASKRUNNER_HEARTBEAT_TIMEOUT).")

    def handle(self, *args, heartbeat_timeout, **options):
        report = recovery.sweep(heartbeat_timeout=heartbeat_timeout)
        if report.skipped:
            self.stdout.write(self.style.WARNING("Another sweeper is running right now (its advisory lock is held); "
                                                 "nothing was done. Try again in a moment."))
            return
        if not report and not report.stale:
            self.stdout.write("Nothing to recover.")
            return
        if report.stale:
            self.stdout.write(f"Running tasks with a late heartbeat, now shown as stale: {ids(report.stale)}")
        if report.lost_attempts:
            self.stdout.write(f"Lost attempts marked lost (task retried or failed): {ids(report.lost_attempts)}")
        if report.due_retries:
            self.stdout.write(f"Due retries enqueued: {ids(report.due_retries)}")
        if report.reenqueued:
            self.stdout.write(f"Pending tasks with no job in Redis, enqueued again: {ids(report.reenqueued)}")
