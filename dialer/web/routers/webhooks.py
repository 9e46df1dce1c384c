"""The account's webhook deliveries: list them, send one again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from campaigns.paging import DEFAULT_LIMIT
from campaigns.webhooks import delivery_view, list_deliveries, retry_delivery
from dialer.web.deps import CurrentAccount, PageCursor, PageLimit, SessionDep
from dialer.web.errors import ANY_OTHER, INVALID, UNAUTHENTICATED, declared
from dialer.web.schemas import WebhookDeliveryOut, WebhookDeliveryPage
from models import WebhookStatus

router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    responses={**UNAUTHENTICATED, **INVALID, **ANY_OTHER},
)


@router.get("/deliveries", response_model=WebhookDeliveryPage)
def deliveries(
    account: CurrentAccount,
    session: SessionDep,
    status: Annotated[WebhookStatus | None, Query(description="Only this status.")] = None,
    limit: PageLimit = DEFAULT_LIMIT,
    cursor: PageCursor = None,
) -> WebhookDeliveryPage:
    """The account's webhook deliveries, newest first (400 `invalid_cursor`)."""
    page = list_deliveries(session, account.id, status=status, limit=limit, cursor=cursor)
    return WebhookDeliveryPage(
        items=[WebhookDeliveryOut.model_validate(delivery_view(e)) for e in page.items],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/deliveries/{delivery_id}/retry",
    response_model=WebhookDeliveryOut,
    responses={404: declared("No such delivery in this account.")},
)
def retry(delivery_id: str, account: CurrentAccount, session: SessionDep) -> WebhookDeliveryOut:
    """Send a delivery once more, now (404 `webhook_delivery_not_found`)."""
    return WebhookDeliveryOut.model_validate(
        delivery_view(retry_delivery(session, account.id, delivery_id))
    )
