"""The /ws/tasks/ socket: authenticate, join the groups the user may see, forward events. Never writes.

Messages to the client (see README, "Live updates"):
  {"type": "task.updated", "task": {...API representation, with version...}, "previous_status": ...}
  {"type": "task.log", "task_id", "attempt", "level", "message", "created_at", "id"}
  {"type": "subscribed", "task_id"} / {"type": "error", "message"}
Messages from the client: {"subscribe": <task id>} and {"unsubscribe": <task id>}, at most MAX_MESSAGE_BYTES each.
Close codes: 4001 the session logged out; 4009 a message was too big. Refused handshakes (anonymous, foreign Origin)
answer HTTP 403.
Pages connect with ?html=1 and also receive the pre-rendered fragments ("html") of each event.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import realtime, selectors

MAX_MESSAGE_BYTES = 1024
# Close codes. An application may only send 1000 or 3000-4999 (daphne's autobahn turns any other code into 1011,
# "internal error"), so "message too big" is 4009 after the protocol's 1009.
CLOSE_SESSION_ENDED = 4001
CLOSE_MESSAGE_TOO_BIG = 4009
MAX_SUBSCRIPTIONS = 50


def is_task_id(value) -> bool:
    """A positive whole number from the client's JSON (bool is an int in Python: refuse it)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class TaskEventsConsumer(AsyncJsonWebsocketConsumer):
    groups: list[str]

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # before accept: the handshake is refused (HTTP 403)
            return
        self.user = user
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.with_html = query.get("html", ["0"])[0] == "1"
        self.subscriptions: set[int] = set()
        self.joined = [realtime.STAFF_GROUP if user.is_staff else realtime.user_group(user.pk)]
        session = self.scope.get("session")
        if session is not None and session.session_key:
            self.joined.append(realtime.session_group(session.session_key))
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        flusher = getattr(self, "_flusher", None)
        if flusher is not None:
            flusher.cancel()
        for group in getattr(self, "joined", []) + [realtime.task_group(pk) for pk in getattr(self, "subscriptions", ())]:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > MAX_MESSAGE_BYTES:
            await self.close(code=CLOSE_MESSAGE_TOO_BIG)
            return
        try:
            content = json.loads(text_data or (bytes_data or b"").decode())
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            await self.send_json({"type": "error", "message": "Messages must be JSON."})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "message": "Messages must be JSON objects."})
        elif "subscribe" in content:
            await self.subscribe(content["subscribe"])
        elif "unsubscribe" in content:
            await self.unsubscribe(content["unsubscribe"])
        else:
            await self.send_json({"type": "error", "message": "Send {\"subscribe\": <task id>}."})

    async def subscribe(self, task_id):
        if not is_task_id(task_id):
            await self.send_json({"type": "error", "message": "subscribe takes a task id."})
            return
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            await self.send_json({"type": "error", "message": f"At most {MAX_SUBSCRIPTIONS} subscriptions."})
            return
        visible = await database_sync_to_async(selectors.task_is_visible)(user=self.user, task_id=task_id)
        if not visible:
            await self.send_json({"type": "error", "message": f"Task {task_id} not found.", "task_id": task_id})
            return
        self.subscriptions.add(task_id)
        await self.channel_layer.group_add(realtime.task_group(task_id), self.channel_name)
        await self.send_json({"type": "subscribed", "task_id": task_id})

    async def unsubscribe(self, task_id):
        if not is_task_id(task_id):
            await self.send_json({"type": "error", "message": "unsubscribe takes a task id."})
            return
        if task_id in self.subscriptions:
            self.subscriptions.discard(task_id)
            await self.channel_layer.group_discard(realtime.task_group(task_id), self.channel_name)
        await self.send_json({"type": "unsubscribed", "task_id": task_id})

    # --- Events from the channel layer -------------------------------------------------------------------------------

    # While this socket keeps up, each task.updated goes out at once. When events arrive faster than it can send
    # (a burst), updates of one task waiting to go out merge into the newest: one frame per task instead of one per
    # change. A merged event says which version it continues from ("base_version"), so a client does not mistake it
    # for a gap, and keeps the first "previous_status" of the chain, so counts still add up.

    async def task_updated(self, event):
        held = self._held_updates()
        task_id = event["task"]["id"]
        earlier = held.get(task_id)
        if earlier is not None:
            if event["task"]["version"] <= earlier["task"]["version"]:
                return  # stale: a newer state of this task is already waiting
            event = {**event, "base_version": earlier.get("base_version", earlier["task"]["version"] - 1),
                     "previous_status": earlier.get("previous_status") or event.get("previous_status")}
            del held[task_id]  # re-inserted last: frames keep the order of each task's latest change
        held[task_id] = event
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_updates())

    async def task_log(self, event):
        await self._flush_updates()  # a task's state goes out before the log lines that follow it
        await self.forward(event)

    async def session_ended(self, event):
        await self.close(code=CLOSE_SESSION_ENDED)

    def _held_updates(self) -> dict:
        if not hasattr(self, "_held"):
            self._held: dict[int, dict] = {}
            self._flusher: asyncio.Future | None = None
        return self._held

    async def _flush_updates(self):
        held = self._held_updates()
        while held:
            oldest = next(iter(held))
            await self.forward(held.pop(oldest))

    async def forward(self, event):
        if not self.with_html:
            event = {key: value for key, value in event.items() if key != "html"}
        await self.send_json(event)
