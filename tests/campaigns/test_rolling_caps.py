"""Rolling per-number frequency caps ("N calls in D days", issue 22 part 4) across two
campaigns and single calls of one account, through the pacer on real PostgreSQL and Redis,
on a controllable clock (no sleeps); and what the calls API, the preview and the report say
of the contacts they hold."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from campaigns.calls import SingleCall, WaitingReason, calls_json, place_call
from campaigns.preview import campaign_preview
from campaigns.reports import campaign_report
from campaigns.schedules import frequency_cap_warnings
from dialer.dispatch.pacer import dispatch_round
from dialer.frequency import Cap, free_at
from dialer.runtime import Runtime
from models import (
    Account,
    CallAttempt,
    CallJob,
    CampaignStatus,
    JobStatus,
    Schedule,
    transaction,
)
from tests.dialer.test_pacer_windows import Clock, seed, utc
from tests.factories import make_campaign, make_job

NY = {"zones": ["America/New_York"]}
PHONE = "+12125550143"
DAY_1 = utc(2027, 1, 11, 15)  # a Monday, 10:00 in New York
CAPS = [{"calls": 1, "days": 1}, {"calls": 3, "days": 30}]
"""HIPAA-style: 1 a day, and FCC 20-186's 3 in 30 days."""


def _attempts(runtime: Runtime) -> list[tuple[int, datetime]]:
    """(campaign id, created at) of every attempt to `PHONE`, oldest first."""
    with transaction(runtime.settings.database_url) as session:
        rows = session.execute(
            select(CallAttempt.campaign_id, CallAttempt.created_at)
            .where(CallAttempt.phone_e164 == PHONE)
            .order_by(CallAttempt.id)
        )
        return [(campaign_id, at) for campaign_id, at in rows]


def _single_call(runtime: Runtime, account_id: int) -> int:
    with transaction(runtime.settings.database_url) as session:
        account = session.get_one(Account, account_id)
        call = SingleCall(to_number=PHONE, message="Your test results are ready.")
        job = place_call(session, account, call, allow_private_webhooks=True, now=runtime.clock())
        return job.id


def _pending(runtime: Runtime) -> list[CallJob]:
    with transaction(runtime.settings.database_url) as session:
        return list(
            session.scalars(
                select(CallJob)
                .where(CallJob.phone_e164 == PHONE, CallJob.status == JobStatus.PENDING)
                .order_by(CallJob.id)
            )
        )


def _round_at(runtime: Runtime, account_id: int, at: datetime) -> list[int]:
    """A pacer round at `at` (twice: a round that only moved contacts asks again); the
    attempts it made are stamped `at` (the database stamps real time; the cap counts
    attempts by their creation). Returns the campaign ids it dialled."""
    runtime.clock = Clock(at)
    before = set(_attempt_ids(runtime))
    dispatch_round(runtime, account_id)
    dispatch_round(runtime, account_id)
    new = [a for a in _attempt_ids(runtime) if a not in before]
    with transaction(runtime.settings.database_url) as session:
        for attempt in session.scalars(select(CallAttempt).where(CallAttempt.id.in_(new))):
            attempt.created_at = at
        return [session.get_one(CallAttempt, attempt_id).campaign_id for attempt_id in sorted(new)]


def _attempt_ids(runtime: Runtime) -> list[int]:
    with transaction(runtime.settings.database_url) as session:
        return list(session.scalars(select(CallAttempt.id)))


def test_rolling_caps_hold_a_number_across_campaigns_and_single_calls(runtime: Runtime) -> None:
    runtime.clock = Clock(DAY_1)
    account_id, first = seed(runtime, {PHONE: NY}, account={"frequency_caps": CAPS})
    with transaction(runtime.settings.database_url) as session:
        account = session.get_one(Account, account_id)
        campaign = make_campaign(session, account, status=CampaignStatus.RUNNING, name="second")
        second = campaign.id
        make_job(session, campaign, PHONE, next_due_at=DAY_1 - timedelta(hours=1), **NY)
    single = _single_call(runtime, account_id)

    # Day 1: one call to the number; the two others wait a day (1 a day), not failed.
    assert len(_round_at(runtime, account_id, DAY_1)) == 1
    held = _pending(runtime)
    assert len(held) == 2
    assert {(job.capped_until, job.next_due_at) for job in held} == {
        (DAY_1 + timedelta(days=1), DAY_1 + timedelta(days=1))
    }
    # Half a day on, the contacts still wait, and the preview and report say so.
    noon = DAY_1 + timedelta(hours=3)
    for campaign_id in {first, second} & {job.campaign_id for job in held}:
        with transaction(runtime.settings.database_url) as session:
            preview = campaign_preview(session, account_id, campaign_id, noon)
            report = campaign_report(session, runtime.pool, account_id, campaign_id, now=noon)
        assert (preview.waiting_for_frequency_cap, preview.callable_now) == (1, 0)
        assert preview.frequency_cap_opens_at == DAY_1 + timedelta(days=1)
        assert report.contacts.waiting_for_frequency_cap == 1
        assert report.contacts.frequency_cap_opens_at == DAY_1 + timedelta(days=1)
    assert _round_at(runtime, account_id, noon) == []

    # Days 2 and 3: one more each; every one of the three contacts got its call.
    assert len(_round_at(runtime, account_id, DAY_1 + timedelta(days=1))) == 1
    assert len(_round_at(runtime, account_id, DAY_1 + timedelta(days=2))) == 1
    assert _pending(runtime) == []
    dialled = [campaign_id for campaign_id, _ in _attempts(runtime)]
    assert sorted(dialled) == sorted([first, second, _campaign_of(runtime, single)])

    # Day 4: a new single call is free of "1 a day" but held by "3 in 30 days" until the
    # first of the three calls is 30 days old.
    day_4 = DAY_1 + timedelta(days=3)
    runtime.clock = Clock(day_4)
    fourth = _single_call(runtime, account_id)
    with transaction(runtime.settings.database_url) as session:
        [state] = calls_json(session, [session.get_one(CallJob, fourth)], day_4)
    assert state["waiting_reason"] == WaitingReason.FREQUENCY_CAP
    assert state["next_attempt_at"] == DAY_1 + timedelta(days=30)
    assert _round_at(runtime, account_id, day_4) == []
    [waiting] = _pending(runtime)
    assert waiting.capped_until == DAY_1 + timedelta(days=30)
    assert _round_at(runtime, account_id, DAY_1 + timedelta(days=30) - timedelta(minutes=1)) == []
    assert len(_round_at(runtime, account_id, DAY_1 + timedelta(days=30))) == 1


def _campaign_of(runtime: Runtime, job_id: int) -> int:
    with transaction(runtime.settings.database_url) as session:
        return session.get_one(CallJob, job_id).campaign_id


def test_free_at_is_the_latest_moment_every_cap_allows() -> None:
    caps = [Cap(1, 1), Cap(3, 30)]
    now = DAY_1
    assert free_at(caps, [], now) is None
    one_hour = [now - timedelta(hours=1)]
    assert free_at(caps, one_hour, now) == now + timedelta(hours=23)
    three = [now - timedelta(days=2), now - timedelta(days=5), now - timedelta(days=20)]
    assert free_at(caps, three, now) == now + timedelta(days=10)  # the 3rd leaves 30 days
    # Both hold: "1 a day" until 22 h from now, "3 in 30 days" until the third is 30 days
    # old (25 days from now): the later one.
    recent = [now - timedelta(hours=2), *three[:2]]
    assert free_at(caps, recent, now) == now + timedelta(days=25)
    assert free_at(caps[:1], recent, now) == now + timedelta(hours=22)
    assert free_at([], one_hour, now) is None


def test_a_schedule_is_warned_once_per_limit_it_outruns() -> None:
    """A daily reminder against 1 a day and 3 in 7 days: the weekly limit stalls it (7 runs a
    week), the daily one does not; hourly outruns both."""
    caps = [{"calls": 1, "days": 1}, {"calls": 3, "days": 7}]
    account = Account(name="x", frequency_caps=caps)
    daily = frequency_cap_warnings(Schedule(cron="0 9 * * *", timezone="UTC"), account, DAY_1)
    assert [w.code for w in daily] == ["frequency_cap_stall"]
    assert "3 per 7 days" in daily[0].message
    hourly = frequency_cap_warnings(Schedule(cron="0 * * * *", timezone="UTC"), account, DAY_1)
    assert len(hourly) == 2
    weekly = frequency_cap_warnings(Schedule(cron="0 9 * * 1", timezone="UTC"), account, DAY_1)
    assert weekly == []
    assert frequency_cap_warnings(Schedule(cron="* * * * *", timezone="UTC"), Account(
        name="y", frequency_caps=[]), DAY_1) == []  # fmt: skip
