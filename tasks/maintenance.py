"""Operator services: retry or cancel many tasks at once with a reason for each refusal, and prune old history.

The admin actions and the management commands call these, so both report refusals in the same words. Each task is
still changed by its own services.task_retry / services.task_cancel call (its own transaction, its own events): one
refused task never rolls back the others.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable

from django.db import transaction
from django.utils import timezone

from . import lifecycle, services
from .models import Task, TaskAttempt, TaskLog, TaskStatus

FINISHED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


# --- Many tasks at once -----------------------------------------------------------------------------------------------

@dataclass
class BulkOutcome:
    """What happened to each task of a bulk retry or cancel."""

    verb: str  # "retried" / "cancelled"
    changed: list[Task] = field(default_factory=list)
    refused: list[lifecycle.InvalidTransition] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused

    def refusal_summary(self) -> str:
        """E.g. "2 tasks were already completed, 1 task does not exist"."""
        counts = Counter(_refusal_reason(refused) for refused in self.refused)
        return ", ".join(_refusal_phrase(reason, count)
                         for reason, count in sorted(counts.items(), key=lambda item: (-item[1], _KINDS.index(item[0][0]), item[0][1] or "")))

    def changed_sentence(self) -> str:
        """E.g. "3 tasks were retried." """
        return f"{_tasks(len(self.changed))} {_was(len(self.changed))} {self.verb}."

    def refused_sentence(self) -> str:
        """E.g. "2 tasks were not retried: 2 tasks were already completed." (empty if none was refused)"""
        if not self.refused:
            return ""
        return f"{_tasks(len(self.refused))} {_was(len(self.refused))} not {self.verb}: {self.refusal_summary()}."

    def summary(self) -> str:
        return " ".join(filter(None, [self.changed_sentence(), self.refused_sentence()]))


def tasks_retry(*, task_ids: Iterable[int], actor=None) -> BulkOutcome:
    """Retry each task (services.task_retry); refusals are collected, not raised."""
    return _apply(services.task_retry, task_ids, actor, BulkOutcome("retried"))


def tasks_cancel(*, task_ids: Iterable[int], actor=None) -> BulkOutcome:
    """Cancel each task (services.task_cancel); refusals are collected, not raised."""
    return _apply(services.task_cancel, task_ids, actor, BulkOutcome("cancelled"))


def refusal_reason(refused: lifecycle.InvalidTransition) -> str:
    """Why one task was refused, in a few words: "was already completed", "does not exist" ..."""
    return _refusal_phrase(_refusal_reason(refused), 1).split(" ", 2)[2]


def _apply(service: Callable[..., Task], task_ids: Iterable[int], actor, outcome: BulkOutcome) -> BulkOutcome:
    for task_id in dict.fromkeys(task_ids):  # once each, in the given order
        try:
            outcome.changed.append(service(task_id=task_id, actor=actor))
        except lifecycle.InvalidTransition as refused:
            outcome.refused.append(refused)
    return outcome


_KINDS = ["already", "still", "raced", "missing"]  # the order reasons of equal counts are listed in


def _refusal_reason(refused: lifecycle.InvalidTransition) -> tuple[str, str | None]:
    if refused.current is None:
        return ("missing", None)
    if refused.current in refused.sources:  # it was allowed, but another writer changed it first
        return ("raced", None)
    return ("already" if refused.current in FINISHED else "still", refused.current)


def _refusal_phrase(reason: tuple[str, str | None], count: int) -> str:
    kind, status = reason
    if kind == "missing":
        return f"{_tasks(count)} {'does' if count == 1 else 'do'} not exist"
    if kind == "raced":
        return f"{_tasks(count)} changed meanwhile (another request or worker was first)"
    return f"{_tasks(count)} {_was(count)} {kind} {status}"


def _tasks(count: int) -> str:
    return f"{count} task{'' if count == 1 else 's'}"


def _was(count: int) -> str:
    return "was" if count == 1 else "were"


# --- Pruning ----------------------------------------------------------------------------------------------------------

@dataclass
class PruneResult:
    cutoff: datetime
    statuses: tuple[str, ...]
    dry_run: bool
    tasks: int = 0
    attempts: int = 0
    logs: int = 0
    batches: int = 0


def task_prune(*, older_than: timedelta, statuses: Iterable[str] | None = None, dry_run: bool = False,
               batch_size: int = 1000, now: datetime | None = None) -> PruneResult:
    """Delete finished tasks whose finished_at is older than `older_than`, with their attempts and logs.

    Works in batches of `batch_size` tasks, one short transaction each, so a prune of millions of rows never holds
    long locks. Each batch locks its rows first (FOR UPDATE SKIP LOCKED) and deletes only rows still finished: a task
    that a person retries at the same moment is either retried or deleted, never deleted while pending. With
    `dry_run`, nothing is deleted and the counts say what would be (three queries).
    """
    statuses = tuple(FINISHED if statuses is None else dict.fromkeys(statuses))
    unknown = [status for status in statuses if status not in FINISHED]
    if unknown or not statuses:
        raise ValueError(f"Only finished tasks can be pruned (statuses {', '.join(FINISHED)}); got "
                         f"{', '.join(unknown) or 'none'}.")
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative.")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    cutoff = (now or timezone.now()) - older_than
    result = PruneResult(cutoff=cutoff, statuses=statuses, dry_run=dry_run)
    candidates = Task.objects.filter(status__in=statuses, finished_at__lt=cutoff).order_by()

    if dry_run:
        result.tasks = candidates.count()
        result.attempts = TaskAttempt.objects.filter(task__in=candidates).count()
        result.logs = TaskLog.objects.filter(task__in=candidates).count()
        return result

    while True:
        with transaction.atomic():
            ids = list(candidates.select_for_update(skip_locked=True).values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            # Django's cascade: the logs, then the attempts, then the tasks, counted per model.
            _, deleted = Task.objects.filter(pk__in=ids).delete()
        result.batches += 1
        result.tasks += deleted.get(Task._meta.label, 0)
        result.attempts += deleted.get(TaskAttempt._meta.label, 0)
        result.logs += deleted.get(TaskLog._meta.label, 0)
        if len(ids) < batch_size:
            break
    return result
