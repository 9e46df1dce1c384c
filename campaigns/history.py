"""The history of campaigns and schedules: who did what, when and why (`models.CampaignEvent`).

Campaign transitions are recorded by `dialer.campaign_state.transition` itself, so every
caller (the operator's commands, the circuit breaker, the pacer's completion, a schedule's
firing) leaves one; a schedule's own changes are recorded by `campaigns.schedules` with
`record_schedule_event`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.lifecycle import get_campaign
from campaigns.paging import Page, keyset_page
from models import CampaignEvent


def record_schedule_event(
    session: Session,
    schedule_id: int,
    action: str,
    *,
    actor: str,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    campaign_id: int | None = None,
    at: datetime | None = None,
) -> None:
    """Add one event to a schedule's history in the session's transaction (`at` defaults to
    the database's `now()`). `campaign_id` links a firing to the campaign it created."""
    event = CampaignEvent(
        schedule_id=schedule_id,
        campaign_id=campaign_id,
        action=action,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        reason=reason,
    )
    if at is not None:
        event.at = at
    session.add(event)


def campaign_events(
    session: Session,
    account_id: int,
    campaign_id: int,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[CampaignEvent]:
    """The account's campaign's history, oldest first (the schedule's firing that created
    it, if any, then each transition), a page at a time (`campaigns.paging`).

    Raises:
        NotFoundError: `campaign_not_found` (also for another account's campaign).
        DialerError: `invalid_cursor`.
    """
    get_campaign(session, account_id, campaign_id)
    return keyset_page(
        session,
        select(CampaignEvent).where(CampaignEvent.campaign_id == campaign_id),
        f"campaign-events:{campaign_id}",
        [CampaignEvent.at, CampaignEvent.id],
        limit=limit,
        cursor=cursor,
    )


def event_json(event: CampaignEvent) -> dict[str, Any]:
    """One event as JSON-ready types: id, campaign_id, schedule_id, action, from_status,
    to_status, actor, reason, at (ISO 8601, UTC), and for a settings change (action
    `change`) its `changes` ({field: {"before", "after"}}) and the `api_key_id` that made
    it (None otherwise)."""
    return {
        "id": event.id,
        "campaign_id": event.campaign_id,
        "schedule_id": event.schedule_id,
        "action": event.action,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "actor": event.actor,
        "reason": event.reason,
        "at": event.at.isoformat(),
        "changes": event.changes,
        "api_key_id": event.api_key_id,
    }
