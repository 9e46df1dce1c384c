"""The campaign transition table: every pair it lists, and a refusal for every other; each
transition recorded in the campaign's history with who and why."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.campaign_state import TRANSITIONS, CampaignAction, transition
from dialer.errors import ConflictError
from models import Campaign, CampaignEvent, CampaignStatus
from tests.factories import make_account, make_campaign


@pytest.mark.parametrize("status", list(CampaignStatus))
@pytest.mark.parametrize("action", list(CampaignAction))
def test_every_status_and_action(
    db_session: Session, status: CampaignStatus, action: CampaignAction
) -> None:
    campaign = make_campaign(
        db_session, make_account(db_session), status=status, status_reason="before"
    )
    target = TRANSITIONS.get((status, action))
    if target is None:
        with pytest.raises(ConflictError) as refused:
            transition(campaign, action, actor="cli:ada")
        assert refused.value.code == "invalid_state"
        assert (campaign.status, campaign.status_reason) == (status, "before")
        db_session.flush()
        assert db_session.scalar(select(CampaignEvent.id)) is None
        return
    transition(campaign, action, actor="cli:ada", reason="why")
    assert campaign.status is target
    assert campaign.status_reason == "why"
    assert (campaign.started_at is not None) is (action is CampaignAction.START)
    finished = target in (CampaignStatus.CANCELED, CampaignStatus.COMPLETED)
    assert (campaign.finished_at is not None) is finished
    db_session.flush()
    [event] = db_session.scalars(select(CampaignEvent))
    assert (event.campaign_id, event.action, event.from_status, event.to_status) == (
        campaign.id,
        action.value,
        status.value,
        target.value,
    )
    assert (event.actor, event.reason) == ("cli:ada", "why")


def test_a_campaign_in_no_session_is_refused() -> None:
    with pytest.raises(ValueError, match="no session"):
        transition(Campaign(id=7, status=CampaignStatus.DRAFT), CampaignAction.START, actor="x")


def test_final_statuses_have_no_way_out() -> None:
    for status in (CampaignStatus.CANCELED, CampaignStatus.COMPLETED):
        assert not [pair for pair in TRANSITIONS if pair[0] is status]
