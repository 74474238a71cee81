"""task_stats: figures checked against tasks whose statuses and durations the test sets."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks.models import TaskStatus
from tasks.stats import task_stats
from tests.task_states import make, set_times

S = TaskStatus
pytestmark = pytest.mark.django_db


def percentile_cont(values, fraction):
    """PostgreSQL's percentile_cont, in Python: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def completed(user, task_type, seconds):
    task = make(user, S.COMPLETED, task_type=task_type)
    return set_times(task, started_ago=timedelta(hours=1), took=timedelta(seconds=seconds))


def test_counts_rates_and_durations(user, other_user):
    fast = [1, 2, 3, 4, 10]
    slow = [5.5, 7.25]
    for seconds in fast:
        completed(user, "always_succeeds", seconds)
    for seconds in slow:
        completed(other_user, "flaky", seconds)
    make(user, S.FAILED, task_type="flaky")
    make(user, S.CANCELLED, task_type="always_succeeds")
    make(user, S.RUNNING, task_type="always_fails")
    make(user, S.PENDING, task_type="simulated")
    make(user, S.FAILED, task_type="always_fails")
    outside = completed(user, "always_succeeds", 1000)
    set_times(outside, created_ago=timedelta(days=3))

    with CaptureQueriesContext(connection) as queries:
        stats = task_stats(window=timedelta(hours=24))
    assert len(queries) == 3

    assert stats.total == 12
    assert stats.counts == {S.PENDING: 1, S.RUNNING: 1, S.COMPLETED: 7, S.FAILED: 2, S.CANCELLED: 1}
    assert stats.success_rate == pytest.approx(7 / 9)  # cancelled counts neither way
    assert stats.mean_duration == pytest.approx(sum(fast + slow) / 7)
    assert stats.p95_duration == pytest.approx(percentile_cont(fast + slow, 0.95))

    by_type = {t.task_type: t for t in stats.types}
    assert sorted(by_type) == ["always_fails", "always_succeeds", "flaky", "simulated"]
    succeeds = by_type["always_succeeds"]
    assert (succeeds.total, succeeds.counts[S.COMPLETED], succeeds.counts[S.CANCELLED]) == (6, 5, 1)
    assert succeeds.success_rate == 1.0
    assert succeeds.mean_duration == pytest.approx(4.0)
    assert succeeds.p95_duration == pytest.approx(percentile_cont(fast, 0.95)) == pytest.approx(8.8)
    flaky = by_type["flaky"]
    assert (flaky.total, flaky.success_rate) == (3, pytest.approx(2 / 3))
    assert flaky.mean_duration == pytest.approx(6.375)
    assert flaky.p95_duration == pytest.approx(percentile_cont(slow, 0.95))
    fails = by_type["always_fails"]
    assert (fails.counts[S.RUNNING], fails.counts[S.FAILED], fails.success_rate) == (1, 1, 0.0)
    assert fails.mean_duration is None and fails.p95_duration is None
    assert by_type["simulated"].success_rate is None  # nothing decided yet

    wider = task_stats(window=timedelta(days=7))
    assert wider.total == 13
    assert wider.p95_duration == pytest.approx(percentile_cont(fast + slow + [1000], 0.95))


def test_empty_window():
    stats = task_stats(window=timedelta(minutes=5))
    assert (stats.total, stats.success_rate, stats.mean_duration, stats.p95_duration, stats.types) == (
        0, None, None, None, [])
    assert stats.as_dict()["counts"] == {status: 0 for status in S.values}
