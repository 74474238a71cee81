"""Fault tests: real worker processes killed, Redis and PostgreSQL restarted, enqueues lost, duplicates and races.

Each test asserts the outcome and that no task is lost (every task ends completed or failed, or runs again).
The deadlines are the ones the README's "Guarantees" section promises, with the default heartbeat timeout (30 s).
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from tasks import queueing, services
from tasks.models import Task, TaskAttempt, TaskLog
from tests.support import free_port, race, wait_for, winners

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]

FORKING = "tasks.worker.ForkingTaskWorker"


def attempt_of(task_id, number=1, status="running"):
    return TaskAttempt.objects.filter(task_id=task_id, number=number, status=status).first()


def status_of(task_id):
    return Task.objects.get(pk=task_id).status


def test_1_killed_work_horse_fails_the_attempt_and_retries_within_5s(make_task, worker):
    worker(worker_class=FORKING)
    task = make_task(task_type="always_succeeds", execution_time="20")
    running = wait_for(lambda: attempt_of(task.pk), timeout=30, message="the horse to start the attempt")
    time.sleep(0.5)
    import os

    os.kill(running.worker_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    failed = wait_for(lambda: attempt_of(task.pk, 1, "failed"), timeout=10, message="attempt 1 failed")
    wait_for(lambda: attempt_of(task.pk, 2), timeout=10, message="attempt 2 running")
    assert time.monotonic() - killed_at < 5
    assert failed.error_type == "WorkHorseKilled" and "killed by signal 9" in failed.error_message
    assert TaskAttempt.objects.filter(task=task, number=1).count() == 1  # one outcome for the attempt


def test_2_killed_worker_with_another_alive_is_retried_within_45s(make_task, worker):
    first = worker(name="first")
    task = make_task(task_type="always_succeeds", execution_time="3")
    running = wait_for(lambda: attempt_of(task.pk), timeout=30, message="attempt 1 running")
    assert running.worker_pid == first.pid
    worker(name="second")
    first.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    lost = wait_for(lambda: attempt_of(task.pk, 1, "lost"), timeout=45, message="attempt 1 marked lost")
    assert time.monotonic() - killed_at < 45
    assert "worker was lost" in lost.error_message
    done = wait_for(lambda: Task.objects.get(pk=task.pk) if status_of(task.pk) == "completed" else None,
                    timeout=30, message="the retry to complete")
    assert done.attempts == 2
    assert TaskAttempt.objects.get(task=task, number=2).worker_pid != first.pid


def test_3_only_worker_killed_then_a_new_one_recovers_within_45s(make_task, worker):
    only = worker(name="only")
    task = make_task(task_type="always_succeeds", execution_time="3")
    wait_for(lambda: attempt_of(task.pk), timeout=30, message="attempt 1 running")
    only.kill(signal.SIGKILL)
    time.sleep(1)
    assert status_of(task.pk) == "running"  # nobody noticed yet: no worker is alive
    worker(name="replacement")
    started_at = time.monotonic()
    wait_for(lambda: status_of(task.pk) == "completed", timeout=60, message="recovery and completion")
    recovered = TaskAttempt.objects.get(task=task, number=1)
    assert recovered.status == "lost"
    assert (recovered.finished_at - timezone.now()).total_seconds() < 0
    assert time.monotonic() - started_at < 45 + 5  # recovered within 45 s, then a 3 s run


def test_4_lost_enqueue_still_runs_within_60s(make_task, worker, monkeypatch):
    """The row commits, then the enqueue fails (Redis unreachable for that call): the sweeper enqueues it."""
    import redis

    from tasks import queueing as q

    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    real_get_queue = q.get_queue
    monkeypatch.setattr(q, "get_queue", lambda: type("DeadQueue", (), {
        "enqueue_call": lambda self, *a, **k: dead.ping()})())
    task = make_task(task_type="always_succeeds", execution_time="0")
    monkeypatch.setattr(q, "get_queue", real_get_queue)
    assert real_get_queue().fetch_job(q.job_id(task.pk, 1)) is None  # the enqueue really was lost
    created = time.monotonic()
    worker()
    wait_for(lambda: status_of(task.pk) == "completed", timeout=60, message="the orphan to run")
    assert time.monotonic() - created < 60


def test_5_redis_restarted_empty_loses_no_task(make_task, worker, tmp_path, monkeypatch):
    """A private Redis server, restarted with nothing kept while tasks are pending and running."""
    import django_rq.settings

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    def start_redis():
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
                        "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
                        "--pidfile", str(tmp_path / "redis.pid")], check=True)
        import redis

        wait_for(lambda: _ping(redis.Redis.from_url(url)), timeout=10, message="redis to start")

    start_redis()
    try:
        monkeypatch.setitem(django_rq.settings.QUEUES, "default", {**django_rq.settings.QUEUES["default"],
                                                                    "URL": url})
        queueing._queue_cache.clear()
        worker(processes=2, REDIS_URL=url)
        tasks = [make_task(name=f"r{i}", task_type="flaky" if i % 3 == 0 else "always_succeeds",
                           execution_time="2") for i in range(8)]
        wait_for(lambda: Task.objects.filter(status="running").exists(), timeout=30, message="some running")
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False)
        time.sleep(2)
        start_redis()
        ids = [t.pk for t in tasks]
        wait_for(lambda: not Task.objects.filter(pk__in=ids, status__in=["pending", "running"]).exists(),
                 timeout=120, message="every task to end")
        for task in Task.objects.filter(pk__in=ids):
            assert task.status == "completed", (task.pk, task.status)
            rows = TaskAttempt.objects.filter(task=task).count()
            started = TaskLog.objects.filter(task=task, message__startswith="Started attempt").count()
            assert rows == started == task.last_attempt_number, task.pk
            assert task.attempts <= task.max_attempts
    finally:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False)
        queueing._queue_cache.clear()


def _ping(conn):
    try:
        return conn.ping()
    except Exception:
        return False


def test_6_postgresql_restarted_mid_run_loses_no_task(make_task, worker):
    """Restart the real PostgreSQL server while tasks run; workers reconnect on their own."""
    worker(processes=2)
    ids = [make_task(name=f"pg{i}", task_type="always_succeeds", execution_time="2").pk for i in range(6)]
    wait_for(lambda: Task.objects.filter(status="running").exists(), timeout=30, message="some running")
    connection.close()
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True).stdout.split()[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    wait_for(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0, timeout=30,
             message="PostgreSQL back")

    def all_ended():
        try:  # this test process is only the observer: its own connections may need a moment too
            return not Task.objects.filter(pk__in=ids, status__in=["pending", "running"]).exists()
        except OperationalError:
            connection.close()
            return False

    wait_for(all_ended, timeout=120, message="every task to end")
    assert set(Task.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"completed"}


def test_7_duplicate_delivery_and_four_workers_over_500_tasks(user, worker):
    """Every job is delivered twice; four workers race. Each attempt runs exactly once."""
    ids = [services.task_create(owner=user, name=f"d{i}", task_type="always_succeeds", execution_time=0).pk
           for i in range(500)]
    for pk in ids:  # the second delivery of each job
        queueing.enqueue_attempt(pk, 1, 0)
    worker(processes=4)
    wait_for(lambda: Task.objects.filter(pk__in=ids, status="completed").count() == 500, timeout=240,
             interval=1, message="500 tasks to complete")
    assert TaskAttempt.objects.filter(task_id__in=ids).count() == 500
    assert TaskLog.objects.filter(task_id__in=ids, message__startswith="Started attempt").count() == 500
    assert not Task.objects.filter(pk__in=ids, attempts__gt=1).exists()


def test_8_cancel_and_retry_raced_50_times(make_task):
    """Fifty rounds of parallel cancels and retries of one task, each for the version it saw: exactly one wins per
    round, and the row moves by exactly one version to the winner's status."""
    task = make_task()
    services.task_cancel(task_id=task.pk)
    for round_number in range(50):
        seen = Task.objects.get(pk=task.pk)
        cancel = lambda: ("cancel", services.task_cancel(task_id=task.pk, expected_version=seen.version))  # noqa
        retry = lambda: ("retry", services.task_retry(task_id=task.pk, expected_version=seen.version))  # noqa
        won = winners(race([cancel, retry] * 5))
        after = Task.objects.get(pk=task.pk)
        assert len(won) == 1, (round_number, won)
        assert after.version == seen.version + 1
        assert after.status == {"cancel": "cancelled", "retry": "pending"}[won[0][0]]


def test_8b_fifty_parallel_cancels_have_one_winner(make_task):
    task = make_task()
    assert len(winners(race([lambda: services.task_cancel(task_id=task.pk)] * 50))) == 1
    assert TaskLog.objects.filter(task=task, message__startswith="Cancelled").count() == 1


def test_9_sigterm_lets_the_current_attempt_finish(make_task, worker):
    """Warm shutdown: the worker completes the attempt it is running, then exits; nothing is left running."""
    process = worker()
    task = make_task(task_type="always_succeeds", execution_time="3")
    wait_for(lambda: attempt_of(task.pk), timeout=30, message="attempt running")
    process.kill(signal.SIGTERM)
    wait_for(lambda: not process.alive(), timeout=30, message="the worker to exit")
    task.refresh_from_db()
    assert task.status == "completed" and task.attempts == 1


def test_10_second_sigterm_gives_the_attempt_back(make_task, worker):
    """Cold shutdown: the attempt is handed back at once (not counted), and the next worker runs it."""
    process = worker(name="stopping")
    task = make_task(task_type="always_succeeds", execution_time="20")
    wait_for(lambda: attempt_of(task.pk), timeout=30, message="attempt running")
    process.kill(signal.SIGTERM)
    time.sleep(1.5)  # RQ ignores a second signal within a second of the first
    process.kill(signal.SIGTERM)
    wait_for(lambda: not process.alive(), timeout=30, message="the worker to exit")
    given_back = TaskAttempt.objects.get(task=task, number=1)
    assert given_back.status == "lost" and given_back.error_type == "WorkerShutdown"
    task.refresh_from_db()
    assert (task.status, task.attempts) == ("pending", 0)
    Task.objects.filter(pk=task.pk).update(execution_time=0)
    worker(name="next")
    wait_for(lambda: status_of(task.pk) == "completed", timeout=30, message="the next worker to run it")
    assert Task.objects.get(pk=task.pk).attempts == 1
