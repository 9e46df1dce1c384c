"""Calling windows, start/end, call_at/call_before and the frequency cap, through the
pacer and place_call on real PostgreSQL and Redis, with a controllable clock (no sleeps)."""

from __future__ import annotations

import time as time_module
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from dialer.dispatch.attempt_end import decide
from dialer.dispatch.dialing import PlaceResult, place_call
from dialer.dispatch.pacer import dispatch_round
from dialer.pool import Keys
from dialer.pool.reconcile import ensure_pool
from dialer.runtime import Runtime
from dialer.windows import CallingWindow, ContactSchedule, Place
from models import (
    Account,
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignStatus,
    JobStatus,
    Outcome,
    transaction,
)
from tests.dialer.test_attempt_end import RANG
from tests.factories import make_account, make_campaign, make_job

ZONES = {
    "+12125550143": "America/New_York",
    "+13105550143": "America/Los_Angeles",
    "+442079460958": "Europe/London",
    "+61255550143": "Australia/Sydney",
}


class Clock:
    """The test's time: `runtime.clock`, moved by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def seed(
    runtime: Runtime,
    contacts: dict[str, dict[str, Any]],
    campaign: dict[str, Any] | None = None,
    account: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """An account and a running campaign with one pending contact per phone, due long
    ago (the pacer finds each window itself)."""
    with transaction(runtime.settings.database_url) as session:
        acct = make_account(session, **(account or {}))
        camp = make_campaign(session, acct, status=CampaignStatus.RUNNING, **(campaign or {}))
        for phone, fields in contacts.items():
            make_job(session, camp, phone, next_due_at=utc(2026, 1, 1), **fields)
        ids = acct.id, camp.id
    ensure_pool(runtime.pool, runtime.settings.database_url, ids[0])
    return ids


def dialled(runtime: Runtime) -> set[str]:
    """The numbers the pacer made an attempt for."""
    with transaction(runtime.settings.database_url) as session:
        return set(session.scalars(select(CallAttempt.phone_e164)))


def walk(
    runtime: Runtime, clock: Clock, account_id: int, until: datetime, step: timedelta
) -> dict[str, datetime]:
    """Run pacer rounds at each step of the clock; phone -> the clock time it was claimed."""
    first: dict[str, datetime] = {}
    while clock.now <= until:
        dispatch_round(runtime, account_id)
        dispatch_round(runtime, account_id)  # a round that only moved contacts asks again
        for phone in dialled(runtime):
            first.setdefault(phone, clock.now)
        clock.now += step
    return first


def job(runtime: Runtime, phone: str, campaign_id: int | None = None) -> CallJob:
    query = select(CallJob).where(CallJob.phone_e164 == phone)
    if campaign_id is not None:
        query = query.where(CallJob.campaign_id == campaign_id)
    with transaction(runtime.settings.database_url) as session:
        return session.scalars(query).one()


def test_each_contact_is_dialled_only_inside_its_own_window(runtime: Runtime) -> None:
    clock = Clock(utc(2027, 1, 15, 5))  # a Friday: midnight in New York
    runtime.clock = clock
    contacts = {phone: {"zones": [zone]} for phone, zone in ZONES.items()}
    account_id, _ = seed(runtime, contacts)
    # Nothing is open at 05:00 UTC (00:00 NY, 21:00 LA, 05:00 London, 16:00 Sydney)...
    # except Sydney.
    first = walk(runtime, clock, account_id, utc(2027, 1, 16, 5), timedelta(minutes=15))
    assert first == {
        "+61255550143": utc(2027, 1, 15, 5),  # 16:00 in Sydney
        "+442079460958": utc(2027, 1, 15, 9),  # 09:00 in London
        "+12125550143": utc(2027, 1, 15, 14),  # 09:00 in New York
        "+13105550143": utc(2027, 1, 15, 17),  # 09:00 in Los Angeles
    }
    for phone, when in first.items():
        local = when.astimezone(ZoneInfo(ZONES[phone]))
        assert time(9) <= local.time() < time(20)


def test_a_number_in_several_zones_follows_the_strictest(runtime: Runtime) -> None:
    clock = Clock(utc(2027, 1, 15, 5))
    runtime.clock = clock
    both = ["America/New_York", "America/Los_Angeles"]
    account_id, _ = seed(runtime, {"+18005550100": {"zones": both}})
    first = walk(runtime, clock, account_id, utc(2027, 1, 15, 20), timedelta(minutes=15))
    assert first == {"+18005550100": utc(2027, 1, 15, 17)}  # 09:00 LA, 12:00 NY


def test_the_legal_guard_holds_whatever_the_campaign_says(runtime: Runtime) -> None:
    clock = Clock(utc(2027, 1, 15, 2))  # 21:00 in New York
    runtime.clock = clock
    # A window written around the options' check: the engine still applies 08:00-21:00.
    wide = {"window_start": time(0), "window_end": time(23, 59, 59)}
    account_id, _ = seed(runtime, {"+12125550143": {"zones": ["America/New_York"]}}, wide)
    first = walk(runtime, clock, account_id, utc(2027, 1, 15, 14), timedelta(minutes=15))
    assert first == {"+12125550143": utc(2027, 1, 15, 13)}  # 08:00 in New York


def test_florida_is_not_called_after_eight_pm(runtime: Runtime) -> None:
    clock = Clock(utc(2027, 1, 16, 1, 15))  # 20:15 in New York and Miami
    runtime.clock = clock
    until_nine = {"window_start": time(9), "window_end": time(21)}
    ny = {"zones": ["America/New_York"], "region": "US"}
    account_id, _ = seed(
        runtime, {"+12125550143": ny, "+13055550143": {**ny, "subdivision": "FL"}}, until_nine
    )
    dispatch_round(runtime, account_id)
    assert set(dialled(runtime)) == {"+12125550143"}
    assert job(runtime, "+13055550143").next_due_at == utc(2027, 1, 16, 14)  # 09:00 Miami


def test_a_retry_that_would_land_at_night_moves_to_the_next_opening() -> None:
    schedule = ContactSchedule(CallingWindow(), Place(("America/New_York",), "US"))
    in_the_evening = utc(2027, 1, 16, 0, 30)  # 19:30 in New York; no-answer retry in 1 h
    ended = replace(RANG, retry_policy={"no-answer": {"retry": True, "delay_s": 3600}})
    assert decide(ended, in_the_evening).step.next_due_at == utc(2027, 1, 16, 1, 30)
    moved = decide(replace(ended, schedule=schedule), in_the_evening)
    assert moved.step.next_due_at == utc(2027, 1, 16, 14)  # 09:00 the next day
    at_noon = decide(replace(ended, schedule=schedule), utc(2027, 1, 15, 17))
    assert at_noon.step.next_due_at == utc(2027, 1, 15, 18)  # inside: unchanged


def test_start_at_to_the_second(runtime: Runtime) -> None:
    start = utc(2027, 1, 15, 15, 0, 0)
    clock = Clock(start - timedelta(seconds=1))
    runtime.clock = clock
    account_id, _ = seed(
        runtime, {"+12125550143": {"zones": ["America/New_York"]}}, {"start_at": start}
    )
    out = dispatch_round(runtime, account_id)
    assert out.dials == [] and out.idle_until == start
    clock.now = start
    assert len(dispatch_round(runtime, account_id).dials) == 1


def test_call_at_to_the_second(runtime: Runtime) -> None:
    call_at = utc(2027, 1, 15, 15, 30, 0)
    clock = Clock(call_at - timedelta(seconds=1))
    runtime.clock = clock
    account_id, _ = seed(runtime, {})
    with transaction(runtime.settings.database_url) as session:
        campaign = session.scalars(select(Campaign)).one()
        make_job(session, campaign, "+12125550143", zones=["America/New_York"], next_due_at=call_at)
    assert dispatch_round(runtime, account_id).dials == []
    clock.now = call_at
    assert len(dispatch_round(runtime, account_id).dials) == 1


def test_call_before_to_the_second(runtime: Runtime) -> None:
    before = utc(2027, 1, 15, 15, 0, 0)
    clock = Clock(before)
    runtime.clock = clock
    ny = ["America/New_York"]
    account_id, _ = seed(
        runtime,
        {
            "+12125550143": {"zones": ny, "call_before": before},
            "+12125550144": {"zones": ny, "call_before": before + timedelta(seconds=1)},
        },
    )
    dispatch_round(runtime, account_id)
    assert set(dialled(runtime)) == {"+12125550144"}
    late = job(runtime, "+12125550143")
    assert (late.status, late.outcome) == (JobStatus.DONE, Outcome.EXPIRED)


def test_end_at_expires_pending_contacts_and_completes_the_campaign(runtime: Runtime) -> None:
    end = utc(2027, 1, 15, 12, 0, 0)  # 07:00 in New York: the contact waits for 09:00
    clock = Clock(end - timedelta(seconds=1))
    runtime.clock = clock
    account_id, campaign_id = seed(
        runtime, {"+12125550143": {"zones": ["America/New_York"]}}, {"end_at": end}
    )
    dispatch_round(runtime, account_id)  # moves the contact to 09:00 New York
    out = dispatch_round(runtime, account_id)
    assert out.dials == [] and out.idle_until == end and out.work_left
    assert job(runtime, "+12125550143").status is JobStatus.PENDING
    clock.now = end
    dispatch_round(runtime, account_id)
    ended = job(runtime, "+12125550143")
    assert (ended.status, ended.outcome) == (JobStatus.DONE, Outcome.EXPIRED)
    with transaction(runtime.settings.database_url) as session:
        assert session.get_one(Campaign, campaign_id).status is CampaignStatus.COMPLETED


def test_place_call_checks_the_window_again(runtime: Runtime) -> None:
    clock = Clock(utc(2027, 1, 16, 0, 59, 59))  # 19:59:59 in New York
    runtime.clock = clock
    account_id, _ = seed(runtime, {"+12125550143": {"zones": ["America/New_York"]}})
    (dial,) = dispatch_round(runtime, account_id).dials
    assert runtime.pool.live(Keys(account_id).account_pool()) == 1
    clock.now = utc(2027, 1, 16, 1, 0, 1)  # 20:00:01: place_call runs late
    assert place_call(runtime, dial.order.attempt_id) is PlaceResult.NOT_CALLABLE
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, dial.order.attempt_id)
        assert attempt.status is AttemptStatus.NOT_PLACED and attempt.call_sid is None
    contact = job(runtime, "+12125550143")
    assert contact.status is JobStatus.PENDING
    assert (contact.attempt_count, contact.dial_error_count) == (0, 0)  # not a dial error
    assert contact.next_due_at == utc(2027, 1, 16, 14)  # 09:00 the next day
    assert runtime.pool.live(Keys(account_id).account_pool()) == 0  # lease released


def test_the_send_deadline_never_outlasts_the_window() -> None:
    from dialer.dispatch.timing import callable_until

    campaign = Campaign(
        window_start=time(9),
        window_end=time(20),
        window_days=list(range(7)),
        holidays=[],
        skip_public_holidays=False,
        end_at=None,
    )
    contact = CallJob(zones=["America/New_York"], region="US", subdivision=None, call_before=None)
    at = utc(2027, 1, 16, 0, 59, 59, 500000)  # 19:59:59.5
    assert callable_until(campaign, contact, at) == utc(2027, 1, 16, 1)
    campaign.end_at = utc(2027, 1, 16, 0, 59, 59, 800000)
    assert callable_until(campaign, contact, at) == campaign.end_at


def test_the_frequency_cap_counts_every_campaign_of_the_account(runtime: Runtime) -> None:
    now = utc(2027, 1, 15, 15)  # 10:00 in New York
    clock = Clock(now)
    runtime.clock = clock
    ny = {"zones": ["America/New_York"]}
    account_id, campaign_id = seed(
        runtime,
        {"+12125550143": ny, "+12125550144": ny},
        account={"frequency_caps": [{"calls": 2, "days": 1}]},
    )
    with transaction(runtime.settings.database_url) as session:
        other = make_campaign(session, session.get_one(Account, account_id))
        earlier = make_job(session, other, "+12125550143", status=JobStatus.DONE, **ny)
        for hours_ago, status in ((3, AttemptStatus.NO_ANSWER), (1, AttemptStatus.BUSY)):
            session.add(
                CallAttempt(
                    job_id=earlier.id,
                    campaign_id=other.id,
                    account_id=account_id,
                    attempt_no=1,
                    phone_e164="+12125550143",
                    from_e164="+15005550006",
                    status=status,
                    created_at=now - timedelta(hours=hours_ago),
                    lease_expires_at=now,
                )
            )
        # An attempt that never became a call does not count.
        session.add(
            CallAttempt(
                job_id=earlier.id,
                campaign_id=other.id,
                account_id=account_id,
                attempt_no=1,
                phone_e164="+12125550144",
                from_e164="+15005550006",
                status=AttemptStatus.NOT_PLACED,
                created_at=now - timedelta(hours=1),
                lease_expires_at=now,
            )
        )
    out = dispatch_round(runtime, account_id)
    assert len(out.dials) == 1
    capped = job(runtime, "+12125550143", campaign_id)
    assert capped.status is JobStatus.PENDING
    # Due when the oldest call leaves the last 24 hours: 12:00 UTC, 07:00 in New York,
    # so at the window's opening.
    assert capped.next_due_at == utc(2027, 1, 16, 14)
    assert job(runtime, "+12125550144").status is JobStatus.IN_PROGRESS


def test_the_pacer_stops_until_the_next_opening_instead_of_polling(runtime: Runtime) -> None:
    from dialer.dispatch.pacer import accounts_needing_pacer, pacer_idle_key, run_pacer

    clock = Clock(utc(2027, 1, 15, 5))  # midnight in New York: opens in 9 hours
    runtime.clock = clock
    account_id, _ = seed(runtime, {"+12125550143": {"zones": ["America/New_York"]}})
    started = time_module.monotonic()
    run = run_pacer(runtime, account_id, lambda ids: None, budget_s=20)
    assert time_module.monotonic() - started < 10  # it did not sit out its budget
    assert run.locked and run.dispatched == 0 and not run.work_left  # not re-armed
    idle_ms = runtime.redis.pttl(pacer_idle_key(account_id))
    assert 8.9 * 3600_000 < idle_ms <= 9 * 3600_000  # until 09:00 in New York
    assert accounts_needing_pacer(runtime) == []  # the beat leaves it alone until then
    # An explicit kick (a campaign started or resumed) still runs it, and clears the key.
    clock.now = utc(2027, 1, 15, 14)
    sent: list[int] = []
    assert run_pacer(runtime, account_id, sent.extend, budget_s=1).dispatched == 1
    assert len(sent) == 1
    assert not runtime.redis.exists(pacer_idle_key(account_id))
