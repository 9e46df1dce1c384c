"""Log context for every request: a request id (the caller's `X-Request-ID` when it is a
plain token, else a new one, echoed in the reply) bound with structlog's contextvars at the
start of the request and cleared with it, so every line the request writes names it. The
caller's account is bound once authenticated (`dialer.web.deps.CurrentAccount`), the
attempt by the provider webhooks."""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """ASGI middleware: binds `request_id` for the request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == REQUEST_ID_HEADER.encode()),
            "",
        )
        request_id = given if _TOKEN.match(given) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()
