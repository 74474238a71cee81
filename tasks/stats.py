"""Task statistics over a time window, computed in PostgreSQL with a fixed number of queries (three).

The window selects tasks by created_at (indexed), so every status, pending ones included, is counted. Durations are
those of completed tasks: from the first start to the finish (retries and their backoff included), the same figure
as the admin's duration column. The success rate is completed / (completed + failed): a cancellation is a person's
choice, not an outcome of the work, so it counts neither way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db.models import Aggregate, Avg, Count, F, FloatField, Func, Q
from django.utils import timezone

from .models import Task, TaskStatus

S = TaskStatus


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression): a linearly interpolated percentile."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        fraction = float(fraction)
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be between 0 and 1.")
        super().__init__(expression, fraction=repr(fraction), **extra)


def _seconds(start: str, end: str) -> Func:
    return Func(F(end) - F(start), template="EXTRACT(EPOCH FROM %(expressions)s)", output_field=FloatField())


@dataclass
class TypeStats:
    task_type: str
    counts: dict[str, int]
    total: int
    success_rate: float | None
    mean_duration: float | None
    p95_duration: float | None


@dataclass
class TaskStats:
    since: datetime
    until: datetime
    total: int
    counts: dict[str, int]
    success_rate: float | None
    mean_duration: float | None
    p95_duration: float | None
    types: list[TypeStats] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["since"], data["until"] = self.since.isoformat(), self.until.isoformat()
        return data


def task_stats(*, window: timedelta, now: datetime | None = None) -> TaskStats:
    """Counts per status and per type, success rates, mean and p95 durations of tasks created in the last `window`."""
    until = now or timezone.now()
    since = until - window
    tasks = Task.objects.filter(created_at__gte=since, created_at__lte=until).order_by()
    seconds = _seconds("started_at", "finished_at")
    completed = Q(status=S.COMPLETED, started_at__isnull=False)

    # 1. counts per (type, status)
    counts: dict[str, dict[str, int]] = {}
    for row in tasks.values("task_type", "status").annotate(n=Count("id")):
        counts.setdefault(row["task_type"], _zeros())[row["status"]] = row["n"]
    # 2. durations per type
    durations = {
        row["task_type"]: (row["mean"], row["p95"])
        for row in tasks.values("task_type").annotate(
            mean=Avg(seconds, filter=completed), p95=PercentileCont(seconds, 0.95, filter=completed)
        )
    }
    # 3. durations over all types (a percentile cannot be combined from per-type ones)
    overall = tasks.aggregate(mean=Avg(seconds, filter=completed),
                              p95=PercentileCont(seconds, 0.95, filter=completed))

    totals = _zeros()
    types = []
    for task_type in sorted(counts):
        by_status = counts[task_type]
        for status, n in by_status.items():
            totals[status] += n
        mean, p95 = durations.get(task_type, (None, None))
        types.append(TypeStats(task_type=task_type, counts=by_status, total=sum(by_status.values()),
                               success_rate=_rate(by_status), mean_duration=mean, p95_duration=p95))
    return TaskStats(since=since, until=until, total=sum(totals.values()), counts=totals,
                     success_rate=_rate(totals), mean_duration=overall["mean"], p95_duration=overall["p95"],
                     types=types)


def _zeros() -> dict[str, int]:
    return {status: 0 for status in S.values}


def _rate(counts: dict[str, int]) -> float | None:
    decided = counts[S.COMPLETED] + counts[S.FAILED]
    return counts[S.COMPLETED] / decided if decided else None
