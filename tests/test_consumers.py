"""The /ws/tasks/ socket, driven through the real ASGI application (origin validator, session auth, routing) and the
real Redis pub/sub channel layer. Events are published after commit by the publisher thread, so every test runs in
a transactional database and waits with `realtime.publisher.flush()`."""

from __future__ import annotations

import base64
import gc
import json
import os
import socket
import struct
import tracemalloc
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client

from taskrunner_project.asgi import application
from tasks import consumers, realtime, services
from tasks.api.serializers import TaskSerializer
from tests.support import free_port, start_daphne, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

TASK_FIELDS = {
    "id", "name", "task_type", "execution_time", "status", "attempts", "max_attempts", "progress", "version",
    "created_at", "updated_at", "started_at", "finished_at", "next_retry_at", "owner", "url",
}
LOG_FIELDS = {"type", "id", "task_id", "attempt", "level", "message", "created_at"}
QUIET = 0.5  # seconds a socket must stay silent to count as "received nothing"


@pytest.fixture(autouse=True)
async def close_worker_thread_connections():
    """ORM calls from async code run in asgiref's executor thread, which has its own connection: close it after the
    test, or the test database cannot be flushed and dropped."""
    yield
    await sync_to_async(connections.close_all)()


# --- Helpers ---------------------------------------------------------------------------------------------------------

@sync_to_async
def login(username: str, password: str) -> Client:
    """A real session, created by Django's login, as a browser would have it."""
    client = Client()
    assert client.login(username=username, password=password)
    return client


def headers(client: Client | None = None, origin: str = "http://localhost") -> list[tuple[bytes, bytes]]:
    result = [(b"host", b"localhost")]
    if origin:
        result.append((b"origin", origin.encode()))
    if client is not None:
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        result.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return result


async def connect(client: Client | None, path: str = "/ws/tasks/", **kwargs) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=headers(client, **kwargs))
    connected, code = await communicator.connect(timeout=5)
    assert connected, f"socket refused with code {code}"
    return communicator


@sync_to_async
def create_task(owner, **fields):
    fields.setdefault("name", "a task")
    fields.setdefault("task_type", "always_succeeds")
    fields.setdefault("execution_time", "0")
    task = services.task_create(owner=owner, **fields)
    assert realtime.publisher.flush(), "the publisher did not send in time"
    return task


@sync_to_async
def write_log(task, message: str):
    services.task_log(task_id=task.pk, message=message)
    assert realtime.publisher.flush(), "the publisher did not send in time"


@sync_to_async
def api_representation(client: Client, task_id: int) -> dict:
    response = client.get(f"/api/tasks/{task_id}/")
    assert response.status_code == 200
    body = response.json()
    body.pop("attempt_history")
    return body


async def receive_type(communicator: WebsocketCommunicator, message_type: str, timeout: float = 5) -> dict:
    """The next message of a type, skipping others (a task's creation also publishes its first log line)."""
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        if message.get("type") == message_type:
            return message


async def expect_close(communicator: WebsocketCommunicator, code: int, timeout: float = 5) -> None:
    output = await communicator.receive_output(timeout=timeout)
    assert output == {"type": "websocket.close", "code": code}, output


async def refused(headers_list) -> tuple[bool, int]:
    communicator = WebsocketCommunicator(application, "/ws/tasks/", headers=headers_list)
    result = await communicator.connect(timeout=5)
    await communicator.disconnect()  # what the server sends once the handshake was refused
    return result


# --- Who may connect -------------------------------------------------------------------------------------------------

async def test_anonymous_socket_is_refused_before_accept():
    connected, code = await refused(headers(None))
    assert not connected
    assert code == 4401


async def test_foreign_origin_is_refused_even_with_a_valid_session(user):
    client = await login("alice", "alice-password-123")
    for origin in ("http://evil.example.com", "http://localhost.evil.com", "https://example.com", "null"):
        connected, _ = await refused(headers(client, origin=origin))
        assert not connected, origin
    # No Origin header at all is refused too (browsers always send one).
    connected, _ = await refused(headers(client, origin=""))
    assert not connected


async def test_forged_or_expired_session_is_refused(user):
    forged = [(b"host", b"localhost"), (b"origin", b"http://localhost"),
              (b"cookie", f"{settings.SESSION_COOKIE_NAME}=not-a-real-session-key".encode())]
    connected, code = await refused(forged)
    assert (connected, code) == (False, 4401)


async def test_authenticated_session_connects(user):
    client = await login("alice", "alice-password-123")
    communicator = await connect(client)
    await communicator.send_json_to({"hello": 1})
    assert (await communicator.receive_json_from())["type"] == "error"
    await communicator.disconnect()


# --- What arrives --------------------------------------------------------------------------------------------------

async def test_task_updated_carries_the_api_representation_without_html(user):
    client = await login("alice", "alice-password-123")
    communicator = await connect(client)
    task = await create_task(user, name="report", task_type="always_succeeds", execution_time="1.5")

    event = await receive_type(communicator, "task.updated")
    assert set(event) == {"type", "task", "previous_status"}
    assert "html" not in event
    assert TASK_FIELDS <= set(event["task"])
    # One representation: the event's task is exactly what the API returns for the same version.
    assert event["task"] == await api_representation(client, task.pk)
    assert event["task"]["id"] == task.pk
    assert event["task"]["status"] == "pending"
    assert event["task"]["owner"] == "alice"
    assert event["task"]["execution_time"] == "1.500"
    await communicator.disconnect()


async def test_html_fragments_only_when_asked_for(user):
    client = await login("alice", "alice-password-123")
    communicator = await connect(client, path="/ws/tasks/?html=1")
    task = await create_task(user)
    event = await receive_type(communicator, "task.updated")
    assert event["task"]["id"] == task.pk
    assert event["html"], "pages connect with ?html=1 and get the pre-rendered fragments"
    await communicator.disconnect()


async def test_a_user_never_receives_another_users_events_and_staff_receive_all(user, other_user, staff_user):
    alice = await connect(await login("alice", "alice-password-123"))
    bob = await connect(await login("bob", "bob-password-123"))
    carol = await connect(await login("carol", "carol-password-123"))

    alices_task = await create_task(user, name="alice's")
    assert (await receive_type(alice, "task.updated"))["task"]["id"] == alices_task.pk
    assert (await receive_type(carol, "task.updated"))["task"]["id"] == alices_task.pk
    assert await bob.receive_nothing(timeout=QUIET)

    bobs_task = await create_task(other_user, name="bob's")
    assert (await receive_type(bob, "task.updated"))["task"]["id"] == bobs_task.pk
    assert (await receive_type(carol, "task.updated"))["task"]["id"] == bobs_task.pk
    assert await alice.receive_nothing(timeout=QUIET)

    # Later changes too (a cancel), not only creations.
    await sync_to_async(services.task_cancel)(task_id=alices_task.pk, actor=user)
    await sync_to_async(realtime.publisher.flush)()
    cancelled = await receive_type(alice, "task.updated")
    assert (cancelled["task"]["status"], cancelled["previous_status"]) == ("cancelled", "pending")
    assert cancelled["task"]["version"] > 1
    assert await bob.receive_nothing(timeout=QUIET)
    for communicator in (alice, bob, carol):
        await communicator.disconnect()


async def test_subscribe_to_own_task_log(user):
    client = await login("alice", "alice-password-123")
    communicator = await connect(client)
    task = await create_task(user)
    await receive_type(communicator, "task.updated")

    await communicator.send_json_to({"subscribe": task.pk})
    assert await communicator.receive_json_from() == {"type": "subscribed", "task_id": task.pk}
    await write_log(task, "step one done")
    event = await receive_type(communicator, "task.log")
    assert set(event) == LOG_FIELDS
    assert event["task_id"] == task.pk
    assert event["message"] == "step one done"
    assert event["level"] == "info"
    assert event["attempt"] is None  # written outside an attempt
    assert event["created_at"]

    await communicator.send_json_to({"unsubscribe": task.pk})
    assert await communicator.receive_json_from() == {"type": "unsubscribed", "task_id": task.pk}
    await write_log(task, "after unsubscribe")
    assert await communicator.receive_nothing(timeout=QUIET)
    await communicator.disconnect()


async def test_log_with_html_for_pages(user):
    communicator = await connect(await login("alice", "alice-password-123"), path="/ws/tasks/?html=1")
    task = await create_task(user)
    await communicator.send_json_to({"subscribe": task.pk})
    await receive_type(communicator, "subscribed")
    await write_log(task, "with a fragment")
    event = await receive_type(communicator, "task.log")
    assert "with a fragment" in event["html"]
    await communicator.disconnect()


async def test_subscribing_to_another_users_task_is_refused(user, other_user, staff_user):
    task = await create_task(user)
    bob = await connect(await login("bob", "bob-password-123"))
    await bob.send_json_to({"subscribe": task.pk})
    reply = await bob.receive_json_from()
    assert reply["type"] == "error" and reply["task_id"] == task.pk
    assert "not found" in reply["message"]  # the same answer as for a task that does not exist
    await bob.send_json_to({"subscribe": task.pk + 1000})
    missing = await bob.receive_json_from()
    assert missing["message"].replace(str(task.pk + 1000), "N") == reply["message"].replace(str(task.pk), "N")

    carol = await connect(await login("carol", "carol-password-123"))
    await carol.send_json_to({"subscribe": task.pk})
    assert await carol.receive_json_from() == {"type": "subscribed", "task_id": task.pk}

    await write_log(task, "secret line")
    assert (await receive_type(carol, "task.log"))["message"] == "secret line"
    assert await bob.receive_nothing(timeout=QUIET)
    await bob.disconnect()
    await carol.disconnect()


# --- Bad input -----------------------------------------------------------------------------------------------------

BAD_MESSAGES = [
    ("text", "not json"),
    ("text", "[1, 2, 3]"),
    ("text", '"a string"'),
    ("text", "null"),
    ("text", "{}"),
    ("text", '{"subscribe": "1"}'),
    ("text", '{"subscribe": true}'),
    ("text", '{"subscribe": 1.5}'),
    ("text", '{"subscribe": -1}'),
    ("text", '{"subscribe": 0}'),
    ("text", '{"subscribe": null}'),
    ("text", '{"subscribe": [1]}'),
    ("text", '{"subscribe": {"id": 1}}'),
    ("text", '{"subscribe": 99999999999999999999999999999}'),
    ("text", '{"subscribe": 9223372036854775808}'),
    ("text", '{"unsubscribe": [1]}'),
    ("text", '{"unsubscribe": {"a": 1}}'),
    ("text", '{"unsubscribe": "x"}'),
    ("text", "[" * 400 + "]" * 400),
    ("bytes", b"\xff\xfe\x00garbage"),
    ("bytes", b'{"subscribe": 1}'),
]


async def test_bad_messages_get_an_error_and_the_socket_stays_usable(user):
    communicator = await connect(await login("alice", "alice-password-123"))
    task = await create_task(user)
    await receive_type(communicator, "task.updated")
    for kind, data in BAD_MESSAGES:
        await communicator.send_to(**{f"{kind}_data": data})
        reply = await communicator.receive_json_from(timeout=5)
        assert reply["type"] == "error", (data, reply)
        assert reply["message"], data
    # Still open and working.
    await communicator.send_json_to({"subscribe": task.pk})
    assert await communicator.receive_json_from() == {"type": "subscribed", "task_id": task.pk}
    await communicator.disconnect()


async def test_subscriptions_are_bounded(user):
    communicator = await connect(await login("alice", "alice-password-123"))
    tasks = [await create_task(user, name=f"t{i}") for i in range(consumers.MAX_SUBSCRIPTIONS + 1)]
    for task in tasks[:-1]:
        await communicator.send_json_to({"subscribe": task.pk})
        await receive_type(communicator, "subscribed")
    await communicator.send_json_to({"subscribe": tasks[-1].pk})
    reply = await receive_type(communicator, "error")
    assert str(consumers.MAX_SUBSCRIPTIONS) in reply["message"]
    await communicator.disconnect()


@pytest.mark.parametrize("kind", ["text", "bytes"])
async def test_oversized_message_closes_the_socket_with_4009(user, kind):
    communicator = await connect(await login("alice", "alice-password-123"))
    payload = json.dumps({"subscribe": 1, "pad": "x" * consumers.MAX_MESSAGE_BYTES})
    await communicator.send_to(**{f"{kind}_data": payload if kind == "text" else payload.encode()})
    await expect_close(communicator, consumers.CLOSE_MESSAGE_TOO_BIG)
    await communicator.disconnect()


async def test_oversized_messages_on_fresh_sockets_do_not_grow_memory(user):
    """Each socket sends one 256 KiB message and is closed; none of it may stay in the process."""
    client = await login("alice", "alice-password-123")
    size = 256 * 1024

    async def one_round(i):
        communicator = await connect(client)
        # A fresh string each time (in memory the communicator hands the consumer this very object).
        await communicator.send_to(text_data=f"{i:08d}".ljust(size, "x"))
        await expect_close(communicator, consumers.CLOSE_MESSAGE_TOO_BIG)
        await communicator.disconnect()

    for i in range(10):  # warm up: connections, caches, the channel layer of this loop
        await one_round(i)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        rounds = 60
        for i in range(rounds):
            await one_round(i)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    sent = rounds * size
    growth = after - before
    # 15 MiB went through; keeping even a tenth of one message per socket would show as > 1.5 MiB.
    assert growth < 1024 * 1024, f"memory grew by {growth} bytes after {rounds} oversized messages ({sent} bytes)"


# --- Logout ------------------------------------------------------------------------------------------------------------

async def test_logout_closes_the_sockets_of_that_session_only(user):
    leaving = await login("alice", "alice-password-123")
    staying = await login("alice", "alice-password-123")  # another browser of the same user
    first = await connect(leaving)
    second = await connect(leaving, path="/ws/tasks/?html=1")
    other_browser = await connect(staying)

    response = await sync_to_async(leaving.post)("/logout/")
    assert response.status_code == 302
    await sync_to_async(realtime.publisher.flush)()

    await expect_close(first, consumers.CLOSE_SESSION_ENDED)
    await expect_close(second, consumers.CLOSE_SESSION_ENDED)
    assert await other_browser.receive_nothing(timeout=QUIET)
    task = await create_task(user)  # the other browser still gets events
    assert (await receive_type(other_browser, "task.updated"))["task"]["id"] == task.pk

    # The old session cookie no longer opens a socket.
    stale = [(b"host", b"localhost"), (b"origin", b"http://localhost"),
             (b"cookie", headers(leaving)[-1][1])]
    assert await refused(stale) == (False, 4401)
    for communicator in (first, second, other_browser):
        await communicator.disconnect()


def test_event_payload_is_the_serializer_output(db, user):
    """The event builder uses the API serializer (one representation), checked without a socket."""
    task = services.task_create(owner=user, name="x", task_type="always_succeeds", execution_time="0")
    event = realtime.task_updated_event(task)
    assert event["type"] == "task.updated"
    assert event["task"] == TaskSerializer(task).data


# --- Through a real daphne: the handshake and the frame limits of the server itself ---------------------------------

class RawWebSocket:
    """Just enough of a WebSocket client (RFC 6455) to speak to daphne over a real TCP socket."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET /ws/tasks/ HTTP/1.1", f"Host: localhost:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            response += chunk
        self.status = int(response.split(b" ", 2)[1]) if response else 0
        self.buffer = response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""

    def send(self, payload: bytes, opcode: int = 1, *, header_only: bool = False) -> None:
        """One masked frame (an all-zero mask: valid, and no need to XOR megabytes in Python). With header_only, just
        announce the frame's length and send nothing more."""
        length = len(payload)
        if length < 126:
            header = bytes([0x80 | opcode, 0x80 | length])
        elif length < 65536:
            header = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", length)
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", length)
        try:
            self.sock.sendall(header + b"\x00\x00\x00\x00")
            if header_only:
                return
            for start in range(0, length, 65536):
                self.sock.sendall(payload[start:start + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may hang up as soon as it has read the header of a frame too big

    def receive(self) -> tuple[int, bytes]:
        head = self._read(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        return opcode, self._read(length)

    def close_code(self) -> int:
        """Read until the server's close frame; return its code."""
        while True:
            opcode, payload = self.receive()
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0]

    def _read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def daphne_port(test_database_name, tmp_path):
    port = free_port()
    server = start_daphne(test_database_name, tmp_path, port)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=30, message=f"daphne on port {port}")
        yield port, server
    finally:
        server.stop()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def browser_headers(port: int, client: Client | None, origin: str | None = None) -> dict[str, str]:
    result = {"Origin": origin or f"http://localhost:{port}"}
    if client is not None:
        result["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return result


def test_live_handshake_refuses_foreign_origin_and_anonymous(user, daphne_port):
    port, _ = daphne_port
    client = Client()
    assert client.login(username="alice", password="alice-password-123")
    ok = RawWebSocket(port, browser_headers(port, client))
    assert ok.status == 101
    ok.send(b'{"subscribe": "x"}')
    opcode, payload = ok.receive()
    assert opcode == 1 and json.loads(payload)["type"] == "error"
    ok.close()
    foreign = RawWebSocket(port, browser_headers(port, client, origin="https://evil.example.com"))
    assert foreign.status == 403
    foreign.close()
    anonymous = RawWebSocket(port, browser_headers(port, None))
    assert anonymous.status == 403
    anonymous.close()


def test_live_oversized_messages_are_refused_without_memory_growth(user, daphne_port):
    """Two limits: daphne refuses any frame over 1 MiB from its header (never buffering it), and the consumer closes
    the socket on any message over MAX_MESSAGE_BYTES. Neither may leave memory behind in the server process."""
    port, server = daphne_port
    client = Client()
    assert client.login(username="alice", password="alice-password-123")
    headers = browser_headers(port, client)

    def one_round(size: int) -> None:
        socket_ = RawWebSocket(port, headers)
        assert socket_.status == 101
        socket_.send(os.urandom(size // 2).hex().encode())
        assert socket_.close_code() == consumers.CLOSE_MESSAGE_TOO_BIG  # from the consumer, as sent
        socket_.close()

    # daphne's own limit (autobahn, 1 MiB): a frame announced bigger is refused on its header, before any of its
    # 64 MiB is read: autobahn drops the TCP connection (its servers "fail by drop", no close frame).
    for _ in range(3):
        too_big = RawWebSocket(port, headers)
        assert too_big.status == 101
        too_big.send(b"x" * (64 * 1024 * 1024), header_only=True)
        with pytest.raises(ConnectionError):
            too_big.receive()
        too_big.close()
    for _ in range(5):  # warm up the consumer path
        one_round(512 * 1024)
    before = rss_bytes(server.pid)
    rounds, size = 80, 512 * 1024
    for _ in range(rounds):
        one_round(size)  # under daphne's limit: reaches the consumer, which closes the socket
    growth = rss_bytes(server.pid) - before
    sent = rounds * size
    assert growth < 16 * 1024 * 1024, f"daphne's RSS grew by {growth} bytes after {sent} bytes of oversized messages"


def test_live_logout_closes_the_socket_with_4001(user, daphne_port):
    port, _ = daphne_port
    client = Client()
    assert client.login(username="alice", password="alice-password-123")
    live = RawWebSocket(port, browser_headers(port, client))
    assert live.status == 101
    live.send(json.dumps({"subscribe": 1}).encode())  # a round trip: the socket has joined its groups
    assert json.loads(live.receive()[1])["type"] == "error"
    assert client.post("/logout/").status_code == 302
    assert realtime.publisher.flush()
    assert live.close_code() == consumers.CLOSE_SESSION_ENDED
    live.close()


async def test_a_burst_of_updates_to_one_task_is_merged_into_its_latest_state():
    """Updates waiting to go out merge per task: the newest state, the chain's first previous_status, and the version
    the merged event continues from, so a client sees no false gap."""
    from tasks.consumers import TaskEventsConsumer

    consumer = TaskEventsConsumer()
    consumer.with_html = False
    sent = []

    async def forward(event):
        sent.append(event)

    consumer.forward = forward

    def update(version, status, previous=None, task_id=7):
        return {"type": "task.updated", "previous_status": previous,
                "task": {"id": task_id, "version": version, "status": status}}

    # No await between the events: they arrive while the socket is busy, as in a burst.
    await consumer.task_updated(update(2, "running", "pending"))
    await consumer.task_updated(update(3, "running"))
    await consumer.task_updated(update(2, "running", "pending"))  # a stale duplicate is dropped
    await consumer.task_updated(update(5, "completed", "running", task_id=8))
    await consumer.task_updated(update(4, "completed", "running"))
    await consumer._flusher
    assert [(e["task"]["id"], e["task"]["version"]) for e in sent] == [(8, 5), (7, 4)]
    merged = sent[1]
    assert merged["base_version"] == 1 and merged["previous_status"] == "pending"
    assert "base_version" not in sent[0]
    # When the socket keeps up, every change goes out as it is, unmerged.
    sent.clear()
    await consumer.task_updated(update(5, "completed", "running", task_id=9))
    await consumer._flusher
    await consumer.task_updated(update(6, "cancelled", "completed", task_id=9))
    await consumer._flusher
    assert [e["task"]["version"] for e in sent] == [5, 6] and all("base_version" not in e for e in sent)
