"""The management commands: success paths, bad arguments, refused transitions, and create_task --wait against a real
RQ worker process."""

import json
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tasks import queueing
from tasks.models import Task, TaskAttempt, TaskLog, TaskStatus
from tests.support import ROOT, child_env
from tests.task_states import make, set_times

S = TaskStatus


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def refused(*args):
    out = StringIO()
    with pytest.raises(CommandError) as error:
        call_command(*args, stdout=out, stderr=StringIO())
    return error.value, out.getvalue()


# --- create_task ------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_create_task_defaults_to_the_first_superuser(admin_user, user):
    output = run("create_task", "nightly report", "--type", "always_succeeds", "--time", "1.5", "--max-attempts", "2")
    task = Task.objects.get()
    assert (task.name, task.task_type, str(task.execution_time), task.max_attempts, task.owner) == (
        "nightly report", "always_succeeds", "1.500", 2, admin_user)
    assert task.status == S.PENDING
    assert f"Created task #{task.pk} 'nightly report' (always_succeeds, 1.5s, up to 2 attempts) for admin" in output


@pytest.mark.django_db
def test_create_task_for_an_owner(user):
    run("create_task", "mine", "--type", "flaky", "--time", "0", "--owner", "alice")
    assert Task.objects.get().owner == user


@pytest.mark.django_db
@pytest.mark.parametrize("args,message", [
    (["--type", "nope", "--time", "1"], "Unknown task type 'nope'. Valid types: always_fails, always_succeeds"),
    (["--type", "flaky", "--time", "-1"], "Execution time must be a number of seconds from 0 to 3600"),
    (["--type", "flaky", "--time", "soon"], "Execution time must be a number"),
    (["--type", "flaky", "--time", "1", "--max-attempts", "11"], "Max attempts must be a whole number from 1 to 10"),
    (["--type", "flaky", "--time", "1", "--max-attempts", "0"], "'0' must be at least 1"),
    (["--time", "1"], "the following arguments are required: --type"),
    (["--type", "flaky", "--time", "1", "--owner", "nobody"], "No user 'nobody'"),
])
def test_create_task_bad_arguments(admin_user, args, message):
    error, _ = refused("create_task", "x", *args)
    assert message in str(error)
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_create_task_without_any_superuser(user):
    error, _ = refused("create_task", "x", "--type", "flaky", "--time", "1")
    assert "No superuser exists" in str(error) and "--owner" in str(error)


@pytest.mark.django_db
def test_create_task_wait_gives_up_after_the_timeout(admin_user):
    # Inside a test transaction nothing is enqueued, so the task stays pending.
    error, output = refused("create_task", "stuck", "--type", "flaky", "--time", "0", "--wait", "--timeout", "0.5")
    assert error.returncode == 2
    assert "Gave up following task" in str(error) and "still pending" in str(error)
    assert "status pending" in output and "[info] Queued by admin." in output


def create_and_wait(database, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "create_task", *args, "--wait", "--timeout", "90"],
        cwd=ROOT, env=child_env(database), capture_output=True, text=True, timeout=150,
    )


def test_create_task_wait_follows_a_task_to_completion(worker, test_database_name, django_user_model):
    django_user_model.objects.create_superuser("root", password="root-password-123")
    worker()
    result = create_and_wait(test_database_name, "follow me", "--type", "always_succeeds", "--time", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    task = Task.objects.get()
    assert task.status == S.COMPLETED
    out = result.stdout
    lines = [
        f"Created task #{task.pk} 'follow me'", "status pending", "[info] Queued by root.",
        "status pending -> running (attempt 1 of 3)", "[info] attempt 1: Started attempt 1 of 3 on",
        "status running -> completed", "[info] attempt 1: Completed in",
        f"Task #{task.pk} completed after 1 of 3 attempts in",
    ]
    positions = [out.find(line) for line in lines]
    assert -1 not in positions, out
    assert positions == sorted(positions), out  # in the order they happened
    assert "progress " in out


def test_create_task_wait_exits_1_when_the_task_fails(worker, test_database_name, django_user_model):
    django_user_model.objects.create_superuser("root", password="root-password-123")
    worker()
    result = create_and_wait(test_database_name, "doomed", "--type", "always_fails", "--time", "0.2",
                             "--max-attempts", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    task = Task.objects.get()
    assert (task.status, task.attempts) == (S.FAILED, 2)
    out = result.stdout
    for line in ["status running -> pending",
                 "[warning] attempt 1: Attempt 1 failed: SimulatedFailure: this task type always fails. Retry in",
                 "status pending -> running (attempt 2 of 2)",
                 "status running -> failed",
                 "[error] attempt 2: Attempt 2 failed: SimulatedFailure: this task type always fails. Failed after "
                 "2 attempts."]:
        assert line in out, out
    assert f"CommandError: Task #{task.pk} failed after 2 of 2 attempts" in result.stderr


def test_create_task_wait_exits_1_when_the_task_is_cancelled(worker, test_database_name, django_user_model):
    from tasks import services
    from tests.support import wait_for

    django_user_model.objects.create_superuser("root", password="root-password-123")
    worker()
    follower = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "create_task", "long one", "--type", "always_succeeds",
         "--time", "60", "--wait", "--timeout", "90"],
        cwd=ROOT, env=child_env(test_database_name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        task = wait_for(lambda: Task.objects.filter(status=S.RUNNING).first(), timeout=60, message="a running task")
        services.task_cancel(task_id=task.pk)
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 1, out + err
    assert "-> cancelled" in out and "[warning] Cancelled." in out
    assert f"CommandError: Task #{task.pk} cancelled after 1 of 3 attempts" in err


# --- list_tasks, show_task ------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_list_tasks(user, other_user):
    done = make(user, S.COMPLETED, name="finished thing")
    failed = make(other_user, S.FAILED, name="broken thing", task_type="always_fails")
    pending = make(user, name="waiting thing")
    output = run("list_tasks")
    assert output.splitlines()[0].split() == ["ID", "STATUS", "TYPE", "ATTEMPTS", "PROGRESS", "OWNER", "CREATED",
                                              "DURATION", "NAME"]
    rows = output.splitlines()[1:]
    assert [int(row.split()[0]) for row in rows] == [pending.pk, failed.pk, done.pk]  # newest first
    assert "broken thing" in output and "bob" in output and "1/1" in output
    assert [r.split()[0] for r in run("list_tasks", "--status", "failed").splitlines()[1:]] == [str(failed.pk)]
    assert [r.split()[0] for r in run("list_tasks", "--type", "always_succeeds", "--limit", "1").splitlines()[1:]] \
        == [str(pending.pk)]
    data = json.loads(run("list_tasks", "--json", "--status", "completed"))
    assert [(item["id"], item["status"], item["owner"], item["name"]) for item in data] == [
        (done.pk, "completed", "alice", "finished thing")]
    assert run("list_tasks", "--status", "running") == "No tasks.\n"


@pytest.mark.django_db
@pytest.mark.parametrize("args,message", [
    (["--status", "done"], "invalid choice: 'done'"),
    (["--type", "nope"], "Unknown task type 'nope'"),
    (["--limit", "0"], "'0' must be at least 1"),
    (["--limit", "ten"], "'ten' is not a whole number"),
])
def test_list_tasks_bad_arguments(args, message):
    error, _ = refused("list_tasks", *args)
    assert message in str(error)


@pytest.mark.django_db
def test_show_task(user):
    task = make(user, S.FAILED, name="broken thing")
    output = run("show_task", str(task.pk))
    assert f"Task #{task.pk}: broken thing" in output
    for text in ("status          failed", "attempts        1 of 1 in this budget", "owner           alice",
                 "Attempts (1):", "testhost:1", "Boom: it broke", "[info] Queued by alice.",
                 "[info] attempt 1: working", "[error] attempt 1: Attempt 1 failed: Boom: it broke."):
        assert text in output, output
    assert f"Log ({TaskLog.objects.filter(task=task).count()} lines):" in output
    data = json.loads(run("show_task", str(task.pk), "--json"))
    assert data["status"] == "failed" and data["attempt_history"][0]["error_type"] == "Boom"
    assert [line["message"] for line in data["log"]][:2] == ["Queued by alice.", "Started attempt 1 of 1 on testhost:1."]


@pytest.mark.django_db
def test_show_task_missing_or_bad_id():
    assert "Task 424242 does not exist." in str(refused("show_task", "424242")[0])
    assert "invalid int value: 'abc'" in str(refused("show_task", "abc")[0])


# --- retry_task, cancel_task ----------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_retry_task(user):
    failed, cancelled = make(user, S.FAILED), make(user, S.CANCELLED)
    output = run("retry_task", str(failed.pk), str(cancelled.pk))
    assert f"Task #{failed.pk} retried: now pending." in output
    assert "2 tasks were retried." in output
    assert Task.objects.get(pk=failed.pk).status == S.PENDING
    assert TaskLog.objects.filter(task=failed, message__startswith="Retried by ", message__contains="(manage.py)")


@pytest.mark.django_db
def test_retry_task_refused_exits_non_zero(user):
    failed, done = make(user, S.FAILED), make(user, S.COMPLETED)
    error, output = refused("retry_task", str(failed.pk), str(done.pk), "999999")
    assert error.returncode == 1
    assert output.splitlines() == [
        f"Task #{failed.pk} retried: now pending.",
        f"Task #{done.pk} not retried: it was already completed.",
        "Task #999999 not retried: it does not exist.",
    ]
    assert str(error) == ("1 task was retried. 2 tasks were not retried: 1 task was already completed, "
                          "1 task does not exist.")
    assert Task.objects.get(pk=failed.pk).status == S.PENDING  # the others' refusal does not undo it
    assert Task.objects.get(pk=done.pk).status == S.COMPLETED


@pytest.mark.django_db
def test_cancel_task(user):
    pending, running, done = make(user), make(user, S.RUNNING), make(user, S.COMPLETED)
    error, output = refused("cancel_task", str(pending.pk), str(running.pk), str(done.pk))
    assert f"Task #{pending.pk} cancelled: now cancelled." in output
    assert f"Task #{done.pk} not cancelled: it was already completed." in output
    assert str(error) == "2 tasks were cancelled. 1 task was not cancelled: 1 task was already completed."
    assert Task.objects.get(pk=running.pk).status == S.CANCELLED
    assert TaskAttempt.objects.get(task=running).status == "cancelled"
    assert "1 task was cancelled." in run("cancel_task", str(make(user).pk))


@pytest.mark.django_db
def test_retry_and_cancel_need_ids():
    assert "the following arguments are required: ID" in str(refused("cancel_task")[0])
    assert "invalid int value" in str(refused("retry_task", "x")[0])


# --- prune_tasks -------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_prune_tasks(user):
    old = [make(user, S.COMPLETED), make(user, S.FAILED), make(user, S.CANCELLED)]
    for task in old:
        Task.objects.filter(pk=task.pk).update(finished_at=timezone.now() - timedelta(days=45))
    keep = make(user, S.COMPLETED)
    attempts = TaskAttempt.objects.filter(task__in=old).count()
    logs = TaskLog.objects.filter(task__in=old).count()

    output = run("prune_tasks", "--older-than", "30", "--dry-run")
    assert output.startswith(f"Dry run: would delete 3 tasks (completed, failed, cancelled) finished before ")
    assert f"with {attempts} attempts and {logs} log lines." in output
    assert Task.objects.count() == 4

    output = run("prune_tasks", "--older-than", "30", "--status", "failed", "--status", "cancelled",
                 "--batch-size", "1")
    assert "Deleted 2 tasks (failed, cancelled)" in output and "in 2 batches." in output
    output = run("prune_tasks", "--older-than", "30")
    assert "Deleted 1 task (completed, failed, cancelled)" in output
    assert list(Task.objects.values_list("pk", flat=True)) == [keep.pk]
    assert TaskLog.objects.exclude(task=keep).count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("args,message", [
    ([], "the following arguments are required: --older-than"),
    (["--older-than", "-1"], "'-1' must be a number of 0 or more"),
    (["--older-than", "7", "--status", "pending"], "invalid choice: 'pending'"),
    (["--older-than", "7", "--batch-size", "0"], "'0' must be at least 1"),
])
def test_prune_tasks_bad_arguments(args, message):
    assert message in str(refused("prune_tasks", *args)[0])


# --- task_stats ---------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_task_stats(user):
    for seconds in (1, 3):
        set_times(make(user, S.COMPLETED), started_ago=timedelta(hours=1), took=timedelta(seconds=seconds))
    make(user, S.FAILED, task_type="always_fails")
    set_times(make(user, S.FAILED), created_ago=timedelta(days=2))

    output = run("task_stats")
    assert "Tasks created from" in output and ": 3" in output.splitlines()[0]
    rows = {line.split()[0]: line.split() for line in output.splitlines()[2:]}
    assert rows["always_succeeds"] == ["always_succeeds", "0", "0", "2", "0", "0", "2", "100.0%", "2.00s", "2.90s"]
    assert rows["always_fails"] == ["always_fails", "0", "0", "0", "1", "0", "1", "0.0%", "-", "-"]
    assert rows["all"][1:8] == ["0", "0", "2", "1", "0", "3", "66.7%"]

    data = json.loads(run("task_stats", "--window", "3d", "--json"))
    assert data["total"] == 4 and data["counts"]["failed"] == 2 and data["success_rate"] == pytest.approx(0.5)
    assert data["mean_duration"] == pytest.approx(2.0)
    assert "Tasks created from" in run("task_stats", "--window", "90m")


@pytest.mark.django_db
def test_task_stats_bad_window():
    assert "'soon' is not a window: use e.g. 90m, 24h, 7d or 2w" in str(refused("task_stats", "--window", "soon")[0])
    assert "is not a window" in str(refused("task_stats", "--window", "0h")[0])


# --- recover_tasks --------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_recover_tasks_marks_silent_attempts_lost(user):
    task = make(user, S.RUNNING)
    TaskAttempt.objects.filter(task=task).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    output = run("recover_tasks", "--heartbeat-timeout", "60")
    assert output.splitlines() == [f"Running tasks with a late heartbeat, now shown as stale: #{task.pk}",
                                   f"Lost attempts marked lost (task retried or failed): #{task.pk}"]
    task.refresh_from_db()
    assert task.status == S.PENDING and task.next_retry_at is not None
    assert TaskAttempt.objects.get(task=task).status == "lost"
    assert "Lost attempts" not in run("recover_tasks")  # recovered once only


@pytest.mark.django_db
def test_recover_tasks_with_nothing_to_do(user):
    make(user, S.COMPLETED)
    assert run("recover_tasks") == "Nothing to recover.\n"


@pytest.mark.django_db
def test_recover_tasks_reenqueues_a_task_redis_lost(user, redis_conn):
    task = make(user)  # in a test transaction the enqueue never ran: Redis has no job for it
    Task.objects.filter(pk=task.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    output = run("recover_tasks")
    assert output == f"Pending tasks with no job in Redis, enqueued again: #{task.pk}\n"
    assert redis_conn.exists(f"rq:job:{queueing.job_id(task.pk, 1)}")


@pytest.mark.django_db
def test_recover_tasks_bad_argument():
    assert "must be a number of 0 or more" in str(refused("recover_tasks", "--heartbeat-timeout", "-5")[0])
