"""Services: creation, execution outcomes, retries with backoff, cancellation, manual retry, duplicates."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from tasks import lifecycle, queueing, realtime, services
from tasks.models import AttemptStatus, Task, TaskAttempt, TaskLog, TaskStatus
from tests.factories import make_running, run_next_attempt

pytestmark = pytest.mark.django_db(transaction=True)


def messages(task):
    return list(TaskLog.objects.filter(task=task).order_by("id").values_list("message", flat=True))


def make_due(task):
    """Skip the backoff: the scheduled retry is due now."""
    Task.objects.filter(pk=task.pk).update(next_retry_at=timezone.now())


def test_create_commits_then_enqueues_the_first_attempt(make_task, redis_conn):
    task = make_task(name="  report  ", task_type="always_succeeds", execution_time="1.5")
    assert (task.name, task.status, task.attempts, task.max_attempts, task.version) == ("report", "pending", 0, 3, 1)
    job = queueing.get_queue().fetch_job(queueing.job_id(task.pk, 1))
    assert job is not None and job.args == (task.pk, 1)
    assert job.timeout == queueing.job_timeout(task.execution_time)
    assert messages(task) == ["Queued by alice."]


def test_nothing_is_enqueued_when_the_transaction_rolls_back(user):
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        task = services.task_create(owner=user, name="x", task_type="always_succeeds", execution_time=0)
        raise RuntimeError("roll back")
    assert queueing.get_queue().fetch_job(queueing.job_id(task.pk, 1)) is None
    assert not Task.objects.exists()


@pytest.mark.parametrize("fields,field", [
    ({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({"task_type": "nope"}, "task_type"),
    ({"execution_time": -1}, "execution_time"), ({"execution_time": 3601}, "execution_time"),
    ({"execution_time": "abc"}, "execution_time"), ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 11}, "max_attempts"),
])
def test_create_validates_every_field(user, fields, field):
    data = {"name": "ok", "task_type": "always_succeeds", "execution_time": 1, **fields}
    with pytest.raises(ValidationError) as error:
        services.task_create(owner=user, **data)
    assert field in error.value.message_dict
    assert not Task.objects.exists()


def test_unknown_type_lists_the_valid_ones(user):
    with pytest.raises(ValidationError) as error:
        services.task_create(owner=user, name="x", task_type="nope", execution_time=1)
    assert "Valid types: always_fails, always_succeeds, flaky, simulated." in error.value.message_dict["task_type"][0]


def test_success_completes_with_one_attempt_and_readable_logs(make_task):
    task = make_task(task_type="always_succeeds", execution_time="0.2")
    assert run_next_attempt(task) == "succeeded"
    task.refresh_from_db()
    assert (task.status, task.attempts, task.progress) == ("completed", 1, 100)
    assert task.started_at and task.finished_at and task.finished_at >= task.started_at
    attempt = TaskAttempt.objects.get(task=task)
    assert attempt.status == AttemptStatus.SUCCEEDED and attempt.duration >= timedelta(seconds=0.2)
    assert attempt.worker_name and attempt.worker_pid
    logs = messages(task)
    assert logs[0] == "Queued by alice." and logs[1].startswith("Started attempt 1 of 3")
    assert logs[-1].startswith("Completed in ")


def test_flaky_retries_with_backoff_and_completes_on_the_third_attempt(make_task):
    task = make_task(task_type="flaky", execution_time="0")
    statuses = []
    for _ in range(3):
        outcome = run_next_attempt(task)
        task.refresh_from_db()
        statuses.append((outcome, task.status))
        if task.status == "pending":
            assert task.next_retry_at > timezone.now() - timedelta(seconds=1)
            make_due(task)
    assert statuses == [("failed", "pending"), ("failed", "pending"), ("succeeded", "completed")]
    assert task.attempts == 3
    rows = list(TaskAttempt.objects.filter(task=task).values_list("number", "status"))
    assert rows == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert sum("Retry in" in line for line in messages(task)) == 2


def test_always_fails_ends_failed_after_three_attempts_with_errors_kept(make_task):
    task = make_task(task_type="always_fails", execution_time="0")
    for _ in range(3):
        run_next_attempt(task)
        make_due(task)
    task.refresh_from_db()
    assert (task.status, task.attempts) == ("failed", 3)
    attempts = list(TaskAttempt.objects.filter(task=task))
    assert [a.status for a in attempts] == ["failed"] * 3
    assert all(a.error_type == "SimulatedFailure" and "Traceback" in a.traceback for a in attempts)
    assert messages(task)[-1].endswith("Failed after 3 attempts.")
    assert run_next_attempt(task) == "skipped"  # no fourth attempt


def test_max_attempts_is_per_task(make_task):
    task = make_task(task_type="always_fails", execution_time="0", max_attempts=1)
    run_next_attempt(task)
    task.refresh_from_db()
    assert (task.status, task.attempts) == ("failed", 1)


def test_retry_delay_grows_exponentially_with_jitter(settings):
    settings.TASKRUNNER_RETRY_BACKOFF_BASE = 1.0
    settings.TASKRUNNER_RETRY_JITTER = 0.25
    for failures, expected in [(1, 1), (2, 2), (3, 4)]:
        delays = [services.retry_delay(failures) for _ in range(50)]
        assert all(0.75 * expected <= d <= 1.25 * expected for d in delays)
        assert len(set(delays)) > 1  # jitter spreads retries out
    settings.TASKRUNNER_RETRY_BACKOFF_MAX = 5
    assert services.retry_delay(10) <= 6.25


def test_duplicate_job_does_nothing_and_says_so(make_task):
    task = make_task(task_type="always_succeeds", execution_time="0")
    assert run_next_attempt(task) == "succeeded"
    from tasks import jobs

    assert jobs.run_attempt(task.pk, 1) == "skipped"
    assert TaskAttempt.objects.filter(task=task).count() == 1
    assert "Ignored a duplicate or late job for attempt 1" in messages(task)[-1]


def test_cancel_pending_and_the_job_then_does_nothing(make_task):
    task = make_task()
    cancelled = services.task_cancel(task_id=task.pk)
    assert cancelled.status == "cancelled" and cancelled.finished_at
    assert run_next_attempt(task) == "skipped"


def test_cancel_running_closes_the_attempt_and_the_late_finish_is_discarded(make_task):
    task = make_task()
    attempt = make_running(task)
    services.task_cancel(task_id=task.pk)
    assert TaskAttempt.objects.get(pk=attempt.pk).status == AttemptStatus.CANCELLED
    assert services.attempt_succeed(attempt=attempt) is None
    task.refresh_from_db()
    assert task.status == "cancelled"
    assert "result discarded" in messages(task)[-1]


def test_cancel_refused_for_a_finished_task(make_task):
    task = make_task()
    run_next_attempt(task)
    with pytest.raises(lifecycle.InvalidTransition, match="is completed"):
        services.task_cancel(task_id=task.pk)


def test_manual_retry_gives_a_fresh_budget_and_keeps_history(make_task):
    task = make_task(task_type="always_fails", execution_time="0", max_attempts=2)
    for _ in range(2):
        run_next_attempt(task)
        make_due(task)
    retried = services.task_retry(task_id=task.pk)
    assert (retried.status, retried.attempts, retried.last_attempt_number) == ("pending", 0, 2)
    assert queueing.get_queue().fetch_job(queueing.job_id(task.pk, 3)) is not None
    run_next_attempt(task)
    assert list(TaskAttempt.objects.filter(task=task).values_list("number", flat=True)) == [1, 2, 3]
    task.refresh_from_db()
    assert task.attempts == 1


def test_retry_refused_unless_failed_or_cancelled(make_task):
    task = make_task()
    with pytest.raises(lifecycle.InvalidTransition):
        services.task_retry(task_id=task.pk)


def test_give_back_on_shutdown_does_not_spend_an_attempt(make_task):
    task = make_task()
    attempt = make_running(task)
    services.attempt_give_back(attempt=attempt, reason="worker shut down")
    task.refresh_from_db()
    assert (task.status, task.attempts) == ("pending", 0)
    assert TaskAttempt.objects.get(pk=attempt.pk).status == AttemptStatus.LOST


def test_progress_is_stored_and_versioned_only_while_running(make_task):
    task = make_task()
    attempt = make_running(task)
    before = Task.objects.get(pk=task.pk).version
    assert services.attempt_progress(attempt=attempt, percent=40).progress == 40
    assert Task.objects.get(pk=task.pk).version == before + 1
    assert services.attempt_progress(attempt=attempt, percent=40) is None  # unchanged: no write, no event
    services.task_cancel(task_id=task.pk)
    assert services.attempt_progress(attempt=attempt, percent=60) is None


def test_a_timeout_fails_the_attempt_like_any_error(make_task, monkeypatch):
    from rq.timeouts import JobTimeoutException

    from tasks import task_types

    def too_slow(ctx):
        raise JobTimeoutException("Task exceeded maximum timeout value (60 seconds)")

    monkeypatch.setitem(task_types._registry, "always_succeeds",
                        task_types.TaskType("always_succeeds", too_slow, ""))
    task = make_task()
    assert run_next_attempt(task) == "failed"
    attempt = TaskAttempt.objects.get(task=task)
    assert attempt.error_type == "JobTimeoutException" and "timeout" in attempt.error_message


def test_events_carry_the_api_representation_and_version(make_task, monkeypatch):
    sent = []
    monkeypatch.setattr(realtime.publisher, "send", lambda messages: sent.extend(messages))
    task = make_task()
    run_next_attempt(task)
    updates = [event for group, event in sent if event["type"] == "task.updated" and group.startswith("user-")]
    assert [event["task"]["status"] for event in updates][0] == "pending"
    assert updates[-1]["task"]["status"] == "completed"
    versions = [event["task"]["version"] for event in updates]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert {group for group, _ in sent} >= {f"user-{task.owner_id}", "staff", f"task-{task.pk}"}
    assert updates[-1]["previous_status"] == "running"


def test_simulated_work_lasts_its_execution_time_whatever_the_bookkeeping(make_task, monkeypatch):
    """The steps sleep until their deadlines, so time spent writing progress is not added to the run."""
    import time as time_module

    from tasks import execution
    from tasks import services as services_module

    real_progress = services_module.attempt_progress
    monkeypatch.setattr(services_module, "attempt_progress",
                        lambda **kwargs: (time_module.sleep(0.2), real_progress(**kwargs))[1])  # a slow database
    slept = []
    real_sleep = execution.AttemptContext.sleep
    monkeypatch.setattr(execution.AttemptContext, "sleep",
                        lambda self, seconds: (slept.append(seconds), real_sleep(self, seconds))[1])
    task = make_task(task_type="always_succeeds", execution_time="1")
    assert run_next_attempt(task) == "succeeded"
    writes = Task.objects.get(pk=task.pk).version - 3  # created, running, completed; the rest were progress
    assert writes >= 1
    assert sum(slept) <= 1.0 - 0.2 * writes + 0.05  # each slow write was taken out of the following sleep


def test_a_finished_attempt_is_recorded_once_the_database_answers_again(make_task, monkeypatch):
    """PostgreSQL away for a moment when the handler finishes: the worker reconnects and records the success."""
    from django.db import OperationalError

    from tasks import execution

    real_succeed = services.attempt_succeed
    outages = iter([OperationalError("server closed the connection"), OperationalError("connection refused")])

    def flaky_database(**kwargs):
        failure = next(outages, None)
        if failure is not None:
            raise failure
        return real_succeed(**kwargs)

    monkeypatch.setattr(execution.services, "attempt_succeed", flaky_database)
    monkeypatch.setattr(execution, "OUTAGE_PAUSE", 0)
    task = make_task()
    assert run_next_attempt(task) == "succeeded"
    task.refresh_from_db()
    assert task.status == "completed" and task.attempts == 1
