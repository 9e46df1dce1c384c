"""A customer's webhook receiver for the tests: a small ASGI app served in a thread
(`tests.servers.serve_app`) that records every request and answers as scripted, hostile
answers included (a gzip bomb, a body dripped a byte at a time); and a raw TCP receiver
that drips its status line (`dripping_status_line`)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MIB = 1 << 20
BOMB_MIB = 1024
"""What a gzip bomb answer unpacks to: 1 GiB of zeros (about 1 MiB on the wire)."""
DRIP_BYTES = 20
"""Bytes a dripping receiver sends, one per interval, before it ends its answer."""


@lru_cache(maxsize=1)
def gzip_bomb(unpacked_mib: int = BOMB_MIB) -> tuple[bytes, bytes, int, bytes]:
    """A gzip stream of `unpacked_mib` MiB of zeros, built without holding it: (header,
    one segment that unpacks to 1 MiB, how many times it repeats, trailer). Each segment
    ends in a full flush, so the segments concatenate into one valid deflate stream."""
    zeros = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(unpacked_mib):
        crc = zlib.crc32(zeros, crc)
    last_block = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    trailer = last_block + struct.pack("<II", crc, (unpacked_mib * MIB) & 0xFFFF_FFFF)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, no name, no mtime
    return header, segment, unpacked_mib, trailer


@contextmanager
def dripping_status_line(interval_s: float) -> Iterator[str]:
    """A TCP receiver that reads a request and answers `HTTP/1.1 200 OK...` one byte every
    `interval_s` (`DRIP_BYTES` bytes, never a whole status line); yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def drip(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Drip: " + b"x" * DRIP_BYTES:
                if stop.wait(interval_s):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:  # the client hung up
                    return

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drip, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """`time.monotonic()` when it arrived."""

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """Answers each path with the statuses scripted for it, in order, then `default`;
    a path in `slow` is answered after that many seconds; a 3xx names `/elsewhere`. A path
    in `bombs` is answered 200 with a gzip bomb (`gzip_bomb`), one in `drip` 200 and then a
    body byte every that many seconds (`DRIP_BYTES` in all)."""

    default: int = 200
    script: dict[str, deque[int]] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    bombs: set[str] = field(default_factory=set)
    drip: dict[str, float] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)

    def answer(self, path: str, *statuses: int) -> None:
        self.script[path] = deque(statuses)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Received(path, headers, body, time.monotonic()))
        if path in self.bombs:
            await self._bomb(send)
            return
        if path in self.drip:
            await self._drip(send, self.drip[path])
            return
        if path in self.slow:
            await asyncio.sleep(self.slow[path])
        queue = self.script.get(path)
        status = queue.popleft() if queue else self.default
        reply_headers = [(b"content-type", b"text/plain")]
        if 300 <= status < 400:
            reply_headers.append((b"location", b"/elsewhere"))
        await send({"type": "http.response.start", "status": status, "headers": reply_headers})
        await send({"type": "http.response.body", "body": b"ok"})

    async def _bomb(self, send: Any) -> None:
        header, segment, repeat, trailer = gzip_bomb()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")],
            }
        )
        for chunk in (header, *[segment] * repeat, trailer):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _drip(self, send: Any, interval_s: float) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(DRIP_BYTES):
            await asyncio.sleep(interval_s)
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
