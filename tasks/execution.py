"""Running one attempt inside a worker: claim, run the handler outside any transaction, finish.

The handler gets an AttemptContext. A heartbeat thread marks the attempt alive every few seconds (the sweeper in
tasks.recovery treats a silent attempt as lost) and notices cancellation, so a cancelled task stops at the handler's
next check even between its own database calls.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from . import services, task_types
from .models import TaskAttempt
from .task_types import TaskCancelled

logger = logging.getLogger(__name__)


def worker_identity() -> tuple[str, int]:
    return f"{socket.gethostname()}:{os.getpid()}", os.getpid()


class AttemptContext:
    """What a handler sees: log(), progress(), is_cancelled()/check_cancelled(), sleep()."""

    def __init__(self, attempt: TaskAttempt):
        task = attempt.task
        self.attempt = attempt
        self.task_id = task.pk
        self.attempt_number = attempt.number
        self.attempt_in_budget = task.attempts
        self.execution_time = float(task.execution_time)
        self.cancelled = threading.Event()
        self._progress_interval = settings.TASKRUNNER_PROGRESS_INTERVAL
        self._last_progress_write = 0.0
        self._pending_progress: int | None = None
        self._last_cancel_check = time.monotonic()  # the claim has just seen the task running

    def log(self, message: str, level: str = "info") -> None:
        services.task_log(task_id=self.task_id, message=message, level=level, attempt=self.attempt)

    def progress(self, percent: int) -> None:
        """Coalesced: at most one write (and one event) per TASKRUNNER_PROGRESS_INTERVAL; the last value wins."""
        self._pending_progress = percent
        now = time.monotonic()
        if now - self._last_progress_write >= self._progress_interval:
            self.flush_progress(now)

    def flush_progress(self, now: float | None = None) -> None:
        if self._pending_progress is None:
            return
        percent, self._pending_progress = self._pending_progress, None
        self._last_progress_write = now or time.monotonic()
        services.attempt_progress(attempt=self.attempt, percent=percent)

    def is_cancelled(self) -> bool:
        # The heartbeat notices cancellation too; a direct check (at most twice a second) makes it prompt.
        now = time.monotonic()
        if not self.cancelled.is_set() and now - self._last_cancel_check >= 0.5:
            self._last_cancel_check = now
            if services.task_is_cancelled(task_id=self.task_id):
                self.cancelled.set()
        return self.cancelled.is_set()

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once if the task is cancelled meanwhile."""
        self.cancelled.wait(seconds)


class Heartbeats:
    """Marks the attempt in progress alive every TASKRUNNER_HEARTBEAT_INTERVAL seconds, from one thread per process.

    One long-lived thread rather than one per attempt: starting a thread cost about a tenth of a zero-duration task.
    A beat that finds the attempt no longer running (cancelled, or recovered elsewhere) tells the handler to stop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: AttemptContext | None = None
        self._pid: int | None = None

    def watch(self, ctx: AttemptContext) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first attempt in this process (or in a freshly forked horse)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="heartbeats", daemon=True).start()
            self._current = ctx

    def unwatch(self) -> None:
        with self._lock:
            self._current = None

    def _run(self) -> None:
        interval = settings.TASKRUNNER_HEARTBEAT_INTERVAL
        while True:
            time.sleep(interval)
            with self._lock:
                ctx = self._current
            if ctx is None:
                continue
            try:
                status = services.attempt_heartbeat(attempt=ctx.attempt)
            except Exception as exc:  # database briefly unreachable: try again next beat
                logger.warning("Heartbeat for task %s failed: %r", ctx.task_id, exc)
                status = "unknown"
            finally:
                connection.close()  # back to the pool (or closed) between beats
            if status is None or status == "cancelled":
                ctx.cancelled.set()


heartbeats = Heartbeats()


def run_attempt(task_id: int, attempt_number: int) -> str:
    """Claim, run and finish one attempt. Returns what happened, for RQ's result and the tests."""
    worker_name, worker_pid = worker_identity()
    attempt = services.attempt_start(task_id=task_id, number=attempt_number, worker_name=worker_name,
                                     worker_pid=worker_pid)
    if attempt is None:
        return "skipped"
    ctx = AttemptContext(attempt)
    heartbeats.watch(ctx)
    try:
        handler = task_types.get(attempt.task.task_type).handler
        handler(ctx)
    except TaskCancelled:
        heartbeats.unwatch()
        services.attempt_stop_cancelled(attempt=attempt)
        return "cancelled"
    except (SystemExit, KeyboardInterrupt):
        # A cold shutdown of the worker: hand the attempt back instead of leaving it running.
        heartbeats.unwatch()
        services.attempt_give_back(attempt=attempt, reason="the worker was shut down during the attempt")
        raise
    except Exception as exc:  # includes RQ's JobTimeoutException: a timeout fails the attempt like any error
        heartbeats.unwatch()
        if ctx.cancelled.is_set() and services.task_is_cancelled(task_id=task_id):
            services.attempt_stop_cancelled(attempt=attempt)
            return "cancelled"
        _surviving_outages(partial(services.attempt_fail_from_exception, exc=exc), attempt=attempt)
        return "failed"
    heartbeats.unwatch()
    if ctx.cancelled.is_set() and services.task_is_cancelled(task_id=task_id):
        services.attempt_stop_cancelled(attempt=attempt)
        return "cancelled"
    return "succeeded" if _surviving_outages(services.attempt_succeed, attempt=attempt) else "discarded"


OUTAGE_RETRIES = 30
OUTAGE_PAUSE = 1.0  # seconds between tries


def _surviving_outages(finish, *, attempt):
    """Record a finished attempt even if PostgreSQL is briefly away (a restart, a failover): reconnect and try again
    for about half a minute rather than throw the work away. If it never comes back, the sweeper recovers the
    attempt from its silent heartbeat."""
    for attempt_number in range(1, OUTAGE_RETRIES + 1):
        try:
            return finish(attempt=attempt)
        except (OperationalError, InterfaceError) as exc:
            if attempt_number == OUTAGE_RETRIES:
                raise
            logger.warning("Recording attempt %s of task %s failed (%r); retrying.", attempt.number, attempt.task_id,
                           exc)
            connection.close()
            time.sleep(OUTAGE_PAUSE)
