"""A minimal asyncio WebSocket client (RFC 6455, text frames, pong, no extensions), run as its own process.

No dependency beyond the standard library, so the smoke mode runs wherever the app does. Frames are stored raw with
their receive time (time.monotonic(), system-wide on Linux, so comparable with the sender's commit times) and parsed
only after the run, to keep the client's CPU use small while it measures.

  python -m bench.wsclient listen URL CONNS OUTFILE [--cookie C] [--origin O]
      open CONNS sockets, print READY, record every frame; after a line on stdin, stop once nothing arrived for
      IDLE seconds (or after --max-wait), then write {"frames": [[conn, t, task_id, version], ...], ...} to OUTFILE.
  python -m bench.wsclient hold URL CONNS [--cookie C] [--origin O]
      open CONNS sockets, print READY <opened>, keep them open until a line on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import sys
import time
from urllib.parse import urlparse


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str]) -> "WebSocket":
        u = urlparse(url)
        reader, writer = await asyncio.open_connection(u.hostname, u.port, limit=2 ** 22)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (f"?{u.query}" if u.query else "")
        lines = [f"GET {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            writer.close()
            raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
        return cls(reader, writer)

    async def recv(self) -> bytes | None:
        """The next text/binary message (fragments joined); None when the server closed."""
        parts = []
        while True:
            b0, b1 = await self.reader.readexactly(2)
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            mask = await self.reader.readexactly(4) if b1 & 0x80 else None
            payload = await self.reader.readexactly(n) if n else b""
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                return None
            parts.append(payload)
            if fin:
                return b"".join(parts)

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.writer.write(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def close(self) -> None:
        try:
            self._send(0x8, struct.pack("!H", 1000))
            self.writer.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


async def open_many(url: str, n: int, headers: dict[str, str], parallel: int = 20) -> tuple[list[WebSocket], int]:
    sem = asyncio.Semaphore(parallel)
    failures = 0

    async def one():
        nonlocal failures
        async with sem:
            try:
                return await asyncio.wait_for(WebSocket.connect(url, headers), 20)
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                failures += 1
                return None

    sockets = await asyncio.gather(*(one() for _ in range(n)))
    return [s for s in sockets if s is not None], failures


async def stdin_line() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def listen(args, headers) -> None:
    sockets, failures = await open_many(args.url, args.conns, headers)
    print(f"READY {len(sockets)}", flush=True)
    raw: list[tuple[int, float, bytes]] = []
    state = {"last": time.monotonic(), "done": False}

    async def reader(i: int, ws: WebSocket):
        while True:
            try:
                msg = await ws.recv()
            except (asyncio.IncompleteReadError, OSError):
                return
            if msg is None:
                return
            now = time.monotonic()
            raw.append((i, now, msg))
            state["last"] = now

    async def until_done():
        await stdin_line()
        state["done"] = True
        state["last"] = max(state["last"], time.monotonic())
        deadline = time.monotonic() + args.max_wait
        while time.monotonic() < deadline and time.monotonic() - state["last"] < args.idle:
            await asyncio.sleep(0.05)

    tasks = [asyncio.ensure_future(reader(i, ws)) for i, ws in enumerate(sockets)]
    await until_done()
    for t in tasks:
        t.cancel()
    for ws in sockets:
        ws.close()
    frames = []
    for i, t, msg in raw:
        try:
            data = json.loads(msg)
        except ValueError:
            continue
        task = data.get("task") if isinstance(data, dict) else None
        if isinstance(task, dict):
            frames.append([i, t, task.get("id"), task.get("version")])
    with open(args.outfile, "w") as f:
        json.dump({"frames": frames, "conns": len(sockets), "failures": failures,
                   "bytes": sum(len(m) for _, _, m in raw)}, f)
    print("WRITTEN", flush=True)


async def hold(args, headers) -> None:
    sockets, failures = await open_many(args.url, args.conns, headers)
    print(f"READY {len(sockets)} {failures}", flush=True)

    async def drain(ws):
        try:
            while await ws.recv() is not None:
                pass
        except (asyncio.IncompleteReadError, OSError):
            pass

    tasks = [asyncio.ensure_future(drain(ws)) for ws in sockets]
    await stdin_line()
    for t in tasks:
        t.cancel()
    for ws in sockets:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["listen", "hold"])
    parser.add_argument("url")
    parser.add_argument("conns", type=int)
    parser.add_argument("outfile", nargs="?")
    parser.add_argument("--cookie", default="")
    parser.add_argument("--origin", default="")
    parser.add_argument("--idle", type=float, default=1.5)
    parser.add_argument("--max-wait", type=float, default=30.0)
    args = parser.parse_args()
    headers = {}
    if args.cookie:
        headers["Cookie"] = args.cookie
    if args.origin:
        headers["Origin"] = args.origin
    asyncio.run(listen(args, headers) if args.mode == "listen" else hold(args, headers))
    os._exit(0)  # the stdin reader thread may still be blocked


if __name__ == "__main__":
    main()
