"""manage.py task_stats [--window 24h] [--json]"""

from datetime import timedelta

from django.core.management.base import BaseCommand

from tasks import stats
from tasks.models import TaskStatus

from ._common import fmt_seconds, fmt_time, table, to_json, window


def percent(rate):
    return "-" if rate is None else f"{100 * rate:.1f}%"


class Command(BaseCommand):
    help = ("Statistics of the tasks created in a window: counts per status and type, success rate "
            "(completed / (completed + failed)), mean and p95 duration of completed tasks.")

    def add_arguments(self, parser):
        parser.add_argument("--window", type=window, default=timedelta(hours=24), metavar="SPAN",
                            help="How far back: e.g. 90m, 24h (default), 7d, 2w; a bare number means hours.")
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")

    def handle(self, *args, window, json, **options):
        figures = stats.task_stats(window=window)
        if json:
            self.stdout.write(to_json(figures.as_dict()))
            return
        self.stdout.write(f"Tasks created from {fmt_time(figures.since)} to {fmt_time(figures.until)}: "
                          f"{figures.total}")
        if not figures.total:
            return
        statuses = TaskStatus.values
        rows = [[t.task_type, *(t.counts[s] for s in statuses), t.total, percent(t.success_rate),
                 fmt_seconds(t.mean_duration), fmt_seconds(t.p95_duration)] for t in figures.types]
        rows.append(["all", *(figures.counts[s] for s in statuses), figures.total, percent(figures.success_rate),
                     fmt_seconds(figures.mean_duration), fmt_seconds(figures.p95_duration)])
        self.stdout.write(table(["TYPE", *(s.upper() for s in statuses), "TOTAL", "SUCCESS", "MEAN", "P95"], rows))
