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

    async def task_updated(self, event):
        await self.forward(event)

    async def task_log(self, event):
        await self.forward(event)

    async def session_ended(self, event):
        await self.close(code=CLOSE_SESSION_ENDED)

    async def forward(self, event):
        if not self.with_html:
            event = {key: value for key, value in event.items() if key != "html"}
        await self.send_json(event)
