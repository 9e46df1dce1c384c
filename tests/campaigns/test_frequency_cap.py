"""Contacts held by the per-number frequency cap, as the report, the preview and their
estimates show them: their own state and opening time, not a calling window's (issue 24).
Through the pacer on real PostgreSQL and Redis, with a controllable clock."""

from __future__ import annotations

from datetime import timedelta

from campaigns.preview import campaign_preview
from campaigns.reports import campaign_report
from dialer.calls import held_by_cap
from dialer.dispatch.pacer import dispatch_round
from dialer.runtime import Runtime
from models import Account, AttemptStatus, CallAttempt, JobStatus, transaction
from tests.dialer.test_pacer_windows import Clock, job, seed, utc
from tests.factories import make_campaign, make_job

NY = {"zones": ["America/New_York"]}
LA = {"zones": ["America/Los_Angeles"]}
CAPPED = "+12125550143"
"""Called 3 times in the last 24 hours by another campaign: the default cap."""
FREE = "+12125550144"
SHUT = "+13105550143"
"""In Los Angeles, 07:00 at `NOW`: its window opens at 09:00 local, 17:00 UTC."""
NOW = utc(2027, 1, 15, 15)  # 10:00 in New York
CAP_OPENS = utc(2027, 1, 15, 19)
"""The oldest of the 3 calls (20 hours before `NOW`) leaves the last 24 hours: 14:00 in New
York, inside the window."""


def _capped_campaign(runtime: Runtime) -> tuple[int, int]:
    account_id, campaign_id = seed(runtime, {CAPPED: NY, FREE: NY, SHUT: LA})
    with transaction(runtime.settings.database_url) as session:
        account = session.get_one(Account, account_id)
        assert account.frequency_caps == [{"calls": 3, "days": 1}]
        other = make_campaign(session, account)
        earlier = make_job(session, other, CAPPED, status=JobStatus.DONE, **NY)
        for hours_ago in (20, 10, 1):
            session.add(
                CallAttempt(
                    job_id=earlier.id,
                    campaign_id=other.id,
                    account_id=account_id,
                    attempt_no=1,
                    phone_e164=CAPPED,
                    from_e164="+15005550006",
                    status=AttemptStatus.NO_ANSWER,
                    created_at=NOW - timedelta(hours=hours_ago),
                    lease_expires_at=NOW,
                )
            )
    runtime.clock = Clock(NOW)
    dispatch_round(runtime, account_id)
    dispatch_round(runtime, account_id)  # a round that only moved contacts asks again
    assert job(runtime, FREE, campaign_id).status is JobStatus.IN_PROGRESS
    return account_id, campaign_id


def test_contacts_held_by_the_frequency_cap_are_reported_apart_from_the_window(
    runtime: Runtime,
) -> None:
    account_id, campaign_id = _capped_campaign(runtime)
    assert held_by_cap(job(runtime, CAPPED, campaign_id), NOW) == CAP_OPENS
    assert held_by_cap(job(runtime, SHUT, campaign_id), NOW) is None  # the window holds it
    with transaction(runtime.settings.database_url) as session:
        report = campaign_report(session, runtime.pool, account_id, campaign_id, now=NOW)
    contacts = report.contacts
    assert (contacts.waiting_for_frequency_cap, contacts.frequency_cap_opens_at) == (1, CAP_OPENS)
    assert (contacts.waiting_for_window, contacts.pending, contacts.dialing) == (1, 0, 1)
    states = contacts.model_dump(exclude={"total", "rejected", "frequency_cap_opens_at"})
    assert sum(states.values()) == contacts.total == 3
    # Dialled once the cap lets it: no longer held.
    runtime.clock = Clock(CAP_OPENS)
    dispatch_round(runtime, account_id)
    assert job(runtime, CAPPED, campaign_id).status is JobStatus.IN_PROGRESS
    with transaction(runtime.settings.database_url) as session:
        later = campaign_report(session, runtime.pool, account_id, campaign_id, now=CAP_OPENS)
    assert (later.contacts.waiting_for_frequency_cap, later.contacts.frequency_cap_opens_at) == (
        0,
        None,
    )


def test_the_preview_does_not_say_the_window_opens_now_for_contacts_held_by_the_cap(
    runtime: Runtime,
) -> None:
    account_id, campaign_id = _capped_campaign(runtime)
    with transaction(runtime.settings.database_url) as session:
        preview = campaign_preview(session, account_id, campaign_id, NOW)
    assert (preview.callable_now, preview.waiting) == (0, 2)
    assert (preview.waiting_for_frequency_cap, preview.frequency_cap_opens_at) == (1, CAP_OPENS)
    by_zone = {tuple(g.zones): g for g in preview.waiting_by_zone}
    new_york = by_zone[("America/New_York",)]
    assert (new_york.contacts, new_york.frequency_capped, new_york.opens_at) == (1, 1, CAP_OPENS)
    los_angeles = by_zone[("America/Los_Angeles",)]
    assert (los_angeles.frequency_capped, los_angeles.opens_at) == (0, utc(2027, 1, 15, 17))


def test_the_estimated_finish_waits_for_the_real_due_times(runtime: Runtime) -> None:
    """Not a minute away: the contact held by the cap is not called before 19:00 UTC."""
    account_id, campaign_id = _capped_campaign(runtime)
    with transaction(runtime.settings.database_url) as session:
        report = campaign_report(session, runtime.pool, account_id, campaign_id, now=NOW)
        preview = campaign_preview(session, account_id, campaign_id, NOW)
    assert report.eta.finish_at is not None and report.eta.finish_at > CAP_OPENS
    assert report.eta.finish_at < CAP_OPENS + timedelta(minutes=5)
    assert preview.estimated_finish_at is not None
    assert CAP_OPENS < preview.estimated_finish_at < CAP_OPENS + timedelta(minutes=5)
