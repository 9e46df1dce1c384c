"""Why a queued call waits (`campaigns.calls.waiting_for`), over plain rows and a given
time: the reasons the pacer's own rules would give."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from campaigns.calls import WaitingReason, waiting_for
from dialer.frequency import Cap
from models import CallJob, Campaign, CampaignStatus, JobStatus

NOON_NY = datetime(2027, 1, 15, 17, tzinfo=UTC)
"""12:00 in New York: inside the default 09:00-20:00 window."""
DAILY_3 = (Cap(calls=3, days=1),)
"""At most 3 calls to a number in a day."""


def contact(**fields: object) -> CallJob:
    defaults: dict[str, object] = {
        "phone_e164": "+12125550143",
        "zones": ["America/New_York"],
        "region": "US",
        "status": JobStatus.PENDING,
        "attempt_count": 0,
        "next_due_at": NOON_NY,
    }
    return CallJob(**{**defaults, **fields})


def campaign(**fields: object) -> Campaign:
    """A running campaign with the default window (the database's defaults, unflushed)."""
    defaults: dict[str, object] = {
        "status": CampaignStatus.RUNNING,
        "window_start": time(9),
        "window_end": time(20),
        "window_days": list(range(7)),
        "holidays": [],
        "skip_public_holidays": False,
    }
    return Campaign(**{**defaults, **fields})


def test_a_call_due_now_inside_its_window_does_not_wait() -> None:
    waiting = waiting_for(contact(), campaign(), [], DAILY_3, NOON_NY)
    assert (waiting.reason, waiting.next_attempt_at) == (None, NOON_NY)


def test_a_retry_and_a_later_call_at_say_so() -> None:
    later = NOON_NY + timedelta(hours=1)
    retry = waiting_for(
        contact(attempt_count=1, next_due_at=later), campaign(), [], DAILY_3, NOON_NY
    )
    assert (retry.reason, retry.next_attempt_at) == (WaitingReason.RETRY_SCHEDULED, later)
    call_at = waiting_for(contact(next_due_at=later), campaign(), [], DAILY_3, NOON_NY)
    assert call_at.reason is WaitingReason.SCHEDULED


def test_a_final_call_and_a_paused_campaigns_call_have_no_due_time() -> None:
    done = waiting_for(contact(status=JobStatus.DONE), campaign(), [], DAILY_3, NOON_NY)
    assert (done.reason, done.next_attempt_at) == (None, None)
    paused = waiting_for(contact(), campaign(status=CampaignStatus.PAUSED), [], DAILY_3, NOON_NY)
    assert (paused.reason, paused.next_attempt_at) == (WaitingReason.CAMPAIGN_PAUSED, None)


def test_under_the_cap_the_number_is_not_held() -> None:
    two_calls = [NOON_NY - timedelta(hours=1), NOON_NY - timedelta(hours=2)]
    assert waiting_for(contact(), campaign(), two_calls, DAILY_3, NOON_NY).reason is None
