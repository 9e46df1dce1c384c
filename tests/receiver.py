"""A customer's webhook receiver for the tests: a small ASGI app served in a thread
(`tests.servers.serve_app`) that records every request and answers as scripted."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


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
    a path in `slow` is answered after that many seconds; a 3xx names `/elsewhere`."""

    default: int = 200
    script: dict[str, deque[int]] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
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
        if path in self.slow:
            await asyncio.sleep(self.slow[path])
        queue = self.script.get(path)
        status = queue.popleft() if queue else self.default
        reply_headers = [(b"content-type", b"text/plain")]
        if 300 <= status < 400:
            reply_headers.append((b"location", b"/elsewhere"))
        await send({"type": "http.response.start", "status": status, "headers": reply_headers})
        await send({"type": "http.response.body", "body": b"ok"})
