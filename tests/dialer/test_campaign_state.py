"""The campaign transition table: every pair it lists, and a refusal for every other."""

from __future__ import annotations

import pytest

from dialer.campaign_state import TRANSITIONS, CampaignAction, transition
from dialer.errors import ConflictError
from models import Campaign, CampaignStatus


@pytest.mark.parametrize("status", list(CampaignStatus))
@pytest.mark.parametrize("action", list(CampaignAction))
def test_every_status_and_action(status: CampaignStatus, action: CampaignAction) -> None:
    campaign = Campaign(id=7, status=status, status_reason="before")
    target = TRANSITIONS.get((status, action))
    if target is None:
        with pytest.raises(ConflictError) as refused:
            transition(campaign, action)
        assert refused.value.code == "invalid_state"
        assert (campaign.status, campaign.status_reason) == (status, "before")
        return
    transition(campaign, action, reason="why")
    assert campaign.status is target
    assert campaign.status_reason == "why"
    assert (campaign.started_at is not None) is (action is CampaignAction.START)
    finished = target in (CampaignStatus.CANCELED, CampaignStatus.COMPLETED)
    assert (campaign.finished_at is not None) is finished


def test_final_statuses_have_no_way_out() -> None:
    for status in (CampaignStatus.CANCELED, CampaignStatus.COMPLETED):
        assert not [pair for pair in TRANSITIONS if pair[0] is status]
