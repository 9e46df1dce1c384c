"""Caller-ID pools through the pacer and place_call, read at the carrier simulator (its call
log's `from` of each call): sticky and local selection, the least-used spread, per-number
minute and day limits on a controllable clock, and the flag and automatic rest of a number
whose answers fall (issue 22)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from campaigns.accounts import save_number
from campaigns.number_health import rest_flagged_everywhere
from campaigns.reports import campaign_report
from dialer.dispatch.dialing import place_call
from dialer.dispatch.pacer import dispatch_round
from dialer.pool.caller_ids import candidates, locality
from dialer.pool.reconcile import ensure_pool
from dialer.runtime import Runtime
from dialer.simulator import SimulatorConfig, run_in_thread
from models import (
    Account,
    AttemptStatus,
    CallAttempt,
    CallerId,
    CallJob,
    Campaign,
    CampaignStatus,
    JobStatus,
    transaction,
    utcnow,
)
from tests.dialer.test_pacer_windows import Clock
from tests.factories import make_account, make_caller_id, make_campaign, make_job

SF = "+14155550100"
"""San Francisco, CA (area code 415)."""
NYC = "+12125550100"
"""New York, NY (212)."""
CHICAGO = "+13125550100"
"""Chicago, IL (312)."""


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with run_in_thread(SimulatorConfig(time_scale=0.001, seed=5)) as url:
        yield url


@pytest.fixture
def sim(sim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_url, timeout=10) as client:
        client.post("/_sim/reset").raise_for_status()
        yield client


@pytest.fixture
def runtime_settings(sim_url: str) -> dict[str, Any]:
    return {
        "twilio_base_url": sim_url,
        "twilio_timeout_s": 2.0,
        "public_base_url": "http://127.0.0.1:9",  # callbacks go nowhere: calls stay live
    }


def pool_campaign(
    runtime: Runtime,
    numbers: list[str],
    contacts: list[str],
    *,
    account_id: int | None = None,
    limits: dict[str, int | None] | None = None,
) -> tuple[int, int]:
    """A running campaign presenting a pool of `numbers` (the account's, added if missing,
    with `limits`: `max_calls_per_minute`, `max_calls_per_day`), one contact per phone of
    `contacts`, due now; returns (account id, campaign id)."""
    with transaction(runtime.settings.database_url) as session:
        account = (
            session.get_one(Account, account_id)
            if account_id
            else make_account(session, max_concurrency=50)
        )
        pool = [make_caller_id(session, account, e164) for e164 in numbers]
        for number in pool:
            for field, value in (limits or {}).items():
                setattr(number, field, value)
        campaign = make_campaign(
            session,
            account,
            caller_id=pool[0],
            pool_caller_ids=[c.id for c in pool[1:]],
            status=CampaignStatus.RUNNING,
            max_concurrency=50,
        )
        for phone in contacts:
            make_job(session, campaign, phone, next_due_at=runtime.clock() - timedelta(seconds=1))
        ids = account.id, campaign.id
    ensure_pool(runtime.pool, runtime.settings.database_url, ids[0])
    return ids


def dial_round(runtime: Runtime, account_id: int) -> int:
    """One pacer round, then `place_call` for each of its dials (as the workers would);
    returns how many calls it placed."""
    out = dispatch_round(runtime, account_id)
    for dial in out.dials:
        place_call(runtime, dial.order.attempt_id)
    return len(out.dials)


def carrier_froms(sim: httpx.Client) -> dict[str, list[str]]:
    """The simulator's call log: callee -> the `From` of each call to it, oldest first (the
    log lists the newest first)."""
    out: dict[str, list[str]] = {}
    for call in reversed(sim.get("/_sim/calls").json()):
        out.setdefault(call["to"], []).append(call["from"])
    return out


def per_from(sim: httpx.Client) -> Counter[str]:
    return Counter(f for froms in carrier_froms(sim).values() for f in froms)


def pending(runtime: Runtime, campaign_id: int) -> int:
    with transaction(runtime.settings.database_url) as session:
        return len(
            session.scalars(
                select(CallJob.id).where(
                    CallJob.campaign_id == campaign_id, CallJob.status == JobStatus.PENDING
                )
            ).all()
        )


def report_of(runtime: Runtime, account_id: int, campaign_id: int, now: datetime) -> Any:
    with transaction(runtime.settings.database_url) as session:
        return campaign_report(session, runtime.pool, account_id, campaign_id, now=now)


def test_a_contact_is_called_again_from_the_number_it_was_last_called_from(
    runtime: Runtime, sim: httpx.Client
) -> None:
    runtime.clock = Clock(utcnow())
    contact, fresh = "+12125550143", "+12125550144"
    # A first campaign presents Chicago alone to the New York contact.
    account_id, _ = pool_campaign(runtime, [CHICAGO], [contact])
    assert dial_round(runtime, account_id) == 1
    # A second campaign of the account has a New York number in its pool: the contact is
    # called from Chicago again (sticky beats local), a new contact from New York.
    pool_campaign(runtime, [SF, NYC, CHICAGO], [contact, fresh], account_id=account_id)
    assert dial_round(runtime, account_id) == 2
    froms = carrier_froms(sim)
    assert froms[contact] == [CHICAGO, CHICAGO]
    assert froms[fresh] == [NYC]


def test_a_sticky_number_no_longer_usable_gives_way(runtime: Runtime, sim: httpx.Client) -> None:
    runtime.clock = Clock(utcnow())
    contact = "+12125550143"
    account_id, _ = pool_campaign(runtime, [CHICAGO], [contact])
    dial_round(runtime, account_id)
    with transaction(runtime.settings.database_url) as session:
        session.scalars(select(CallerId).where(CallerId.e164 == CHICAGO)).one().rested_at = utcnow()
    pool_campaign(runtime, [SF, NYC, CHICAGO], [contact], account_id=account_id)
    dial_round(runtime, account_id)
    assert carrier_froms(sim)[contact] == [CHICAGO, NYC]


def test_local_presence_by_area_code_then_region(runtime: Runtime, sim: httpx.Client) -> None:
    runtime.clock = Clock(utcnow())
    same_area, same_state, elsewhere = "+12125550143", "+13155550143", "+16175550143"
    # 315 is upstate New York: no number of the pool has its area code, NYC its state.
    # 617 (Boston, MA): no local number, the least used of the pool.
    account_id, _ = pool_campaign(runtime, [SF, NYC, CHICAGO], [same_area, same_state])
    assert dial_round(runtime, account_id) == 2
    froms = carrier_froms(sim)
    assert (froms[same_area], froms[same_state]) == ([NYC], [NYC])
    pool_campaign(runtime, [SF, NYC, CHICAGO], [elsewhere], account_id=account_id)
    dial_round(runtime, account_id)
    assert carrier_froms(sim)[elsewhere] in ([SF], [CHICAGO])  # not NYC, used twice


def test_selection_order_reads_phonenumbers_geography() -> None:
    pool = [
        CallerId(id=1, account_id=1, e164=SF),
        CallerId(id=2, account_id=1, e164=NYC),
        CallerId(id=3, account_id=1, e164="+16505550100"),  # California, outside 415
    ]
    assert locality(SF) == locality("+14155550199")
    # A Los Angeles contact: no area code of the pool; both Californian numbers by region.
    ordered, preferred = candidates(pool, "+13105550143", None)
    assert ([c.e164 for c in ordered[:preferred]], preferred) == ([SF, "+16505550100"], 2)
    # The sticky number first, then the area code's, then the region's.
    ordered, preferred = candidates(pool, "+16505550143", NYC)
    assert [c.e164 for c in ordered[:preferred]] == [NYC, "+16505550100", SF]
    ordered, preferred = candidates(pool, "+442079460000", None)
    assert (preferred, [c.e164 for c in ordered]) == (0, [SF, NYC, "+16505550100"])


def test_contacts_with_no_local_number_spread_over_the_least_used(
    runtime: Runtime, sim: httpx.Client
) -> None:
    runtime.clock = Clock(utcnow())
    boston = [f"+1617555{n:04d}" for n in range(9)]
    account_id, _ = pool_campaign(runtime, [SF, NYC, CHICAGO], boston)
    assert dial_round(runtime, account_id) == 9
    assert per_from(sim) == Counter({SF: 3, NYC: 3, CHICAGO: 3})
    # Another campaign presents New York alone once more...
    pool_campaign(runtime, [NYC], ["+16175550500"], account_id=account_id)
    assert dial_round(runtime, account_id) == 1
    # ... so the next pool's calls go to the two numbers used less, New York's last.
    more = ["+16175559998", "+16175559999"]
    pool_campaign(runtime, [NYC, SF, CHICAGO], more, account_id=account_id)
    assert dial_round(runtime, account_id) == 2
    assert per_from(sim) == Counter({SF: 4, NYC: 4, CHICAGO: 4})


def test_a_number_at_its_minute_limit_is_skipped_and_the_pool_then_waits(
    runtime: Runtime, sim: httpx.Client
) -> None:
    clock = Clock(utcnow())
    runtime.clock = clock
    boston = [f"+1617555{n:04d}" for n in range(7)]
    limits: dict[str, int | None] = {"max_calls_per_minute": 2, "max_calls_per_day": 100}
    account_id, campaign_id = pool_campaign(runtime, [SF, NYC], boston, limits=limits)
    assert dial_round(runtime, account_id) == 4
    assert per_from(sim) == Counter({SF: 2, NYC: 2})
    # Both numbers at their minute's limit: the contacts wait, pending, and the report
    # says why; another round in the same minute places nothing.
    assert dial_round(runtime, account_id) == 0
    assert pending(runtime, campaign_id) == 3
    assert report_of(runtime, account_id, campaign_id, clock.now).waiting_reason == (
        "caller_ids_spent"
    )
    clock.now += timedelta(seconds=59)
    assert dial_round(runtime, account_id) == 0
    clock.now += timedelta(seconds=2)  # the first calls left the minute
    assert dial_round(runtime, account_id) == 3
    calls = per_from(sim)
    assert sum(calls.values()) == 7
    assert max(calls.values()) == 4  # 2 in each minute
    assert pending(runtime, campaign_id) == 0


def test_a_number_at_its_day_limit_is_skipped_until_a_day_has_passed(
    runtime: Runtime, sim: httpx.Client
) -> None:
    clock = Clock(utcnow())
    runtime.clock = clock
    boston = [f"+1617555{n:04d}" for n in range(8)]
    limits: dict[str, int | None] = {"max_calls_per_minute": None, "max_calls_per_day": 3}
    account_id, campaign_id = pool_campaign(runtime, [SF, NYC], boston, limits=limits)
    assert dial_round(runtime, account_id) == 6
    assert per_from(sim) == Counter({SF: 3, NYC: 3})
    for step in (timedelta(hours=1), timedelta(hours=22)):
        clock.now += step
        assert dial_round(runtime, account_id) == 0
        assert pending(runtime, campaign_id) == 2
    clock.now += timedelta(hours=1, seconds=1)
    assert dial_round(runtime, account_id) == 2
    assert per_from(sim) == Counter({SF: 4, NYC: 4})
    with transaction(runtime.settings.database_url) as session:
        outcomes = set(
            session.scalars(select(CallJob.outcome).where(CallJob.campaign_id == campaign_id))
        )
    assert outcomes == {None}  # waiting never failed a contact


def _history(
    runtime: Runtime, campaign_id: int, number: str, calls: int, answered: int, prefix: str
) -> None:
    """`calls` ended calls of the campaign presenting `number` an hour ago, to numbers
    starting with `prefix`, `answered` of them by a person."""
    with transaction(runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, campaign_id)
        for n in range(calls):
            job = make_job(session, campaign, f"{prefix}{n:03d}", status=JobStatus.DONE)
            at = runtime.clock() - timedelta(hours=1)
            session.add(
                CallAttempt(
                    job_id=job.id,
                    campaign_id=campaign_id,
                    account_id=campaign.account_id,
                    attempt_no=1,
                    phone_e164=job.phone_e164,
                    from_e164=number,
                    status=AttemptStatus.COMPLETED if n < answered else AttemptStatus.NO_ANSWER,
                    call_sid=f"CA{number[1:]}{n:020d}"[:34],
                    answered_at=at if n < answered else None,
                    answered_by="human" if n < answered else None,
                    created_at=at,
                    lease_expires_at=at,
                )
            )


def test_a_number_answered_far_less_than_its_campaign_is_flagged_and_rested(
    runtime: Runtime, sim: httpx.Client
) -> None:
    runtime.clock = Clock(utcnow())
    account_id, campaign_id = pool_campaign(runtime, [SF, NYC], [])
    _history(runtime, campaign_id, SF, calls=25, answered=2, prefix="+17185551")  # 8%
    _history(runtime, campaign_id, NYC, calls=25, answered=20, prefix="+17185552")  # 80%
    # The campaign: 22 of 50, 44%; San Francisco's 8% is under half of it.
    now = runtime.clock()
    health = {n.number: n for n in report_of(runtime, account_id, campaign_id, now).numbers}
    assert (health[SF].calls, health[SF].answer_rate, health[SF].flagged) == (25, 0.08, True)
    assert (health[NYC].human_rate, health[NYC].flagged) == (0.8, False)
    # Not asked for: nothing rested.
    assert rest_flagged_everywhere(runtime.settings.database_url, now) == 0
    with transaction(runtime.settings.database_url) as session:
        session.get_one(Account, account_id).rest_flagged_numbers = True
    assert rest_flagged_everywhere(runtime.settings.database_url, now) == 1
    assert rest_flagged_everywhere(runtime.settings.database_url, now) == 0  # once
    rested = report_of(runtime, account_id, campaign_id, now).numbers[0]
    assert (rested.number, rested.rested_at) == (SF, now)
    assert (
        rested.rested_reason is not None and "answer rate 8% over 25 calls" in rested.rested_reason
    )
    # Selection skips the rested number: a San Francisco contact gets New York.
    with transaction(runtime.settings.database_url) as session:
        make_job(session, session.get_one(Campaign, campaign_id), "+14155550143", next_due_at=now)
    assert dial_round(runtime, account_id) == 1
    assert carrier_froms(sim)["+14155550143"] == [NYC]
    # Its operator puts it back in use.
    with transaction(runtime.settings.database_url) as session:
        save_number(
            session, account_id, SF, rested=False, provider=runtime.provider, actor="cli:ops"
        )
        make_job(session, session.get_one(Campaign, campaign_id), "+14155550144", next_due_at=now)
    assert dial_round(runtime, account_id) == 1
    assert carrier_froms(sim)["+14155550144"] == [SF]


def test_a_pool_of_rested_numbers_waits(runtime: Runtime, sim: httpx.Client) -> None:
    runtime.clock = Clock(utcnow())
    account_id, campaign_id = pool_campaign(runtime, [SF, NYC], ["+16175550100"])
    with transaction(runtime.settings.database_url) as session:
        for number in session.scalars(select(CallerId)):
            number.rested_at = utcnow()
    assert dial_round(runtime, account_id) == 0
    assert pending(runtime, campaign_id) == 1
    report = report_of(runtime, account_id, campaign_id, runtime.clock())
    assert report.waiting_reason == "caller_ids_rested"
    assert sim.get("/_sim/calls").json() == []


def test_the_day_limit_holds_after_redis_lost_the_pool(runtime: Runtime, sim: httpx.Client) -> None:
    runtime.clock = Clock(utcnow())
    boston = [f"+1617555{n:04d}" for n in range(3)]
    limits: dict[str, int | None] = {"max_calls_per_minute": None, "max_calls_per_day": 2}
    account_id, campaign_id = pool_campaign(runtime, [SF], boston, limits=limits)
    assert dial_round(runtime, account_id) == 2
    runtime.redis.flushdb()  # a Redis restart without persistence
    # The round rebuilds the pool first (`ensure_pool`): the dial window comes back from the
    # attempts of the last day with the leases.
    assert dial_round(runtime, account_id) == 0
    assert pending(runtime, campaign_id) == 1
    assert per_from(sim) == Counter({SF: 2})


def test_a_pool_number_disabled_for_outbound_is_skipped_and_the_campaign_runs_on(
    runtime: Runtime, sim: httpx.Client
) -> None:
    runtime.clock = Clock(utcnow())
    account_id, campaign_id = pool_campaign(runtime, [SF, NYC], ["+14155550143"])
    with transaction(runtime.settings.database_url) as session:
        save_number(session, account_id, SF, outbound=False, provider=runtime.provider, actor="t")
        assert session.get_one(Campaign, campaign_id).status is CampaignStatus.RUNNING
    assert dial_round(runtime, account_id) == 1
    assert carrier_froms(sim)["+14155550143"] == [NYC]  # not the local, disabled one
    with transaction(runtime.settings.database_url) as session:
        save_number(session, account_id, NYC, outbound=False, provider=runtime.provider, actor="t")
        campaign = session.get_one(Campaign, campaign_id)
        assert campaign.status is CampaignStatus.PAUSED  # no outbound number left
        assert campaign.status_reason == f"caller ID {NYC} was disabled for outbound calls"
