"""The sweeper, one pass at a time, in-process: stale and lost attempts, due retries, orphaned pending tasks."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tasks import queueing, realtime, recovery
from tasks.models import Task, TaskAttempt, TaskLog
from tests.factories import make_running

pytestmark = pytest.mark.django_db(transaction=True)


def age_heartbeat(attempt, seconds):
    TaskAttempt.objects.filter(pk=attempt.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr(realtime.publisher, "send", lambda messages: sent.extend(messages))
    return sent


def test_late_heartbeat_is_shown_stale_then_recovered_as_lost(make_task, api_client, published):
    task = make_task()
    attempt = make_running(task)
    assert api_client.get(f"/api/tasks/{task.pk}/").json()["stale"] is False
    age_heartbeat(attempt, 15)
    assert api_client.get(f"/api/tasks/{task.pk}/").json()["stale"] is True
    assert api_client.get("/api/tasks/").json()["results"][0]["stale"] is True
    published.clear()
    assert recovery.sweep().stale == [task.pk]
    stale_events = [e for _, e in published if e["type"] == "task.updated" and e["task"]["stale"]]
    assert stale_events and stale_events[0]["task"]["id"] == task.pk
    assert recovery.sweep().stale == []  # announced once
    age_heartbeat(attempt, 31)
    report = recovery.sweep()
    assert report.lost_attempts == [task.pk]
    lost = TaskAttempt.objects.get(pk=attempt.pk)
    assert lost.status == "lost" and lost.error_type == "WorkerLost"
    task.refresh_from_db()
    assert task.status == "pending" and task.next_retry_at is not None
    assert "was lost" in TaskLog.objects.filter(task=task).last().message


def test_lost_last_attempt_fails_the_task(make_task):
    task = make_task(max_attempts=1)
    attempt = make_running(task)
    age_heartbeat(attempt, 60)
    recovery.sweep()
    task.refresh_from_db()
    assert task.status == "failed" and "Failed after 1 attempts" in TaskLog.objects.filter(task=task).last().message


def test_due_retry_is_enqueued_once(make_task, redis_conn):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(next_retry_at=timezone.now() - timedelta(seconds=1))
    queueing.get_queue().empty()
    assert recovery.sweep().due_retries == [task.pk]
    assert queueing.get_queue().fetch_job(queueing.job_id(task.pk, 1)) is not None
    assert recovery.sweep().due_retries == []


def test_future_retry_is_left_alone(make_task):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(next_retry_at=timezone.now() + timedelta(seconds=60))
    report = recovery.sweep()
    assert report.due_retries == [] and report.reenqueued == []


def test_orphaned_pending_task_is_enqueued_again_but_a_queued_one_is_not(make_task, redis_conn):
    queued = make_task(name="queued")
    orphan = make_task(name="orphan")
    queueing.get_queue().fetch_job(queueing.job_id(orphan.pk, 1)).delete()
    old = timezone.now() - recovery.ENQUEUE_GRACE - timedelta(seconds=1)
    Task.objects.update(updated_at=old)
    assert recovery.sweep().reenqueued == [orphan.pk]
    assert queueing.get_queue().fetch_job(queueing.job_id(orphan.pk, 1)) is not None
    assert queued.pk not in recovery.sweep().reenqueued


def test_concurrent_sweeps_do_not_overlap(make_task):
    from django.db import connections

    other = connections.create_connection("default")
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [recovery.ADVISORY_LOCK_KEY])
    try:
        assert recovery.sweep().skipped is True
    finally:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [recovery.ADVISORY_LOCK_KEY])
        other.close()
    assert recovery.sweep().skipped is False
