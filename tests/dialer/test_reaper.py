"""The reaper and hold-time watchdog, one pass at a time, against the carrier simulator."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from dialer.dispatch.dialing import DialOrder
from dialer.dispatch.reaper import reap
from dialer.pool import Keys
from dialer.runtime import Runtime
from dialer.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN
from dialer.simulator import SimulatorConfig, run_in_thread
from models import (
    AttemptStatus,
    CallAttempt,
    CallJob,
    CampaignStatus,
    JobStatus,
    Outcome,
    transaction,
    utcnow,
)
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.support import POISONED_POLICY, hold_lease, poison_retry_reader, wait_until

PHONE = "+12125550143"
CALLER_ID = "+15005550006"  # the factories' caller ID
CALLS = f"/2010-04-01/Accounts/{SIMULATOR_ACCOUNT_SID}/Calls"
LONG_AGO = timedelta(minutes=10)
"""Older than `stuck_dialing_after_s` and `status_poll_after_s` (defaults: 30 s, 120 s)."""
_accounts = itertools.count()


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    # 0.1: a call is answered within a second of wall time and a long talk stays up.
    with run_in_thread(SimulatorConfig(time_scale=0.1, seed=5)) as url:
        yield url


@pytest.fixture
def sim(sim_url: str) -> Iterator[httpx.Client]:
    auth = (SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN)
    with httpx.Client(base_url=sim_url, auth=auth, timeout=10) as client:
        client.post("/_sim/reset").raise_for_status()
        yield client


@pytest.fixture
def runtime_settings(sim_url: str) -> dict[str, Any]:
    return {"twilio_base_url": sim_url, "public_base_url": "http://127.0.0.1:9"}


def sim_call(sim: httpx.Client, outcome: str = "human", wait_for: str = "in-progress") -> str:
    """A call at the simulator to `PHONE` from the campaign's caller ID, once it reaches
    `wait_for`; a human outcome talks for an hour (simulated)."""
    sim.post(
        "/_sim/config",
        json={
            "outcomes_by_number": {PHONE: outcome},
            "talk_seconds_by_number": {PHONE: 3600},
            "ring": {"median_s": 2.0, "sigma": 0.0, "minimum_s": 1.0},
        },
    ).raise_for_status()
    created = sim.post(
        f"{CALLS}.json", data={"To": PHONE, "From": CALLER_ID, "Twiml": "<Response/>"}
    )
    assert created.status_code == 201, created.text
    sid: str = created.json()["sid"]
    wait_until(
        lambda: sim.get(f"{CALLS}/{sid}.json").json()["status"] == wait_for,
        what=f"call {sid} {wait_for}",
    )
    return sid


def attempt_of(runtime: Runtime, **fields: Any) -> int:
    """An attempt of a running campaign's contact, holding its lease (`fields`: the
    attempt's columns, and `max_hold_s` for the campaign)."""
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session, f"acme-{next(_accounts)}")
        campaign = make_campaign(
            session,
            account,
            status=CampaignStatus.RUNNING,
            max_hold_s=fields.pop("max_hold_s", None),
        )
        job = make_job(session, campaign, PHONE, status=JobStatus.IN_PROGRESS, attempt_count=1)
        attempt_id = make_attempt(session, job, **fields).id
    hold_lease(runtime, attempt_id)
    return attempt_id


def load(runtime: Runtime, attempt_id: int) -> tuple[CallAttempt, CallJob]:
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        return attempt, session.get_one(CallJob, attempt.job_id)


def leases(runtime: Runtime, attempt: CallAttempt) -> set[int]:
    held = runtime.redis.zrange(Keys(attempt.account_id).account_pool(), 0, -1)
    return {int(member) for member in held}


def test_a_dialing_attempt_past_the_deadline_is_handed_back_to_place_call(
    runtime: Runtime, sim: httpx.Client
) -> None:
    stuck = attempt_of(runtime, created_at=utcnow() - LONG_AGO, updated_at=utcnow() - LONG_AGO)
    fresh = attempt_of(runtime)
    sent: list[DialOrder] = []
    report = reap(runtime, sent.extend)
    attempt = load(runtime, stuck)[0]
    assert (
        sent == report.redispatched == [DialOrder(stuck, attempt.campaign_id, attempt.account_id)]
    )
    assert fresh not in report.resolved
    assert load(runtime, stuck)[0].status is AttemptStatus.DIALING  # place_call decides
    # Handed back once per `stuck_dialing_after_s`, not on every pass.
    assert reap(runtime, sent.extend).redispatched == []


def test_a_placing_attempt_whose_call_exists_adopts_it(runtime: Runtime, sim: httpx.Client) -> None:
    attempt_id = attempt_of(runtime, status=AttemptStatus.PLACING, created_at=utcnow() - LONG_AGO)
    sid = sim_call(sim)
    report = reap(runtime, lambda ids: None)
    assert report.resolved == [attempt_id]
    attempt, job = load(runtime, attempt_id)
    assert attempt.call_sid == sid
    assert attempt.status is AttemptStatus.QUEUED  # its status comes from callbacks or polls
    assert job.status is JobStatus.IN_PROGRESS
    assert attempt_id in leases(runtime, attempt)
    assert sim.get("/_sim/stats").json()["calls_created"] == 1


def test_a_placing_attempt_without_a_call_ends_not_placed_and_the_contact_waits_again(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = attempt_of(runtime, status=AttemptStatus.PLACING, created_at=utcnow() - LONG_AGO)
    report = reap(runtime, lambda ids: None)
    assert report.resolved == [attempt_id]
    attempt, job = load(runtime, attempt_id)
    assert attempt.status is AttemptStatus.NOT_PLACED and attempt.call_sid is None
    assert job.status is JobStatus.PENDING
    assert (job.attempt_count, job.dial_error_count) == (0, 1)
    assert leases(runtime, attempt) == set()
    assert sim.get("/_sim/stats").json()["calls_created"] == 0


def test_a_call_live_past_the_hold_cap_is_hung_up(runtime: Runtime, sim: httpx.Client) -> None:
    sid = sim_call(sim)
    attempt_id = attempt_of(
        runtime,
        max_hold_s=30,
        status=AttemptStatus.IN_PROGRESS,
        call_sid=sid,
        answered_at=utcnow() - timedelta(seconds=31),
    )
    report = reap(runtime, lambda ids: None)
    assert report.hung_up == [attempt_id]
    attempt, job = load(runtime, attempt_id)
    assert attempt.end_reason == "hold_cap"
    assert attempt.status is AttemptStatus.COMPLETED
    assert (job.status, job.outcome) == (JobStatus.DONE, Outcome.HOLD_CAP)
    assert leases(runtime, attempt) == set()
    assert sim.get(f"{CALLS}/{sid}.json").json()["status"] == "completed"


def test_a_call_inside_its_hold_cap_is_left_alone(runtime: Runtime, sim: httpx.Client) -> None:
    sid = sim_call(sim)
    attempt_id = attempt_of(
        runtime,
        max_hold_s=30,
        status=AttemptStatus.IN_PROGRESS,
        call_sid=sid,
        answered_at=utcnow() - timedelta(seconds=20),
    )
    report = reap(runtime, lambda ids: None)
    assert attempt_id not in report.hung_up + report.resolved + report.polled
    assert load(runtime, attempt_id)[0].status is AttemptStatus.IN_PROGRESS
    assert sim.get(f"{CALLS}/{sid}.json").json()["status"] == "in-progress"


def test_a_lease_whose_attempt_is_final_is_released(runtime: Runtime, sim: httpx.Client) -> None:
    ended = attempt_of(runtime, status=AttemptStatus.COMPLETED)
    live = attempt_of(runtime)
    report = reap(runtime, lambda ids: None)
    assert report.leaked == 1
    attempt, _ = load(runtime, ended)
    assert leases(runtime, attempt) == set()
    assert runtime.redis.llen(Keys(attempt.account_id).wake()) == 1  # the pacer is woken
    assert leases(runtime, load(runtime, live)[0]) == {live}  # a live attempt keeps its lease


def test_a_quiet_live_call_is_polled(runtime: Runtime, sim: httpx.Client) -> None:
    sid = sim_call(sim)
    quiet_since = utcnow() - LONG_AGO
    attempt_id = attempt_of(
        runtime, status=AttemptStatus.RINGING, call_sid=sid, updated_at=quiet_since
    )
    report = reap(runtime, lambda ids: None)
    assert report.polled == [attempt_id]
    attempt, job = load(runtime, attempt_id)
    assert attempt.status is AttemptStatus.IN_PROGRESS  # what the provider reports
    assert attempt.updated_at > quiet_since  # touched: polled again only when quiet again
    assert job.status is JobStatus.IN_PROGRESS
    assert reap(runtime, lambda ids: None).polled == []


def test_a_quiet_call_found_ended_ends_the_attempt(runtime: Runtime, sim: httpx.Client) -> None:
    sid = sim_call(sim, outcome="busy", wait_for="busy")
    attempt_id = attempt_of(
        runtime, status=AttemptStatus.RINGING, call_sid=sid, updated_at=utcnow() - LONG_AGO
    )
    report = reap(runtime, lambda ids: None)
    assert report.polled == [attempt_id]
    attempt, job = load(runtime, attempt_id)
    assert attempt.status is AttemptStatus.BUSY
    assert job.outcome is Outcome.BUSY and job.status is not JobStatus.IN_PROGRESS
    assert leases(runtime, attempt) == set()


def test_one_accounts_failing_attempt_does_not_stop_the_pass_for_the_others(
    runtime: Runtime, sim: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Account A's campaign holds a retry policy written before any check (old data): the
    busy call the reaper finds for its quiet attempt makes the state machine raise. The
    pass goes on: A's other lease and account B's are still released."""
    poison_retry_reader(monkeypatch)
    sid = sim_call(sim, outcome="busy", wait_for="busy")
    with transaction(runtime.settings.database_url) as session:
        campaign = make_campaign(
            session,
            make_account(session, f"acme-{next(_accounts)}"),
            status=CampaignStatus.RUNNING,
            retry_policy=POISONED_POLICY,
        )
        job = make_job(session, campaign, PHONE, status=JobStatus.IN_PROGRESS, attempt_count=1)
        poisoned = make_attempt(
            session, job, status=AttemptStatus.RINGING, call_sid=sid, updated_at=utcnow() - LONG_AGO
        ).id
        other_job = make_job(session, campaign, "+12125550144", status=JobStatus.DONE)
        ended_too = make_attempt(session, other_job, status=AttemptStatus.COMPLETED).id
    hold_lease(runtime, poisoned)
    hold_lease(runtime, ended_too)
    ended = attempt_of(runtime, status=AttemptStatus.COMPLETED)  # account B's

    with capture_logs() as logs:
        report = reap(runtime, lambda ids: None)

    assert report.leaked == 2
    assert leases(runtime, load(runtime, ended)[0]) == set()
    attempt, job = load(runtime, poisoned)
    assert leases(runtime, attempt) == {poisoned}  # A's failing attempt alone is left
    assert attempt.status is AttemptStatus.RINGING and job.status is JobStatus.IN_PROGRESS
    [failed] = [e for e in logs if e["event"] == "reap_attempt_failed"]
    assert failed["attempt_id"] == poisoned and failed["exc_info"] is True
