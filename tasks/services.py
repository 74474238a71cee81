"""Everything that changes tasks: the rules, the transactions, and the side effects fired on commit.

Pages, the API, admin actions, management commands and RQ jobs all call these functions. Each one owns its
transaction, changes status only through lifecycle.transition(), and registers side effects (enqueue the next
attempt, publish an event) with transaction.on_commit, so nothing is announced that did not commit.
"""

from __future__ import annotations

import random
import traceback as traceback_module
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from functools import partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import lifecycle, queueing, realtime, task_types
from .models import AttemptStatus, LogLevel, Task, TaskAttempt, TaskLog, TaskStatus

S = TaskStatus


# --- Validation --------------------------------------------------------------------------------------------------------

def validate_task_input(*, name, task_type: str, execution_time, max_attempts) -> dict[str, list[str]]:
    """The rules for a new task, shared by every interface. Returns field -> messages (empty when valid)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["A name is required."]
    elif len(name.strip()) > 200:
        errors["name"] = ["A name has at most 200 characters."]
    if task_type not in task_types.names():
        errors["task_type"] = [f"Unknown task type {task_type!r}. Valid types: {', '.join(task_types.names())}."]
    maximum = settings.TASKRUNNER_MAX_EXECUTION_TIME
    try:
        seconds = Decimal(str(execution_time))
        if not seconds.is_finite() or not 0 <= seconds <= maximum:
            raise InvalidOperation
        if seconds.as_tuple().exponent < -3:
            errors["execution_time"] = ["Execution time has at most 3 decimal places."]
    except (InvalidOperation, ValueError, TypeError):
        errors["execution_time"] = [f"Execution time must be a number of seconds from 0 to {maximum}."]
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= 10
    ):
        errors["max_attempts"] = ["Max attempts must be a whole number from 1 to 10."]
    return errors


# --- What a person does -------------------------------------------------------------------------------------------------

def task_create(*, owner, name: str, task_type: str, execution_time, max_attempts: int | None = None) -> Task:
    """Create a pending task; its first attempt is enqueued once the row has committed."""
    errors = validate_task_input(name=name, task_type=task_type, execution_time=execution_time,
                                 max_attempts=max_attempts)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        task = Task.objects.create(
            owner=owner,
            name=name.strip(),
            task_type=task_type,
            execution_time=Decimal(str(execution_time)),
            max_attempts=max_attempts or settings.TASKRUNNER_DEFAULT_MAX_ATTEMPTS,
        )
        _log(task.pk, f"Queued by {owner.get_username()}.")
        _schedule_attempt(task, task.last_attempt_number + 1)
        _announce(task)
    return task


def task_cancel(*, task_id: int, actor=None, expected_version: int | None = None) -> Task:
    """Stop a pending or running task. A running handler stops at its next cancellation check.

    With `expected_version`, cancel only if the task is still exactly as the person saw it (optimistic concurrency).
    """
    with transaction.atomic():
        previous = _status_for_update(task_id)
        task = lifecycle.transition(
            task_id, S.CANCELLED, where=_version_guard(expected_version),
            changes={"finished_at": timezone.now(), "next_retry_at": None},
        )
        now = timezone.now()
        _close_attempts(TaskAttempt.objects.running().filter(task_id=task_id), AttemptStatus.CANCELLED, now)
        _log(task_id, f"Cancelled{_by(actor)}.", level=LogLevel.WARNING)
        _announce(task, previous)
    return task


def task_retry(*, task_id: int, actor=None, expected_version: int | None = None) -> Task:
    """Give a failed or cancelled task a fresh budget of max_attempts; its history stays."""
    with transaction.atomic():
        previous = _status_for_update(task_id)
        task = lifecycle.transition(
            task_id, S.PENDING, sources=lifecycle.RETRYABLE, where=_version_guard(expected_version),
            changes={"attempts": 0, "progress": 0, "started_at": None, "finished_at": None, "next_retry_at": None},
        )
        _log(task_id, f"Retried{_by(actor)}: a fresh budget of {task.max_attempts} attempts.")
        _schedule_attempt(task, task.last_attempt_number + 1)
        _announce(task, previous)
    return task


# --- What a worker does ---------------------------------------------------------------------------------------------------

def attempt_start(*, task_id: int, number: int, worker_name: str = "", worker_pid: int | None = None):
    """Claim attempt `number` of a pending task. Returns the TaskAttempt, or None for a duplicate or late job."""
    now = timezone.now()
    try:
        with transaction.atomic():
            task = lifecycle.transition(
                task_id, S.RUNNING,
                where={"last_attempt_number": number - 1, "attempts__lt": F("max_attempts")},
                changes={"attempts": F("attempts") + 1, "last_attempt_number": number, "progress": 0,
                         "next_retry_at": None, "started_at": _coalesce_now("started_at", now)},
            )
            attempt = TaskAttempt.objects.create(task=task, number=number, started_at=now, heartbeat_at=now,
                                                 worker_name=worker_name[:200], worker_pid=worker_pid)
            _log(task_id, f"Started attempt {task.attempts} of {task.max_attempts}"
                          f"{f' on {worker_name}' if worker_name else ''}.", attempt=attempt)
            _announce(task, S.PENDING)
    except lifecycle.InvalidTransition as refused:
        if refused.current is not None:
            _log(task_id, f"Ignored a duplicate or late job for attempt {number}: {refused}",
                 level=LogLevel.DEBUG)
        return None
    attempt.task = task
    return attempt


def attempt_succeed(*, attempt: TaskAttempt) -> Task | None:
    """Record a successful attempt; the task is completed. None if the attempt was no longer current."""
    now = timezone.now()
    with transaction.atomic():
        try:
            task = lifecycle.transition(
                attempt.task_id, S.COMPLETED, where={"last_attempt_number": attempt.number},
                changes={"finished_at": now, "progress": 100}, owner=_known_owner(attempt),
            )
        except lifecycle.InvalidTransition as refused:
            _log(attempt.task_id, f"Attempt {attempt.number} finished, but the task had moved on; result "
                                  f"discarded. ({refused})", level=LogLevel.WARNING, attempt=attempt)
            return None
        _close_attempt(attempt, AttemptStatus.SUCCEEDED, now)
        _log(task.pk, f"Completed in {_seconds(now - attempt.started_at)}.", attempt=attempt)
        _announce(task, S.RUNNING)
    return task


def attempt_fail(*, attempt: TaskAttempt, error_type: str, message: str, traceback: str = "",
                 status: str = AttemptStatus.FAILED) -> Task | None:
    """Record a failed (or lost) attempt: retry after a backoff while attempts remain, else the task fails."""
    now = timezone.now()
    with transaction.atomic():
        current = Task.objects.select_for_update().filter(
            pk=attempt.task_id, last_attempt_number=attempt.number
        ).running().values("attempts", "max_attempts").first()
        if current is None:
            # The task moved on (cancelled, or this attempt was already recovered): only close the attempt row.
            _close_attempt(attempt, status, now, error_type=error_type[:200], error_message=message,
                           traceback=traceback)
            _log(attempt.task_id, f"Attempt {attempt.number} ended ({error_type}), but the task had moved on; "
                                  f"nothing else to do.", level=LogLevel.DEBUG, attempt=attempt)
            return None
        reason = f"{error_type}: {message}" if message else error_type
        verb = "was lost" if status == AttemptStatus.LOST else "failed"
        if current["attempts"] < current["max_attempts"]:
            delay = retry_delay(current["attempts"])
            task = lifecycle.transition(
                attempt.task_id, S.PENDING, sources=[S.RUNNING], where={"last_attempt_number": attempt.number},
                changes={"next_retry_at": now + timedelta(seconds=delay)}, owner=_known_owner(attempt),
            )
            _log(task.pk, f"Attempt {current['attempts']} {verb}: {reason}. Retry in {delay:.1f}s.",
                 level=LogLevel.WARNING, attempt=attempt)
        else:
            task = lifecycle.transition(
                attempt.task_id, S.FAILED, where={"last_attempt_number": attempt.number},
                changes={"finished_at": now}, owner=_known_owner(attempt),
            )
            _log(task.pk, f"Attempt {current['attempts']} {verb}: {reason}. Failed after "
                          f"{current['attempts']} attempts.", level=LogLevel.ERROR, attempt=attempt)
        _close_attempt(attempt, status, now, error_type=error_type[:200], error_message=message,
                       traceback=traceback)
        _announce(task, S.RUNNING)
    return task


def attempt_fail_from_exception(*, attempt: TaskAttempt, exc: BaseException) -> Task | None:
    return attempt_fail(
        attempt=attempt, error_type=type(exc).__name__, message=str(exc),
        traceback="".join(traceback_module.format_exception(exc)),
    )


def attempt_stop_cancelled(*, attempt: TaskAttempt) -> None:
    """The handler noticed the cancellation and stopped; the attempt row was closed by task_cancel already."""
    _log(attempt.task_id, f"Attempt {attempt.number} stopped after the task was cancelled.",
         level=LogLevel.WARNING, attempt=attempt)


def attempt_give_back(*, attempt: TaskAttempt, reason: str) -> Task | None:
    """The worker is shutting down mid-attempt: close the attempt as lost and put the task back in the queue at once,
    without spending one of its attempts."""
    now = timezone.now()
    with transaction.atomic():
        try:
            task = lifecycle.transition(
                attempt.task_id, S.PENDING, sources=[S.RUNNING], where={"last_attempt_number": attempt.number},
                changes={"attempts": F("attempts") - 1, "next_retry_at": now}, owner=_known_owner(attempt),
            )
        except lifecycle.InvalidTransition:
            return None
        _close_attempt(attempt, AttemptStatus.LOST, now, error_type="WorkerShutdown", error_message=reason)
        _log(task.pk, f"Attempt {attempt.number} given back: {reason}. It does not count against the budget.",
             level=LogLevel.WARNING, attempt=attempt)
        _announce(task, S.RUNNING)
    return task


def attempt_progress(*, attempt: TaskAttempt, percent: int) -> Task | None:
    """Store the running attempt's progress (callers coalesce: a few writes a second at most)."""
    percent = max(0, min(100, int(percent)))
    with transaction.atomic():
        updated = Task.objects.running().filter(
            pk=attempt.task_id, last_attempt_number=attempt.number
        ).exclude(progress=percent).update(progress=percent, version=F("version") + 1, updated_at=timezone.now())
        if not updated:
            return None
        task = Task.objects.select_related("owner").get(pk=attempt.task_id)
        _announce(task)
    return task


def attempt_heartbeat(*, attempt: TaskAttempt) -> str | None:
    """Mark the attempt alive. Returns the task's status, or None if the attempt is no longer running."""
    updated = TaskAttempt.objects.running().filter(pk=attempt.pk).update(
        heartbeat_at=timezone.now()
    )
    if not updated:
        return None
    return Task.objects.filter(pk=attempt.task_id).values_list("status", flat=True).first()


def task_is_cancelled(*, task_id: int) -> bool:
    return Task.objects.filter(pk=task_id, status__in=[S.CANCELLED]).exists()


def task_log(*, task_id: int, message: str, level: str = LogLevel.INFO, attempt: TaskAttempt | None = None) -> None:
    """Append a log line written by a handler; it is published as soon as it commits."""
    if level not in LogLevel.values:
        level = LogLevel.INFO
    with transaction.atomic():
        _log(task_id, str(message), level=level, attempt=attempt)


def retry_delay(failed_attempts: int) -> float:
    """Exponential backoff with jitter, in seconds, after `failed_attempts` failures in the current budget."""
    base = settings.TASKRUNNER_RETRY_BACKOFF_BASE * (2 ** max(0, failed_attempts - 1))
    capped = min(base, settings.TASKRUNNER_RETRY_BACKOFF_MAX)
    jitter = settings.TASKRUNNER_RETRY_JITTER
    return max(0.0, capped * random.uniform(1 - jitter, 1 + jitter))  # nosec B311: scheduling, not security


# --- Helpers ---------------------------------------------------------------------------------------------------------------

def _log(task_id: int, message: str, *, level: str = LogLevel.INFO, attempt: TaskAttempt | None = None) -> TaskLog:
    log = TaskLog.objects.create(task_id=task_id, attempt=attempt, level=level, message=message)
    transaction.on_commit(partial(realtime.task_logged, log))
    return log


def _announce(task: Task, previous_status: str | None = None) -> None:
    transaction.on_commit(partial(realtime.task_updated, task, previous_status))


def _schedule_attempt(task: Task, number: int) -> None:
    transaction.on_commit(partial(queueing.enqueue_attempt, task.pk, number, task.execution_time))


def _close_attempt(attempt: TaskAttempt, outcome: str, now, **fields) -> None:
    _close_attempts(TaskAttempt.objects.running().filter(pk=attempt.pk), outcome, now, **fields)


def _close_attempts(running, outcome: str, now, **fields) -> None:
    """End running attempt rows with `outcome` (attempt status is not task status: lifecycle does not own it)."""
    running.update(status=outcome, finished_at=now, duration=now - F("started_at"), **fields)


def _coalesce_now(field: str, now):
    return Coalesce(F(field), Value(now, output_field=DateTimeField()))


def _status_for_update(task_id: int) -> str | None:
    """The task's status, with its row locked until the transaction ends: the event's previous_status is exact."""
    return Task.objects.select_for_update().filter(pk=task_id).values_list("status", flat=True).first()


def _known_owner(attempt: TaskAttempt):
    """The task's owner if this attempt object already carries it (no query), else None."""
    task = attempt._state.fields_cache.get("task")
    return task._state.fields_cache.get("owner") if task is not None else None


def _version_guard(expected_version: int | None) -> dict:
    return {} if expected_version is None else {"version": expected_version}


def _by(actor) -> str:
    return f" by {actor.get_username()}" if actor is not None else ""


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.2f}s"
