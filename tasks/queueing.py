"""Delivering attempts to RQ workers.

Redis only delivers: a job carries ids, never state, and its id names the attempt it is for
(`task-<task id>-attempt-<attempt number>`), so a duplicate enqueue of the same attempt is recognisable and harmless.
If Redis is unreachable the enqueue is skipped with a warning: the task stays pending in PostgreSQL, and the sweeper
(tasks.recovery) enqueues it again once Redis answers.
"""

from __future__ import annotations

import logging
import os
from decimal import Decimal

import django_rq
from django.conf import settings
from redis.exceptions import RedisError
from rq.job import Job, JobStatus

logger = logging.getLogger(__name__)

JOB_FUNC = "tasks.jobs.run_attempt"  # by dotted name, so services never import jobs
LIVE_JOB_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}

_queue_cache: dict[int, object] = {}


def get_queue():
    """One Queue (and one Redis connection pool) per process, rebuilt after a fork."""
    pid = os.getpid()
    queue = _queue_cache.get(pid)
    if queue is None:
        _queue_cache.clear()
        queue = django_rq.get_queue(settings.TASKRUNNER_QUEUE, commit_mode="auto")
        _queue_cache[pid] = queue
    return queue


def job_id(task_id: int, attempt_number: int) -> str:
    return f"task-{task_id}-attempt-{attempt_number}"


def job_timeout(execution_time: Decimal | float) -> int:
    """The RQ timeout for one attempt (default: twice the expected time plus a minute), at least a second."""
    seconds = float(execution_time) * settings.TASKRUNNER_JOB_TIMEOUT_FACTOR + settings.TASKRUNNER_JOB_TIMEOUT_SLACK
    return max(1, int(seconds))


def enqueue_attempt(task_id: int, attempt_number: int, execution_time: Decimal | float) -> bool:
    """Put the job for this attempt on the queue. Returns False (and logs) if Redis could not be reached."""
    try:
        get_queue().enqueue_call(
            JOB_FUNC,
            args=(task_id, attempt_number),
            job_id=job_id(task_id, attempt_number),
            timeout=job_timeout(execution_time),
            result_ttl=0,  # PostgreSQL keeps the outcome; RQ deletes a finished job at once
            failure_ttl=24 * 3600,
        )
    except RedisError as exc:
        logger.warning("Could not enqueue task %s attempt %s (%s); the sweeper will retry.", task_id,
                       attempt_number, exc)
        return False
    return True


def live_job_ids(ids: list[str]) -> set[str]:
    """Which of these job ids are queued or running in Redis right now (one round trip)."""
    if not ids:
        return set()
    queue = get_queue()
    pipe = queue.connection.pipeline(transaction=False)
    for jid in ids:
        pipe.hget(Job.key_for(jid), "status")
    statuses = pipe.execute()
    live = {status.value for status in LIVE_JOB_STATUSES}
    return {jid for jid, status in zip(ids, statuses) if status is not None and status.decode() in live}
