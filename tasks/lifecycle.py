"""The task state machine, and the only code that writes Task.status.

Every status change is one conditional UPDATE: `UPDATE task SET status = <to>, version = version + 1, ... WHERE id =
<id> AND status IN (<allowed sources>) [AND <extra conditions>]`. PostgreSQL re-checks the WHERE clause after waiting
for a concurrent writer's row lock, so two workers or two requests racing for the same transition cannot both win:
the loser updates zero rows and gets InvalidTransition. There is no read-modify-write anywhere.
"""

from __future__ import annotations

from typing import Any, Iterable

from django.db import connections
from django.db.models import F
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from .models import Task, TaskStatus

S = TaskStatus

#: target status -> statuses it may be reached from.
ALLOWED_SOURCES: dict[str, frozenset[str]] = {
    S.RUNNING: frozenset({S.PENDING}),
    S.COMPLETED: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.RUNNING}),
    # running -> pending schedules a retry; failed/cancelled -> pending is a person's retry with a fresh budget.
    S.PENDING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED}),
    S.CANCELLED: frozenset({S.PENDING, S.RUNNING}),
}

TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    (source, target) for target, sources in ALLOWED_SOURCES.items() for source in sources
)

CANCELLABLE = ALLOWED_SOURCES[S.CANCELLED]
RETRYABLE = frozenset({S.FAILED, S.CANCELLED})


class InvalidTransition(Exception):
    """The task was not in a status the transition allows (or lost a race to another writer). Nothing changed."""

    def __init__(self, task_id: int, target: str, current: str | None, sources: Iterable[str]):
        self.task_id = task_id
        self.target = target
        self.current = current
        self.sources = frozenset(sources)
        if current is None:
            message = f"Task {task_id} does not exist."
        elif current in self.sources:
            message = f"Task {task_id} changed before it could become {target} (another worker or request won)."
        else:
            allowed = ", ".join(sorted(self.sources)) or "no status"
            message = f"Task {task_id} is {current}; it can become {target} only from {allowed}."
        super().__init__(message)


def is_allowed(source: str, target: str) -> bool:
    return (source, target) in TRANSITIONS


def transition(
    task_id: int,
    to: str,
    *,
    sources: Iterable[str] | None = None,
    where: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
    owner=None,
) -> Task:
    """Move task `task_id` to status `to` if it is in one of `sources` (default: every allowed source).

    `where` adds conditions to the UPDATE (e.g. the attempt number a worker claims), `changes` sets more columns in the
    same statement. Returns the row as this UPDATE wrote it (`RETURNING`, no second read); `owner`, when the caller
    has it, is attached so that serializing the task needs no query. Raises InvalidTransition if no row matched.
    """
    allowed = ALLOWED_SOURCES.get(to)
    if allowed is None:
        raise ValueError(f"{to!r} is not a status a task can move to.")
    sources = allowed if sources is None else frozenset(sources) & allowed
    assignments = {"status": to, "version": F("version") + 1, "updated_at": timezone.now(), **(changes or {})}
    task = _update_returning(Task.objects.filter(pk=task_id, status__in=sources, **(where or {})), assignments)
    if task is None:
        current = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
        raise InvalidTransition(task_id, to, current, sources)
    if owner is not None:
        task.owner = owner
    return task


def _update_returning(queryset, assignments: dict[str, Any]) -> Task | None:
    """`queryset.update(**assignments)` for one row, returning the new row (PostgreSQL's UPDATE ... RETURNING)."""
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(assignments)
    sql, params = query.get_compiler(queryset.db).as_sql()
    fields = Task._meta.concrete_fields
    quote = connections[queryset.db].ops.quote_name
    returning = ", ".join(f"{quote(Task._meta.db_table)}.{quote(f.column)}" for f in fields)
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {returning}", params)
        row = cursor.fetchone()
    return None if row is None else Task.from_db(queryset.db, [f.attname for f in fields], row)
