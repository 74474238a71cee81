"""Events: what changed, to whom, delivered after commit.

Services call `task_updated()` / `task_logged()` from `transaction.on_commit`; this module builds each event once
(the API serializer's representation plus the HTML fragments the pages swap in, rendered once per event rather than
once per viewer) and hands it to a per-process publisher thread, which sends it through the Channels layer in order.
Publishing never blocks or fails the caller: if Redis is down the event is dropped with a warning, and clients
notice the gap by the task's version and resync from the API.

Groups follow visibility: a task's owner (`user-<id>`), all staff (`staff`), and subscribers of one task's log
(`task-<id>`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

STAFF_GROUP = "staff"
SEND_TIMEOUT = 2.0


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def task_group(task_id: int) -> str:
    return f"task-{task_id}"


def session_group(session_key: str) -> str:
    return f"session-{session_key}"


def task_updated_event(task, previous_status: str | None = None) -> dict[str, Any]:
    from .rendering import task_fragments

    return {
        "type": "task.updated",
        "task": _task_representation(task),
        "previous_status": previous_status,
        "html": task_fragments(task),
    }


_serializer = None


def _task_representation(task) -> dict[str, Any]:
    """The API's representation of the task. One serializer instance per process: building a ModelSerializer's fields
    (model introspection) cost more than serializing the task itself, on every event."""
    global _serializer
    if _serializer is None:
        from .api.serializers import TaskSerializer

        _serializer = TaskSerializer()
    return _serializer.to_representation(task)


def task_log_event(log) -> dict[str, Any]:
    from .rendering import log_fragment

    return {
        "type": "task.log",
        "id": log.pk,
        "task_id": log.task_id,
        "attempt": log.attempt.number if log.attempt_id else None,
        "level": log.level,
        "message": log.message,
        "created_at": log.created_at.isoformat(),
        "html": log_fragment(log),
    }


def task_updated(task, previous_status: str | None = None) -> None:
    """Publish the task's new state to everyone who may see it."""
    event = task_updated_event(task, previous_status)
    publisher.send([(user_group(task.owner_id), event), (STAFF_GROUP, event)])


def task_logged(log) -> None:
    """Publish a log line to the clients that subscribed to its task."""
    publisher.send([(task_group(log.task_id), task_log_event(log))])


def session_ended(session_key: str) -> None:
    """Close the sockets opened under a session that just logged out."""
    publisher.send([(session_group(session_key), {"type": "session.ended"})])


class Publisher:
    """Sends group messages from sync code through one event loop thread per process.

    Channels layers keep their Redis connections per event loop; `async_to_sync` would make a new loop (and
    connections) per call. One long-lived loop keeps them warm, and one queue keeps the events of a process in order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._unfinished = 0
        self._idle = threading.Condition(self._lock)

    def send(self, messages: list[tuple[str, dict]]) -> None:
        with self._lock:
            self._ensure_running()
            self._unfinished += 1
            loop, queue = self._loop, self._queue
        loop.call_soon_threadsafe(queue.put_nowait, messages)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event sent so far has been handed to the layer (tests and shutdown use it)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    def _ensure_running(self) -> None:
        if self._pid == os.getpid() and self._loop is not None:
            return
        # First use in this process (or first after a fork, whose child has no thread of ours).
        self._pid = os.getpid()
        self._unfinished = 0
        self._loop = asyncio.new_event_loop()
        self._queue = asyncio.Queue()
        ready = threading.Event()
        thread = threading.Thread(target=self._run, args=(self._loop, self._queue, ready), name="realtime-publisher",
                                  daemon=True)
        thread.start()
        ready.wait()

    def _run(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_until_complete(self._drain(queue))

    async def _drain(self, queue: asyncio.Queue) -> None:
        layer = get_channel_layer()
        while True:
            messages = await queue.get()
            for group, message in messages:
                try:
                    await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT)
                except Exception as exc:  # Redis down or slow: drop it; clients resync by version
                    logger.warning("Dropped realtime event for %s: %r", group, exc)
            with self._idle:
                self._unfinished -= 1
                self._idle.notify_all()


publisher = Publisher()
