"""The campaign state machine: one transition table, used by every status change.

```
draft ──start──▶ running ──pause / trip_breaker──▶ paused ──resume──▶ running
  │                 │                                │
  └────cancel───────┴──────────cancel────────────────┴──▶ canceled
                    └──complete (the pacer: nothing pending or live)──▶ completed
```

The operator's commands (`campaigns.lifecycle`), the circuit breaker (`place_call`) and
the pacer's completion all call `transition`; nothing else assigns `Campaign.status`. Each
transition is recorded in the campaign's history (`models.CampaignEvent`): the action, the
statuses before and after, who (`actor`), when and why.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import object_session

from dialer.errors import ConflictError
from dialer.webhooks.outbox import record_campaign_event
from models import Campaign, CampaignEvent, CampaignStatus, utcnow

BREAKER = "breaker"
"""The actor of a circuit-breaker trip."""
PACER = "pacer"
"""The actor of a completion (the pacer found nothing left to do)."""
SCHEDULER = "scheduler"
"""The actor of what a schedule's firing does."""


class CampaignAction(StrEnum):
    """What may happen to a campaign."""

    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    TRIP_BREAKER = "trip_breaker"
    """An account-level provider error paused it (the circuit breaker)."""
    COMPLETE = "complete"
    """The pacer found no contact pending or in progress."""


TRANSITIONS: dict[tuple[CampaignStatus, CampaignAction], CampaignStatus] = {
    (CampaignStatus.DRAFT, CampaignAction.START): CampaignStatus.RUNNING,
    (CampaignStatus.RUNNING, CampaignAction.PAUSE): CampaignStatus.PAUSED,
    (CampaignStatus.RUNNING, CampaignAction.TRIP_BREAKER): CampaignStatus.PAUSED,
    (CampaignStatus.PAUSED, CampaignAction.RESUME): CampaignStatus.RUNNING,
    (CampaignStatus.DRAFT, CampaignAction.CANCEL): CampaignStatus.CANCELED,
    (CampaignStatus.RUNNING, CampaignAction.CANCEL): CampaignStatus.CANCELED,
    (CampaignStatus.PAUSED, CampaignAction.CANCEL): CampaignStatus.CANCELED,
    (CampaignStatus.RUNNING, CampaignAction.COMPLETE): CampaignStatus.COMPLETED,
}
"""`{(status, action): next status}`; a pair not listed is refused."""

OPERATOR_ACTIONS = (
    CampaignAction.START,
    CampaignAction.PAUSE,
    CampaignAction.RESUME,
    CampaignAction.CANCEL,
)
"""What a person may ask of a campaign (the breaker and the pacer do the rest)."""


def allowed_actions(status: CampaignStatus) -> list[CampaignAction]:
    """The operator's actions (`OPERATOR_ACTIONS`, in that order) that `TRANSITIONS` allows
    from `status`: `[]` for a completed or canceled campaign."""
    return [action for action in OPERATOR_ACTIONS if (status, action) in TRANSITIONS]


def transition(
    campaign: Campaign,
    action: CampaignAction,
    *,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> Campaign:
    """Apply `action` to `campaign` in place, record it in the history, and return it.

    Sets `started_at` on start, `finished_at` on cancel and completion, and `status_reason`
    to `reason` (cleared on resume and start). The event (`models.CampaignEvent`: action,
    from and to status, `actor`, `reason`, `now`) is added to the session `campaign`
    belongs to, so it commits or rolls back with the change. `actor` says who:
    `cli:<os user>`, `api:<account>`, `scheduler`, `breaker`, `pacer`. A completion or a
    pause also writes its webhook event (`campaign.completed`, `campaign.paused`) there.

    Raises:
        ValueError: `campaign` is not in a session (nowhere to record the event).
        ConflictError: `invalid_state`, the action does not apply to the campaign's status
            (e.g. resuming a completed campaign).
    """
    target = TRANSITIONS.get((campaign.status, action))
    if target is None:
        raise ConflictError(
            "invalid_state",
            f"cannot {action.value.replace('_', ' ')} campaign {campaign.id}: "
            f"it is {campaign.status.value}",
        )
    session = object_session(campaign)
    if session is None:
        raise ValueError(f"campaign {campaign.id} is in no session: its event cannot be recorded")
    at = now or utcnow()
    session.add(
        CampaignEvent(
            campaign_id=campaign.id,
            action=action.value,
            from_status=campaign.status.value,
            to_status=target.value,
            actor=actor,
            reason=reason,
            at=at,
        )
    )
    campaign.status = target
    campaign.status_reason = reason
    if action is CampaignAction.START:
        campaign.started_at = at
    if target in (CampaignStatus.CANCELED, CampaignStatus.COMPLETED):
        campaign.finished_at = at
    record_campaign_event(campaign, breaker=action is CampaignAction.TRIP_BREAKER, now=at)
    return campaign
