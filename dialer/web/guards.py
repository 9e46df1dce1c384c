"""What every request passes before the app reads its body, as ASGI middleware:

- `BodyLimit`: the body's size. An upload route's (`POST /v1/campaigns`, `/v1/dnc/import`,
  the page's `/campaigns`) may be `Settings.upload_max_bytes`, contacts pushed to a
  schedule 10 MiB (they are read in memory), any other body (JSON, the provider callbacks,
  the page's other forms) `Settings.body_max_bytes`. A declared
  `Content-Length` past the bound is refused before a byte is read; a chunked body is
  counted as it streams and cut at the bound. Either way the reply is 413
  `body_too_large`, whatever the app had started to answer (outside `/v1`, the page's
  error page with that code and message).
- `Authenticate`: the API key of every `/v1` request but the provider webhooks (which
  carry a signature instead), checked, with the key's rate limit (`dialer.web.quotas`),
  in a short transaction of its own: an unauthenticated upload is refused 401 with its
  body unread, and the key's `last_used_at` is never written in the request's transaction
  (where every concurrent request of the key would wait on that row for as long as the
  slowest holds it). The handlers' dependencies read the result (`dialer.web.deps`).

Both answer in the one error shape (`dialer.web.errors.error_response`), the page's error
page aside: they run outside the app's exception handlers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis
import sqlalchemy.exc
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns.accounts import authenticate
from campaigns.schedules import MAX_PUSHED_BYTES
from dialer.errors import (
    BodyTooLargeError,
    DatabaseUnavailableError,
    DialerError,
    RedisUnavailableError,
    UnauthenticatedError,
)
from dialer.settings import Settings
from dialer.web.errors import error_response
from dialer.web.quotas import RequestQuotas
from models import transaction

_UPLOADS = re.compile(r"^/(v1/campaigns|v1/dnc/import|campaigns)/?$")
"""The routes whose body may be an upload (a CSV, spooled to disk as it is read): the
API's, and the page's new campaign (`dialer.web.routers.pages`)."""
_PUSHED = re.compile(r"^/v1/schedules/[^/]+/contacts/?$")
"""The route of contacts pushed to a schedule (read in memory, at most
`campaigns.schedules.MAX_PUSHED_BYTES`)."""
_KEYED = re.compile(r"^/v1/(?!providers/)")
"""The routes that take an API key: all of `/v1` but the provider webhooks."""
CALLER = "caller"
"""Where `Authenticate` leaves the `KeyHolder` in the request's `scope["state"]`."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header `name` (lower case), or None."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class BodyLimit:
    """ASGI middleware: bound every request body (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Callable[[], Settings],
        page_error: Callable[[Scope, DialerError], ASGIApp] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.page_error = page_error
        """How a refusal reads outside `/v1` (the page's HTML); None: the error shape."""

    def _refusal(self, scope: Scope, limit: int) -> ASGIApp:
        error = BodyTooLargeError(limit)
        if self.page_error is not None and not scope["path"].startswith("/v1/"):
            return self.page_error(scope, error)
        return error_response(error)

    def _limit(self, scope: Scope) -> int:
        settings = self.settings()
        if scope["method"] == "POST" and _UPLOADS.match(scope["path"]):
            return settings.upload_max_bytes
        if scope["method"] == "POST" and _PUSHED.match(scope["path"]):
            return min(settings.upload_max_bytes, MAX_PUSHED_BYTES)
        return settings.body_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await self._refusal(scope, limit)(scope, receive, send)
            return
        received = 0
        over = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The app sees the client go away: it stops reading, and whatever it
                    # answers is dropped for the 413 below.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await self._refusal(scope, limit)(scope, receive, send)


@dataclass(frozen=True)
class KeyHolder:
    """The API key a request came with: its id and name, and its account's id."""

    key_id: int
    key_name: str
    account_id: int


def _admit(database_url: str, quotas: RequestQuotas, token: str) -> KeyHolder:
    with transaction(database_url) as session:
        account, key = authenticate(session, token)
        holder = KeyHolder(key.id, key.name, account.id)
    quotas.admit(holder.key_id)
    return holder


class Authenticate:
    """ASGI middleware: the API key of a `/v1` request, before its body (see the module
    docstring). Answers 401 `unauthenticated`, `unknown_api_key`, `revoked_api_key`,
    429 `rate_limited`, or 503 `database_unavailable` / `redis_unavailable`; else leaves
    the `KeyHolder` in `scope["state"]["caller"]`."""

    def __init__(
        self, app: ASGIApp, settings: Callable[[], Settings], quotas: RequestQuotas
    ) -> None:
        self.app = app
        self.settings = settings
        self.quotas = quotas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _KEYED.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise UnauthenticatedError(
                    "unauthenticated", "send Authorization: Bearer <api key>"
                )
            holder = await run_in_threadpool(
                _admit, self.settings().database_url, self.quotas, token.strip()
            )
        except DialerError as error:
            await error_response(error)(scope, receive, send)
            return
        except (sqlalchemy.exc.OperationalError, psycopg.OperationalError):
            await error_response(DatabaseUnavailableError())(scope, receive, send)
            return
        # The rate limiter's Redis is down, or turned replica (`READONLY`) in a failover.
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
            await error_response(RedisUnavailableError())(scope, receive, send)
            return
        scope.setdefault("state", {})[CALLER] = holder
        await self.app(scope, receive, send)
