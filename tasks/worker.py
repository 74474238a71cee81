"""RQ worker classes for Taskrunner.

`TaskWorker` (the default) runs each attempt in the worker process itself, like RQ's SimpleWorker: no fork per job,
warm PostgreSQL and Redis connections, roughly three times the throughput of a forking worker (bench/). Crash
isolation comes from the heartbeat and the sweeper instead: if a worker process dies, another worker's sweeper
marks its attempt lost and retries the task. `ForkingTaskWorker` keeps RQ's fork-per-job isolation for handlers that
leak memory or crash the interpreter; when its work horse is killed, the attempt is failed at once.

Both run the sweeper thread (tasks.recovery.Sweeper), so any live worker recovers what a dead one left behind.
"""

from __future__ import annotations

import logging
import os

from django.db import close_old_connections, connection
from rq.worker import SimpleWorker, Worker

from . import realtime, services
from .models import TaskAttempt
from .recovery import Sweeper

logger = logging.getLogger(__name__)


class SweeperMixin:
    _sweeper: Sweeper | None = None

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        # Open (and so import) the database machinery in the main thread before any thread of ours starts: a forked
        # work horse must not inherit a module import that another thread was half-way through.
        connection.ensure_connection()
        connection.close()
        self._sweeper = Sweeper()
        self._sweeper.start()

    def teardown(self):
        if self._sweeper is not None:
            self._sweeper.stop()
        super().teardown()


class TaskWorker(SweeperMixin, SimpleWorker):
    """Runs attempts in-process (the default)."""


class ForkingTaskWorker(SweeperMixin, Worker):
    """Runs each attempt in a forked work horse."""

    def main_work_horse(self, job, queue):
        _forget_inherited_connections()
        super().main_work_horse(job, queue)

    def perform_job(self, job, queue, execution):
        try:
            return super().perform_job(job, queue, execution)
        finally:
            # The horse ends with os._exit right after this: hand over the events it published before it goes.
            realtime.publisher.flush(timeout=5)

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        signal_number = os.WTERMSIG(ret_val) if ret_val and os.WIFSIGNALED(ret_val) else None
        how = f"killed by signal {signal_number}" if signal_number else f"exited with status {ret_val}"
        try:
            task_id, number = job.args
        except (TypeError, ValueError):
            return
        close_old_connections()
        attempt = TaskAttempt.objects.running().filter(task_id=task_id, number=number).first()
        if attempt is not None:
            services.attempt_fail(attempt=attempt, error_type="WorkHorseKilled",
                                  message=f"the work horse (pid {retpid}) was {how}")


_inherited: list = []


def _forget_inherited_connections() -> None:
    """In a freshly forked horse: stop using the parent's PostgreSQL connections and pool, without closing them.

    Their sockets are shared with the parent; closing them here would send a Terminate message on the parent's
    connection. The horse keeps references (so no finaliser runs: it ends with os._exit) and opens its own.
    """
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    _inherited.append(dict(DatabaseWrapper._connection_pools))
    DatabaseWrapper._connection_pools.clear()
    for conn in connections.all(initialized_only=True):
        _inherited.append(conn.connection)
        conn.connection = None
