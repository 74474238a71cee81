"""The state machine: every allowed transition works, every other one is refused and changes nothing."""

from itertools import product

import pytest
from django.db import IntegrityError, connection, transaction

from tasks import lifecycle
from tasks.models import Task, TaskStatus
from tests.support import race, winners

S = TaskStatus
ALLOWED = {
    (S.PENDING, S.RUNNING), (S.RUNNING, S.COMPLETED), (S.RUNNING, S.FAILED), (S.RUNNING, S.PENDING),
    (S.PENDING, S.CANCELLED), (S.RUNNING, S.CANCELLED), (S.FAILED, S.PENDING), (S.CANCELLED, S.PENDING),
}


def force_status(task, status):
    """Put a row in a given status for the test, bypassing the state machine on purpose."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tasks_task SET status = %s WHERE id = %s", [status, task.pk])


def test_the_table_is_exactly_the_documented_lifecycle():
    assert lifecycle.TRANSITIONS == ALLOWED


@pytest.mark.django_db
@pytest.mark.parametrize("source,target", sorted(product(S.values, S.values)))
def test_every_pair_is_allowed_or_refused(make_task, source, target):
    task = make_task()
    force_status(task, source)
    before = Task.objects.get(pk=task.pk)
    if (source, target) in ALLOWED:
        after = lifecycle.transition(task.pk, target)
        assert after.status == target
        assert after.version == before.version + 1
        assert after.updated_at >= before.updated_at
    else:
        with pytest.raises((lifecycle.InvalidTransition, ValueError)):
            lifecycle.transition(task.pk, target)
        after = Task.objects.get(pk=task.pk)
        assert (after.status, after.version, after.updated_at) == (before.status, before.version, before.updated_at)


@pytest.mark.django_db
def test_refusal_says_why(make_task):
    task = make_task()
    force_status(task, S.COMPLETED)
    with pytest.raises(lifecycle.InvalidTransition) as refused:
        lifecycle.transition(task.pk, S.RUNNING)
    assert "is completed" in str(refused.value) and "only from pending" in str(refused.value)
    assert refused.value.current == S.COMPLETED


@pytest.mark.django_db
def test_missing_task_is_refused():
    with pytest.raises(lifecycle.InvalidTransition, match="does not exist"):
        lifecycle.transition(999999, S.RUNNING)


@pytest.mark.django_db
def test_extra_conditions_guard_the_update(make_task):
    task = make_task()
    with pytest.raises(lifecycle.InvalidTransition, match="another worker or request won"):
        lifecycle.transition(task.pk, S.RUNNING, where={"last_attempt_number": 5})
    assert Task.objects.get(pk=task.pk).status == S.PENDING


@pytest.mark.django_db
def test_database_refuses_bad_values(make_task):
    task = make_task()
    for sql in ["UPDATE tasks_task SET status = 'exploded' WHERE id = %s",
                "UPDATE tasks_task SET progress = 101 WHERE id = %s",
                "UPDATE tasks_task SET attempts = max_attempts + 1 WHERE id = %s",
                "UPDATE tasks_task SET max_attempts = 11 WHERE id = %s"]:
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [task.pk])


@pytest.mark.django_db(transaction=True)
def test_racing_claims_have_exactly_one_winner(make_task):
    """Real concurrency on PostgreSQL: eight threads try pending -> running on one row at the same moment."""
    task = make_task()

    def claim():
        with transaction.atomic():
            return lifecycle.transition(task.pk, S.RUNNING, where={"last_attempt_number": 0})

    outcomes = race([claim] * 8)
    assert len(winners(outcomes)) == 1
    assert Task.objects.get(pk=task.pk).version == 2


def test_no_code_outside_lifecycle_writes_status():
    """STYLE habit 1, kept by reading the code: outside tasks/lifecycle.py nothing assigns `.status` or passes
    `status=` to a write (update/create) on Task rows."""
    import ast
    from pathlib import Path

    writes = {"update", "create", "bulk_create", "update_or_create", "get_or_create", "bulk_update"}
    offenders = []
    for path in Path("tasks").rglob("*.py"):
        if path.name == "lifecycle.py" or "migrations" in path.parts:
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets):
                    offenders.append(f"{path}:{node.lineno}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in writes:
                receiver = ast.get_source_segment(source, node.func.value) or ""
                on_task = "Task." in receiver or "Task(" in receiver or receiver.endswith("Task")
                if on_task and "TaskAttempt" not in receiver and any(k.arg == "status" for k in node.keywords):
                    offenders.append(f"{path}:{node.lineno}")
    assert offenders == []
