"""`Idempotency-Key`: a POST retried with the same key and body gets the first response,
and nothing is done again.

The key is claimed *before* the request runs, by inserting its row (`account_id`, `key`)
as `running`; the primary key lets only one of two concurrent requests claim it. A request
that commits work stores its reply (`finish`) in the very transaction that does the work,
so the work and its reply commit together; the response actually sent replaces it when the
request ends. A request that failed on the server before storing a reply drops the claim
(`release` removes only a `running` row: nothing was committed, the client may retry); one
that failed after (a lost broker, a database blip between commit and reply) is answered,
and retried, with its stored reply (`stored`). A stored response is answered for 24 hours
(`TTL`); after that the key may be used afresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dialer.errors import ConflictError, UnprocessableError
from models import IdempotencyKey, utcnow

TTL = timedelta(hours=24)
"""How long a key's first response is answered to its retries."""
RUNNING = "running"
DONE = "done"


def request_hash(method: str, path: str, query: str, body_digest: str) -> str:
    """SHA-256 hex naming one request: method, path, query string and the body's SHA-256."""
    return hashlib.sha256(f"{method} {path}?{query}\n{body_digest}".encode()).hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """The first response to a key: HTTP status, body bytes, `Content-Type`."""

    status: int
    body: bytes
    content_type: str | None


def claim(session: Session, account_id: int, key: str, hashed: str) -> StoredResponse | None:
    """Claim `key` for the request `hashed` (see `request_hash`).

    Returns None when the caller now holds the claim and must run the request (then
    `finish` or `release` it), or the stored response of the same request made before.

    Raises:
        UnprocessableError: `idempotency_key_reused` (422), the key came with another request.
        ConflictError: `request_in_progress` (409), the first request is still running.
    """
    claimed = session.execute(
        insert(IdempotencyKey)
        .values(account_id=account_id, key=key, request_hash=hashed, status=RUNNING)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    ).first()
    if claimed is not None:
        return None
    row = session.get(IdempotencyKey, (account_id, key), with_for_update=True)
    if row is None:  # released between the insert and the read: it ran and failed
        raise ConflictError("request_in_progress", "a request with this key is running")
    if row.created_at < utcnow() - TTL:
        row.request_hash, row.status, row.created_at = hashed, RUNNING, utcnow()
        row.response_status = row.response_body = row.response_type = None
        return None
    if row.request_hash != hashed:
        raise UnprocessableError(
            "idempotency_key_reused",
            "this Idempotency-Key was used with another request in the last 24 hours",
        )
    if row.status == RUNNING or row.response_status is None or row.response_body is None:
        raise ConflictError(
            "request_in_progress", "the first request with this Idempotency-Key is still running"
        )
    return StoredResponse(row.response_status, row.response_body, row.response_type)


def finish(session: Session, account_id: int, key: str, response: StoredResponse) -> None:
    """Keep the response of the request that holds the claim on `key`."""
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
        .values(
            status=DONE,
            response_status=response.status,
            response_body=response.body,
            response_type=response.content_type,
        )
    )


def stored(session: Session, account_id: int, key: str) -> StoredResponse | None:
    """The response kept for `key` (`finish`), or None while none is."""
    row = session.get(IdempotencyKey, (account_id, key))
    if row is None or row.status != DONE or row.response_status is None:
        return None
    return StoredResponse(row.response_status, row.response_body or b"", row.response_type)


def release(session: Session, account_id: int, key: str) -> None:
    """Drop the claim on `key` (its request failed on the server; a retry runs afresh)."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id,
            IdempotencyKey.key == key,
            IdempotencyKey.status == RUNNING,
        )
    )
