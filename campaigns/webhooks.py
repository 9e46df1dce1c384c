"""What operators do with the account's webhooks: list deliveries, send one again, show or
rotate the signing secret (the CLI's `dialer webhooks`, `dialer accounts webhook-secret`,
and `/v1/webhooks/deliveries`)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.paging import DEFAULT_LIMIT, Page, keyset_page
from dialer.errors import NotFoundError
from dialer.webhooks.keys import current_secret, rotate_secret
from dialer.webhooks.outbox import dispatch_after_commit
from models import Account, WebhookEvent, WebhookStatus, utcnow


def delivery_view(event: WebhookEvent) -> dict[str, Any]:
    """One delivery as the CLI and the API show it (`event`: the body as sent)."""
    return {
        "id": event.event_id,
        "type": event.type,
        "url": event.url,
        "status": event.status.value,
        "attempts": event.attempts,
        "next_attempt_at": (
            event.next_attempt_at if event.status is WebhookStatus.PENDING else None
        ),
        "last_status_code": event.last_status_code,
        "last_error": event.last_error,
        "created_at": event.created_at,
        "delivered_at": event.delivered_at,
        "event": json.loads(event.body),
    }


def list_deliveries(
    session: Session,
    account_id: int,
    *,
    status: WebhookStatus | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[WebhookEvent]:
    """The account's webhook deliveries, newest first, `limit`
    (1..`campaigns.paging.MAX_LIMIT`) per page.

    Raises:
        DialerError: `invalid_cursor`; `invalid_option` for a limit out of bounds.
    """
    query = select(WebhookEvent).where(WebhookEvent.account_id == account_id)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    return keyset_page(
        session, query, "deliveries", [WebhookEvent.id], descending=True, limit=limit, cursor=cursor
    )


def retry_delivery(session: Session, account_id: int, event_id: str) -> WebhookEvent:
    """Send delivery `event_id` of the account once more, now, whatever its status; if that
    try fails it goes on with its retry schedule, or is dead-lettered again when its tries
    or its 24 h window are spent.

    Raises:
        NotFoundError: `webhook_delivery_not_found` (also for another account's delivery).
    """
    event = session.scalars(
        select(WebhookEvent)
        .where(WebhookEvent.account_id == account_id, WebhookEvent.event_id == event_id)
        .with_for_update()
    ).one_or_none()
    if event is None:
        raise NotFoundError("webhook_delivery_not_found", f"no webhook delivery {event_id!r}")
    event.status = WebhookStatus.PENDING
    event.next_attempt_at = utcnow()
    dispatch_after_commit(session, [event.event_id])
    return event


def webhook_secret(session: Session, account_name: str, *, rotate: bool) -> str:
    """Account `account_name`'s signing secret (created if none), or a new one with
    `rotate` (the old one keeps signing for 24 h).

    Raises:
        NotFoundError: `account_not_found`.
    """
    account = session.scalars(
        select(Account).where(Account.name == account_name).with_for_update()
    ).one_or_none()
    if account is None:
        raise NotFoundError("account_not_found", f"no account {account_name!r}")
    if rotate:
        return rotate_secret(account, utcnow())
    return current_secret(session, account.id)
