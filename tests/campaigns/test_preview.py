"""The campaign preview: callable now, waiting by zone, expired, the estimated finish."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from campaigns.preview import campaign_preview
from models import Campaign, JobStatus, Outcome
from tests.factories import make_account, make_campaign, make_job

NY = ["America/New_York"]


def seed(session: Session, contacts: int, **campaign_fields: object) -> tuple[int, int]:
    account = make_account(session, max_concurrency=1000, cps=1.0)
    campaign = make_campaign(session, account, max_concurrency=1000, **campaign_fields)
    for n in range(contacts):
        make_job(
            session,
            campaign,
            f"+1212555{n:04d}",
            zones=NY,
            next_due_at=datetime(2027, 1, 1, tzinfo=UTC),
        )
    return account.id, campaign.id


def test_the_finish_follows_the_window(db_session: Session) -> None:
    account_id, campaign_id = seed(db_session, 100)
    now = datetime(2027, 1, 16, 0, 59, tzinfo=UTC)  # 19:59 in New York
    preview = campaign_preview(db_session, account_id, campaign_id, now)
    assert (preview.pending, preview.callable_now, preview.waiting) == (100, 100, 0)
    assert preview.dial_rate_cps == 1.0
    assert preview.first_call_at == now
    # 60 calls before 20:00 at one a second, the other 40 from 09:00 the next day.
    assert preview.estimated_finish_at == datetime(2027, 1, 16, 14, 0, 40, tzinfo=UTC)
    assert preview.unreached == 0


def test_waiting_contacts_by_zone_and_end_at(db_session: Session) -> None:
    end = datetime(2027, 1, 16, 14, 0, 10, tzinfo=UTC)
    account_id, campaign_id = seed(db_session, 100, end_at=end)
    make_job(
        db_session,
        db_session.get_one(Campaign, campaign_id),
        "+442079460958",
        zones=["Europe/London"],
        status=JobStatus.DONE,
        outcome=Outcome.EXPIRED,
    )
    now = datetime(2027, 1, 16, 2, tzinfo=UTC)  # 21:00 in New York
    preview = campaign_preview(db_session, account_id, campaign_id, now)
    assert (preview.callable_now, preview.waiting, preview.expired) == (0, 100, 1)
    [group] = preview.waiting_by_zone
    assert (group.zones, group.contacts) == (NY, 100)
    assert group.opens_at == datetime(2027, 1, 16, 14, tzinfo=UTC)
    assert preview.first_call_at == group.opens_at
    # end_at comes 10 s after the opening: 10 dialled, 90 left to expire.
    assert preview.estimated_finish_at == end
    assert preview.unreached == 90
    assert preview.now == now


def test_the_first_call_waits_for_start_at_then_the_window(db_session: Session) -> None:
    start = datetime(2027, 1, 16, 18, 30, tzinfo=UTC)  # 13:30 in New York, window open
    account_id, campaign_id = seed(db_session, 3, start_at=start)
    now = datetime(2027, 1, 16, 15, tzinfo=UTC)  # 10:00 in New York: open, but not yet
    preview = campaign_preview(db_session, account_id, campaign_id, now)
    assert (preview.callable_now, preview.waiting) == (0, 3)
    assert preview.first_call_at == start
    # A start_at after the window has shut: the next day's opening.
    db_session.get_one(Campaign, campaign_id).start_at = datetime(2027, 1, 17, 2, tzinfo=UTC)
    shut = campaign_preview(db_session, account_id, campaign_id, now)
    assert shut.first_call_at == datetime(2027, 1, 17, 14, tzinfo=UTC)  # 09:00 the next day


def test_no_first_call_without_pending_contacts(db_session: Session) -> None:
    account_id, campaign_id = seed(db_session, 0)
    preview = campaign_preview(
        db_session, account_id, campaign_id, datetime(2027, 1, 16, tzinfo=UTC)
    )
    assert preview.pending == 0
    assert preview.first_call_at is None
