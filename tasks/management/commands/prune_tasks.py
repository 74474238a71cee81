"""manage.py prune_tasks --older-than DAYS [--status S] [--dry-run] [--batch-size N]"""

from datetime import timedelta

from django.core.management.base import BaseCommand

from tasks import maintenance

from ._common import fmt_time, non_negative_float, positive_int


class Command(BaseCommand):
    help = ("Delete finished tasks (completed, failed, cancelled) that finished more than DAYS days ago, with their "
            "attempts and log lines, in batches. Pending and running tasks are never deleted.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=non_negative_float, required=True, metavar="DAYS",
                            help="Age in days since the task finished (decimals allowed, e.g. 0.5).")
        parser.add_argument("--status", action="append", choices=maintenance.FINISHED, dest="statuses",
                            help="Only tasks in this status (repeat for several; default: all finished ones).")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--batch-size", type=positive_int, default=1000, metavar="N",
                            help="Tasks deleted per transaction (1000).")

    def handle(self, *args, older_than, statuses, dry_run, batch_size, **options):
        result = maintenance.task_prune(older_than=timedelta(days=older_than), statuses=statuses, dry_run=dry_run,
                                        batch_size=batch_size)
        what = (f"{result.tasks} task{'' if result.tasks == 1 else 's'} ({', '.join(result.statuses)}) finished "
                f"before {fmt_time(result.cutoff)}, with {result.attempts} attempts and {result.logs} log lines")
        if dry_run:
            self.stdout.write(f"Dry run: would delete {what}.")
        else:
            batches = f" in {result.batches} batch{'' if result.batches == 1 else 'es'}" if result.batches else ""
            self.stdout.write(self.style.SUCCESS(f"Deleted {what}{batches}."))
