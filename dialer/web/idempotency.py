"""`Idempotency-Key` on every authenticated POST, as ASGI middleware (it must see the
response to keep it): see `campaigns.idempotency` for the rules.

A POST without the header, or that `dialer.web.guards.Authenticate` did not admit with an
API key (the page, the provider webhooks), passes through untouched; the key's account is
the one `Authenticate` found, not looked up again. With both, the body is spooled (in memory up to
1 MB, then on disk: a campaign CSV may be large) and hashed, the key is claimed in its own
transaction, and then either the stored response is sent again (with
`Idempotent-Replayed: true`), or the request runs and its response is kept.

The claim is left on the request (`held_claim`), so a route whose work must not be done
twice stores its reply in the transaction that does the work (`keep_reply`). A request
that then fails on the server (5xx, or an exception) is answered with that stored reply,
not with the failure: the work was done, and a retry with the key gets the same reply.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import psycopg
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns import idempotency
from dialer.errors import DatabaseUnavailableError, DialerError
from dialer.web.errors import error_response
from dialer.web.guards import CALLER, KeyHolder, header
from models import transaction

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_CHUNK = 65536
_SPOOL_IN_MEMORY = 1024 * 1024
_CLAIM_STATE = "idempotency_claim"


@dataclass(frozen=True)
class Claim:
    """The `Idempotency-Key` a request holds while it runs: its account and key."""

    account_id: int
    key: str


def held_claim(request: Request) -> Claim | None:
    """The key this request claimed (`IdempotencyMiddleware`), or None (no header)."""
    claim = getattr(request.state, _CLAIM_STATE, None)
    return claim if isinstance(claim, Claim) else None


def keep_reply(session: Session, claim: Claim | None, status: int, reply: BaseModel) -> None:
    """Store `reply` (JSON by alias, HTTP `status`) as the response to the request's key, in
    `session`: the transaction that does the request's work, so both commit or neither
    does. Without a claim, nothing to do."""
    if claim is None:
        return
    body = reply.model_dump_json(by_alias=True).encode()
    response = idempotency.StoredResponse(status, body, "application/json")
    idempotency.finish(session, claim.account_id, claim.key, response)


class IdempotencyMiddleware:
    """Answer a retried POST (same account, same `Idempotency-Key`) from its first run."""

    def __init__(self, app: ASGIApp, database_url: Callable[[], str]) -> None:
        self.app = app
        self.database_url = database_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key = header(scope, b"idempotency-key")
        # The API key `Authenticate` admitted (outside this middleware); none: not a keyed
        # request (the page, the provider webhooks), or refused already.
        caller: KeyHolder | None = scope.get("state", {}).get(CALLER)
        if key is None or caller is None:
            await self.app(scope, receive, send)
            return
        try:
            await self._idempotent(scope, receive, send, key, caller.account_id)
        except DialerError as error:
            await error_response(error)(scope, receive, send)
        except (sqlalchemy.exc.OperationalError, psycopg.OperationalError):
            # The claim's own transaction could not reach PostgreSQL: nothing ran.
            await error_response(DatabaseUnavailableError())(scope, receive, send)

    async def _idempotent(
        self, scope: Scope, receive: Receive, send: Send, key: str, account_id: int
    ) -> None:
        if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
            raise DialerError(
                "invalid_idempotency_key",
                f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable characters",
            )
        url = self.database_url()
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            digest = await _spool(receive, spool)
            hashed = idempotency.request_hash(
                scope["method"], scope["path"], scope["query_string"].decode("latin-1"), digest
            )
            stored = await run_in_threadpool(_claim, url, account_id, key, hashed)
            if stored is not None:
                await _replay(stored, send)
                return
            scope.setdefault("state", {})[_CLAIM_STATE] = Claim(account_id, key)
            spool.seek(0)
            status, body, content_type = 500, bytearray(), None
            held: list[Message] = []

            async def capture(message: Message) -> None:
                # Held until the response is kept: a client that retries the moment it has
                # the reply must find it stored, not still `running` (409).
                nonlocal status, content_type
                if message["type"] == "http.response.start":
                    status = message["status"]
                    content_type = next(
                        (
                            v.decode("latin-1")
                            for k, v in message["headers"]
                            if k == b"content-type"
                        ),
                        None,
                    )
                elif message["type"] == "http.response.body":
                    body.extend(message.get("body", b""))
                held.append(message)

            try:
                await self.app(scope, _replaying(spool, receive), capture)
            except Exception as error:
                kept = await _settle_failure(url, account_id, key)
                if kept is None:
                    raise
                log.error("request_failed_after_its_work_committed", key=key, error=repr(error))
                await _replay(kept, send)
                return
            except BaseException:
                await run_in_threadpool(_release, url, account_id, key)
                raise
        if status >= 500 or status == 429:
            # A server failure, or a limit that lifts: the same key may be sent again and
            # run, unless the work committed its reply (then that reply is the answer).
            kept = await _settle_failure(url, account_id, key)
            if kept is not None:
                log.error("request_failed_after_its_work_committed", key=key, status=status)
                await _replay(kept, send)
                return
        else:
            response = idempotency.StoredResponse(status, bytes(body), content_type)
            try:
                await run_in_threadpool(_finish, url, account_id, key, response)
            except (sqlalchemy.exc.OperationalError, psycopg.OperationalError) as error:
                # The key stays `running` (409 to retries) until it expires.
                log.error("idempotency_response_not_kept", key=key, error=str(error))
        for message in held:
            await send(message)


def _claim(url: str, account_id: int, key: str, hashed: str) -> idempotency.StoredResponse | None:
    with transaction(url) as session:
        return idempotency.claim(session, account_id, key, hashed)


def _finish(url: str, account_id: int, key: str, response: idempotency.StoredResponse) -> None:
    with transaction(url) as session:
        idempotency.finish(session, account_id, key, response)


def _release(url: str, account_id: int, key: str) -> None:
    with transaction(url) as session:
        idempotency.release(session, account_id, key)


def _release_or_read(url: str, account_id: int, key: str) -> idempotency.StoredResponse | None:
    with transaction(url) as session:
        idempotency.release(session, account_id, key)
        return idempotency.stored(session, account_id, key)


async def _settle_failure(url: str, account_id: int, key: str) -> idempotency.StoredResponse | None:
    """The request failed on the server: drop its claim if it committed nothing, and
    return the reply its work stored with it (`keep_reply`), if any. If PostgreSQL cannot
    be asked, None: the claim then stays `running` (409 to retries) until it expires,
    never released for work that may have committed."""
    try:
        return await run_in_threadpool(_release_or_read, url, account_id, key)
    except (sqlalchemy.exc.OperationalError, psycopg.OperationalError) as error:
        log.error("idempotency_claim_not_settled", key=key, error=str(error))
        return None


async def _spool(receive: Receive, spool: IO[bytes]) -> str:
    """Read the whole request body into `spool`; its SHA-256 hex."""
    digest = hashlib.sha256()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise DialerError("client_disconnected", "the client went away mid-request")
        chunk = message.get("body", b"")
        digest.update(chunk)
        spool.write(chunk)
        more = message.get("more_body", False)
    return digest.hexdigest()


def _replaying(spool: IO[bytes], receive: Receive) -> Receive:
    """A `receive` that gives the spooled body again, then defers to the real one."""
    done = False

    async def replay() -> Message:
        nonlocal done
        if done:
            return await receive()
        chunk = spool.read(_CHUNK)
        more = len(chunk) == _CHUNK
        done = not more
        return {"type": "http.request", "body": chunk, "more_body": more}

    return replay


async def _replay(stored: idempotency.StoredResponse, send: Send) -> None:
    headers = [
        (b"idempotent-replayed", b"true"),
        (b"content-length", str(len(stored.body)).encode()),
    ]
    if stored.content_type:
        headers.append((b"content-type", stored.content_type.encode("latin-1")))
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body})


def document_idempotency(app: FastAPI) -> None:
    """Describe the optional `Idempotency-Key` header on every POST that takes a bearer
    key, in the app's OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        for operations in document.get("paths", {}).values():
            post = operations.get("post")
            if post is None or not post.get("security"):
                continue
            post.setdefault("parameters", []).append(
                {
                    "name": HEADER,
                    "in": "header",
                    "required": False,
                    "description": "Retry-safe: the same key and body within 24 h get the "
                    "first response and do nothing again; another body is 422 "
                    "`idempotency_key_reused`; while the first runs, 409 `request_in_progress`.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
                }
            )
            post["responses"].setdefault(
                "409", {"description": "`request_in_progress`", **_error_content()}
            )
            post["responses"].setdefault(
                "422",
                {"description": "`idempotency_key_reused`, `invalid_json`", **_error_content()},
            )
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _error_content() -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
