"""manage.py create_task NAME --type TYPE --time SECONDS [--max-attempts N] [--owner USER] [--wait]"""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from tasks import selectors, services, task_types
from tasks.models import TaskStatus

from ._common import OPERATOR, non_negative_float, positive_int


class Command(BaseCommand):
    help = ("Create a task, as the dashboard and the API do (it is queued for the workers). With --wait, follow it "
            "live until it ends: exit status 0 if it completed, 1 if it failed or was cancelled.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="The task's name (1 to 200 characters).")
        parser.add_argument("--type", dest="task_type", required=True, metavar="TYPE",
                            help=f"The task type: {', '.join(task_types.names())}.")
        parser.add_argument("--time", dest="execution_time", required=True, metavar="SECONDS",
                            help="Execution time in seconds (up to 3 decimals).")
        parser.add_argument("--max-attempts", type=positive_int, metavar="N", help="1 to 10 (default 3).")
        parser.add_argument("--owner", metavar="USER", help="Username of the owner (default: the first superuser).")
        parser.add_argument("--wait", action="store_true", help="Follow the task until it ends.")
        parser.add_argument("--timeout", type=non_negative_float, metavar="SECONDS",
                            help="With --wait: stop following after this long (exit status 2).")
        parser.add_argument("--interval", type=non_negative_float, default=0.2, metavar="SECONDS",
                            help="With --wait: how often to look for changes (default 0.2).")

    def handle(self, *args, name, task_type, execution_time, max_attempts, owner, wait, timeout, interval,
               **options):
        user = self.owner(owner)
        try:
            task = services.task_create(owner=user, name=name, task_type=task_type, execution_time=execution_time,
                                        max_attempts=max_attempts)
        except ValidationError as invalid:
            problems = [message for messages in invalid.message_dict.values() for message in messages]
            raise CommandError(" ".join(problems)) from invalid
        self.stdout.write(f"Created task #{task.pk} {task.name!r} ({task.task_type}, {task.execution_time}s, up to "
                          f"{task.max_attempts} attempts) for {user.get_username()}: {task.status}.")
        if wait:
            self.follow(task, timeout=timeout, interval=interval)

    def owner(self, username: str | None):
        User = get_user_model()
        if username:
            try:
                return User._default_manager.get_by_natural_key(username)
            except User.DoesNotExist:
                raise CommandError(f"No user {username!r}: pass an existing username to --owner.") from None
        user = User._default_manager.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            raise CommandError("No superuser exists to own the task: pass --owner USER, or create one with "
                               "`manage.py createsuperuser`.")
        return user

    def follow(self, task, *, timeout: float | None, interval: float) -> None:
        """Poll the selectors every `interval` seconds and print each status change and log line once, in order.

        Each poll reads the task and its new log lines in one snapshot, so a status change and the log line written
        with it are seen together. Polling can miss a change undone between two polls (running -> pending ->
        running when a retry is due at once); the new attempt number still shows, and the log lines tell the rest.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        status, attempt, last_log_id, progress, progress_at = task.status, task.last_attempt_number, 0, None, 0.0
        self.say(f"status {status}", at=task.updated_at)
        try:
            while True:
                current, logs = self.poll(task.pk, last_log_id)
                if current is None:
                    raise CommandError(f"Task #{task.pk} was deleted while it was followed.")
                lines = [(log.created_at, 1, self.describe_log(log)) for log in logs]
                if (current.status, current.last_attempt_number) != (status, attempt):
                    lines.append((self.changed_at(current), 0, self.describe_status(current, status)))
                    status, attempt = current.status, current.last_attempt_number
                for at, _, line in sorted(lines, key=lambda line: line[:2]):
                    self.say(line, at=at)
                last_log_id = logs[-1].pk if logs else last_log_id
                if current.status == TaskStatus.RUNNING and current.progress != progress and (
                        time.monotonic() - progress_at >= 1 or current.progress == 100):
                    progress, progress_at = current.progress, time.monotonic()
                    self.say(f"progress {progress}%")
                if current.is_finished:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise CommandError(f"Gave up following task #{task.pk} after {timeout}s; it is still "
                                       f"{current.status} and keeps going.", returncode=2)
                time.sleep(interval)
        except KeyboardInterrupt:
            raise CommandError(f"Stopped following task #{task.pk}; it keeps going. Cancel it with "
                               f"`manage.py cancel_task {task.pk}`.", returncode=130) from None
        summary = (f"Task #{current.pk} {current.status} after {current.attempts} of {current.max_attempts} "
                   f"attempts" + (f" in {current.duration.total_seconds():.2f}s." if current.duration else "."))
        if current.status != TaskStatus.COMPLETED:
            raise CommandError(summary, returncode=1)
        self.stdout.write(self.style.SUCCESS(summary))

    @staticmethod
    def poll(task_id: int, after_id: int):
        """The task (with its attempts) and its log lines after `after_id`, read in one REPEATABLE READ snapshot."""
        outermost = not connection.in_atomic_block  # (inside a caller's transaction, its snapshot rules)
        with transaction.atomic():
            if outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            current = selectors.task_get(user=OPERATOR, task_id=task_id)
            logs = list(selectors.task_logs(task=current, after_id=after_id)) if current else []
        return current, logs

    @staticmethod
    def changed_at(task):
        """When the task's current status began: the times the services write with each transition, which precede
        the log line written in the same transaction (updated_at may be a later progress write)."""
        attempts = list(task.attempt_rows.all())
        if task.finished_at:
            return task.finished_at
        if attempts and task.status == TaskStatus.RUNNING:
            return attempts[-1].started_at
        if attempts and task.status == TaskStatus.PENDING and attempts[-1].finished_at:
            return attempts[-1].finished_at
        return task.updated_at

    @staticmethod
    def describe_log(log) -> str:
        which = f" attempt {log.attempt_number}:" if log.attempt_id else ""
        return f"[{log.level}]{which} {log.message}"

    @staticmethod
    def describe_status(task, previous: str) -> str:
        change = f"status {task.status}" if previous == task.status else f"status {previous} -> {task.status}"
        if task.status == TaskStatus.RUNNING:
            change += f" (attempt {task.attempts} of {task.max_attempts})"
        elif task.status == TaskStatus.PENDING and task.next_retry_at:
            seconds = max(0.0, (task.next_retry_at - task.updated_at).total_seconds())
            change += f" (retry in {seconds:.1f}s)"
        return change

    def say(self, message: str, at=None) -> None:
        stamp = timezone.localtime(at or timezone.now()).strftime("%H:%M:%S.%f")[:-3]
        self.stdout.write(f"{stamp}  {message}")
        self.stdout.flush()
