"""Real RQ worker processes running tasks created through the API, against PostgreSQL and Redis."""

import pytest
from rest_framework.test import APIClient

from tasks.models import Task, TaskAttempt, TaskLog
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def create(client, **payload):
    response = client.post("/api/tasks/", payload, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def finished(task_id):
    task = Task.objects.get(pk=task_id)
    return task if task.is_finished else None


@pytest.fixture
def client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_flaky_task_goes_through_three_attempts_to_completed(client, worker):
    worker()
    task_id = create(client, name="flaky demo", task_type="flaky", execution_time=1)
    task = wait_for(lambda: finished(task_id), timeout=60, message="the flaky task to finish")
    assert (task.status, task.attempts) == ("completed", 3)
    assert list(TaskAttempt.objects.filter(task=task).values_list("number", "status")) == [
        (1, "failed"), (2, "failed"), (3, "succeeded")]
    lines = list(TaskLog.objects.filter(task=task).order_by("id").values_list("message", flat=True))
    story = [line.split(":")[0].split(" on ")[0] for line in lines]
    assert story[:-1] == ["Queued by alice.", "Started attempt 1 of 3", "Attempt 1 failed",
                          "Started attempt 2 of 3", "Attempt 2 failed", "Started attempt 3 of 3", "Third time lucky."]
    assert story[-1].startswith("Completed in")
    # pending -> running -> pending -> running -> pending -> running -> completed: one version per change, plus
    # progress updates in between.
    assert task.version >= 7


def test_always_fails_is_failed_after_three_attempts_with_logs_for_each(client, worker):
    worker()
    task_id = create(client, name="doomed", task_type="always_fails", execution_time=0)
    task = wait_for(lambda: finished(task_id), timeout=60, message="the task to fail")
    assert (task.status, task.attempts) == ("failed", 3)
    assert TaskAttempt.objects.filter(task=task, status="failed").count() == 3
    for number in (1, 2, 3):
        assert TaskLog.objects.filter(task=task, attempt__number=number).count() >= 2


def test_a_pool_runs_tasks_side_by_side(client, worker):
    """Four worker processes run four 2-second tasks at once: all finish well before 4 x 2 s."""
    worker(processes=4)
    # Wait until the pool's four workers are registered before timing anything.
    from rq import Worker

    from tasks.queueing import get_queue

    wait_for(lambda: len(Worker.all(queue=get_queue())) == 4, timeout=60, message="four workers")
    ids = [create(client, name=f"parallel {i}", task_type="always_succeeds", execution_time=2) for i in range(4)]
    tasks = [wait_for(lambda i=i: finished(i), timeout=60, message="parallel tasks") for i in ids]
    starts = sorted(t.started_at for t in tasks)
    ends = sorted(t.finished_at for t in tasks)
    assert all(t.status == "completed" for t in tasks)
    assert (ends[-1] - starts[0]).total_seconds() < 6, "tasks ran one after another, not side by side"
    assert len({a.worker_pid for a in TaskAttempt.objects.filter(task_id__in=ids)}) == 4


def test_cancelling_a_running_task_stops_its_handler(client, worker):
    worker()
    task_id = create(client, name="long", task_type="always_succeeds", execution_time=30)
    wait_for(lambda: Task.objects.get(pk=task_id).status == "running", timeout=30, message="running")
    assert client.post(f"/api/tasks/{task_id}/cancel/").status_code == 200
    attempt = wait_for(lambda: TaskLog.objects.filter(task_id=task_id, message__contains="stopped after").first(),
                       timeout=10, message="the handler to notice the cancellation")
    assert attempt
    task = Task.objects.get(pk=task_id)
    assert task.status == "cancelled" and task.progress < 100
    assert TaskAttempt.objects.get(task=task).status == "cancelled"


def test_an_attempt_past_its_rq_timeout_fails_like_any_failure(client, worker, settings):
    settings.TASKRUNNER_JOB_TIMEOUT_FACTOR = 0.25
    settings.TASKRUNNER_JOB_TIMEOUT_SLACK = 0
    worker()
    task_id = create(client, name="overruns", task_type="always_succeeds", execution_time=4, max_attempts=1)
    task = wait_for(lambda: finished(task_id), timeout=30, message="the attempt to time out")
    attempt = TaskAttempt.objects.get(task_id=task_id)
    assert task.status == "failed"
    assert attempt.status == "failed" and attempt.error_type == "JobTimeoutException"
    assert attempt.duration.total_seconds() < 3


def test_a_forking_worker_publishes_every_event_before_its_horse_exits(client, worker, user, settings):
    """A work horse ends with os._exit; the events it published must reach the channel layer first."""
    import time

    import redis
    from channels.layers import get_channel_layer

    from tests.support import TEST_REDIS_URL

    layer = get_channel_layer()
    listener = redis.Redis.from_url(TEST_REDIS_URL).pubsub()
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    listener.subscribe(f"{prefix}__group__user-{user.pk}")
    worker(worker_class="tasks.worker.ForkingTaskWorker")
    ids = [create(client, name=f"forked {i}", task_type="always_succeeds", execution_time=0) for i in range(5)]
    for task_id in ids:
        wait_for(lambda task_id=task_id: finished(task_id), timeout=60, message="forked tasks to finish")
    completed = set()
    deadline = time.monotonic() + 10
    while completed != set(ids) and time.monotonic() < deadline:
        message = listener.get_message(timeout=0.5)
        if message and message["type"] == "message":
            event = layer.deserialize(message["data"])
            if event["type"] == "task.updated" and event["task"]["status"] == "completed":
                completed.add(event["task"]["id"])
    listener.close()
    assert completed == set(ids)
