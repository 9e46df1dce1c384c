"""place_call against the carrier simulator: one call per attempt, whatever the carrier says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from campaigns import calls, dnc, lifecycle
from dialer.calls import mark_placing
from dialer.dispatch.dialing import (
    LateCall,
    PlaceResult,
    place_call,
    recover_placing,
    resolve_late_call,
)
from dialer.pool import Keys
from dialer.pool.leases import ProviderLimits, send_windows
from dialer.runtime import Runtime
from dialer.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN
from dialer.simulator import SimulatorConfig, run_in_thread
from models import (
    LIVE_ATTEMPT_STATUSES,
    Account,
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignEvent,
    CampaignStatus,
    EndReason,
    JobStatus,
    Outcome,
    transaction,
    utcnow,
)
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.support import hold_lease


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with run_in_thread(SimulatorConfig(time_scale=0.001, seed=3, slow_delay_s=1.5)) as url:
        yield url


@pytest.fixture
def sim(sim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_url, timeout=10) as client:
        client.post("/_sim/reset").raise_for_status()
        client.post("/_sim/config", json={"faults": dict.fromkeys(FAULTS, 0.0)})
        yield client


FAULTS = ("502-before", "502-after", "429", "slow")


@pytest.fixture
def runtime_settings(sim_url: str) -> dict[str, Any]:
    return {
        "twilio_base_url": sim_url,
        "twilio_timeout_s": 1.0,
        "public_base_url": "http://127.0.0.1:9",  # callbacks go nowhere in these tests
    }


def dialing_attempt(runtime: Runtime, phone: str = "+12125550143", **campaign_options: Any) -> int:
    """A contact with one attempt in `dialing` holding a lease, as the pacer leaves it."""
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session)
        campaign = make_campaign(
            session, account, status=CampaignStatus.RUNNING, dial_retries=2, **campaign_options
        )
        job = make_job(session, campaign, phone, status=JobStatus.IN_PROGRESS, attempt_count=1)
        attempt_id = make_attempt(session, job).id
    hold_lease(runtime, attempt_id)
    return attempt_id


def state(runtime: Runtime, attempt_id: int) -> tuple[CallAttempt, CallJob, Campaign]:
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        return (
            attempt,
            session.get_one(CallJob, attempt.job_id),
            session.get_one(Campaign, attempt.campaign_id),
        )


def stats(sim: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = sim.get("/_sim/stats").json()
    return body


def leases(runtime: Runtime, attempt: CallAttempt) -> int:
    return int(runtime.redis.zcard(Keys(attempt.account_id).account_pool()))


def test_places_one_call(runtime: Runtime, sim: httpx.Client) -> None:
    attempt_id = dialing_attempt(runtime)
    assert place_call(runtime, attempt_id) is PlaceResult.PLACED
    attempt, _, _ = state(runtime, attempt_id)
    assert attempt.call_sid is not None and attempt.call_sid.startswith("CA")
    assert attempt.status is not AttemptStatus.PLACING
    # Idempotent: a redelivered task does nothing.
    assert place_call(runtime, attempt_id) is PlaceResult.SKIPPED
    assert stats(sim)["calls_created"] == 1


def test_number_added_to_dnc_after_upload_is_not_called(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime)
    attempt, _, _ = state(runtime, attempt_id)
    with transaction(runtime.settings.database_url) as session:
        dnc.add(session, attempt.account_id, ["(212) 555-0143"], "US")
    assert place_call(runtime, attempt_id) is PlaceResult.DO_NOT_CALL
    attempt, job, _ = state(runtime, attempt_id)
    assert attempt.status is AttemptStatus.NOT_PLACED
    assert (job.status, job.outcome) == (JobStatus.DONE, Outcome.DO_NOT_CALL)
    assert leases(runtime, attempt) == 0
    assert stats(sim)["create_requests"] == 0


@pytest.mark.parametrize(
    ("phone", "policy", "reason"),
    [
        ("+19005550100", {}, "premium_rate"),
        ("+449098790000", {}, "premium_rate"),
        ("+447386172392", {"allowed_countries": ["US"]}, "country_not_allowed"),
    ],
)
def test_a_number_the_campaign_may_not_call_that_reached_the_queue_is_not_dialled(
    runtime: Runtime, sim: httpx.Client, phone: str, policy: dict[str, Any], reason: str
) -> None:
    """Premium-rate numbers and countries not allowed were refused only at ingest: a
    contact that reached the queue another way (pushed, written by other code) was dialled.
    The dial path applies the campaign's number policy again."""
    attempt_id = dialing_attempt(runtime, phone, **policy)
    assert place_call(runtime, attempt_id) is PlaceResult.REJECTED
    attempt, job, _ = state(runtime, attempt_id)
    assert (attempt.status, attempt.error_message) == (AttemptStatus.NOT_PLACED, reason)
    assert (job.status, job.outcome) == (JobStatus.DONE, Outcome.REJECTED)
    assert leases(runtime, attempt) == 0
    assert stats(sim)["calls_created"] == 0


def test_a_premium_number_is_dialled_where_the_operator_allows_it(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime, "+19005550100", allow_premium=True)
    assert place_call(runtime, attempt_id) is PlaceResult.PLACED
    assert stats(sim)["calls_created"] == 1


@pytest.mark.parametrize("fault", ["502-after", "slow"])
def test_ambiguous_create_is_looked_up_and_adopted(
    runtime: Runtime, sim: httpx.Client, fault: str
) -> None:
    sim.post("/_sim/config", json={"faults": {fault: 1.0}}).raise_for_status()
    attempt_id = dialing_attempt(runtime)
    assert place_call(runtime, attempt_id) is PlaceResult.ADOPTED
    attempt, job, _ = state(runtime, attempt_id)
    assert attempt.call_sid is not None
    assert job.status is JobStatus.IN_PROGRESS
    seen = stats(sim)
    assert seen["create_requests"] == 1 and seen["calls_created"] == 1


@pytest.mark.parametrize("fault", ["502-before", "429"])
def test_refused_create_goes_back_to_the_pacer(
    runtime: Runtime, sim: httpx.Client, fault: str
) -> None:
    sim.post("/_sim/config", json={"faults": {fault: 1.0}}).raise_for_status()
    attempt_id = dialing_attempt(runtime)
    before = utcnow()
    assert place_call(runtime, attempt_id) is PlaceResult.RETRY_LATER
    attempt, job, _ = state(runtime, attempt_id)
    assert attempt.status is AttemptStatus.NOT_PLACED
    assert job.status is JobStatus.PENDING and job.next_due_at >= before
    assert (job.attempt_count, job.dial_error_count) == (0, 1)
    assert leases(runtime, attempt) == 0
    assert stats(sim)["calls_created"] == 0


def test_dial_retries_are_bounded(runtime: Runtime, sim: httpx.Client) -> None:
    sim.post("/_sim/config", json={"faults": {"502-before": 1.0}}).raise_for_status()
    attempt_id = dialing_attempt(runtime)
    with transaction(runtime.settings.database_url) as session:
        job = session.get_one(CallJob, state(runtime, attempt_id)[1].id)
        job.dial_error_count = 2  # dial_retries is 2: this is the third refusal
    assert place_call(runtime, attempt_id) is PlaceResult.RETRY_LATER
    _, job, _ = state(runtime, attempt_id)
    assert (job.status, job.outcome) == (JobStatus.DONE, Outcome.DIAL_ERROR)


def test_contact_error_ends_the_contact_with_the_provider_code(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime, phone="+15005550001")  # Twilio's magic invalid To
    assert place_call(runtime, attempt_id) is PlaceResult.REJECTED
    attempt, job, campaign = state(runtime, attempt_id)
    assert attempt.error_code == 21217
    assert (job.status, job.outcome) == (JobStatus.DONE, Outcome.REJECTED)
    assert campaign.status is CampaignStatus.RUNNING


def test_account_error_trips_the_circuit_breaker(runtime: Runtime, sim: httpx.Client) -> None:
    attempt_id = dialing_attempt(runtime, phone="+15005550003")  # 21215: geo permission
    assert place_call(runtime, attempt_id) is PlaceResult.BREAKER_TRIPPED
    attempt, job, campaign = state(runtime, attempt_id)
    assert campaign.status is CampaignStatus.PAUSED
    assert campaign.status_reason is not None and "21215" in campaign.status_reason
    # The contact is not burnt: it waits, untouched, for the campaign to resume.
    assert (job.status, job.attempt_count, job.dial_error_count) == (JobStatus.PENDING, 0, 0)
    assert leases(runtime, attempt) == 0


def test_a_redelivered_task_after_a_crash_adopts_the_call_instead_of_dialling_again(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime)
    attempt, _, _ = state(runtime, attempt_id)
    # The worker marked the attempt `placing`, sent the create, and died before recording it.
    with transaction(runtime.settings.database_url) as session:
        crashed = session.get_one(CallAttempt, attempt_id)
        mark_placing(crashed, utcnow() - timedelta(seconds=60))
        crashed.send_deadline = utcnow() - timedelta(seconds=59)
    created = sim.post(
        f"/2010-04-01/Accounts/{SIMULATOR_ACCOUNT_SID}/Calls.json",
        auth=(SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN),
        data={"To": attempt.phone_e164, "From": attempt.from_e164, "Twiml": "<Response/>"},
    )
    assert created.status_code == 201
    assert place_call(runtime, attempt_id) is PlaceResult.ADOPTED
    attempt, _, _ = state(runtime, attempt_id)
    assert attempt.call_sid == created.json()["sid"]
    assert stats(sim)["calls_created"] == 1


# --- Never ring twice, whatever the timing; a stop means stop (issue 10) -----------------


def _placing(runtime: Runtime, attempt_id: int, sent_s_ago: float) -> None:
    """As a worker leaves an attempt it marked `placing` `sent_s_ago` seconds ago."""
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        mark_placing(attempt, utcnow() - timedelta(seconds=sent_s_ago))
        attempt.send_deadline = utcnow() - timedelta(seconds=sent_s_ago - 1)


def _late_call(sim: httpx.Client, attempt: CallAttempt) -> str:
    """The call a create request makes when the provider processes it late."""
    created = sim.post(
        f"/2010-04-01/Accounts/{SIMULATOR_ACCOUNT_SID}/Calls.json",
        auth=(SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN),
        data={"To": attempt.phone_e164, "From": attempt.from_e164, "Twiml": "<Response/>"},
    )
    assert created.status_code == 201
    return str(created.json()["sid"])


def test_a_placing_attempt_is_not_looked_up_before_its_deadline_and_timeout_pass(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime)
    _placing(runtime, attempt_id, sent_s_ago=1)  # its request may still be on its way
    _late_call(sim, state(runtime, attempt_id)[0])
    assert place_call(runtime, attempt_id) is PlaceResult.RETRY_LATER
    attempt, job, _ = state(runtime, attempt_id)
    # Not looked up (the call would have been adopted), not given up: it keeps its lease.
    assert (attempt.status, attempt.call_sid) == (AttemptStatus.PLACING, None)
    assert job.status is JobStatus.IN_PROGRESS
    assert leases(runtime, attempt) == 1


def test_an_ambiguous_create_not_found_waits_before_the_contact_is_dialled_again(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime)
    _placing(runtime, attempt_id, sent_s_ago=60)
    assert recover_placing(runtime, attempt_id) is PlaceResult.RETRY_LATER
    attempt, job, _ = state(runtime, attempt_id)
    assert attempt.status is AttemptStatus.NOT_PLACED
    wait = runtime.settings.ambiguous_redial_after_s
    assert job.next_due_at >= utcnow() + timedelta(seconds=wait - 5)


def test_a_late_call_for_a_waiting_contact_is_adopted_and_counted_in_the_pool(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime)
    _placing(runtime, attempt_id, sent_s_ago=60)
    recover_placing(runtime, attempt_id)  # nothing found yet: given up
    attempt, _, _ = state(runtime, attempt_id)
    assert leases(runtime, attempt) == 0
    sid = _late_call(sim, attempt)  # ... and then the provider processes the request
    assert resolve_late_call(runtime, attempt_id, sid) is LateCall.ADOPTED
    attempt, job, _ = state(runtime, attempt_id)
    assert attempt.call_sid == sid
    assert attempt.status not in (AttemptStatus.NOT_PLACED, AttemptStatus.PLACING)
    assert job.attempt_count == 1  # it rang: it counts as an attempt
    # The pool counts the call while it exists (on this time scale it may be over already,
    # fetched and applied by the adoption: then the contact's next step was decided).
    if attempt.status in LIVE_ATTEMPT_STATUSES:
        assert (job.status, leases(runtime, attempt)) == (JobStatus.IN_PROGRESS, 1)
    else:
        assert job.status is not JobStatus.IN_PROGRESS
        assert leases(runtime, attempt) == 0
    # Idempotent: a second callback of the same call changes nothing.
    assert resolve_late_call(runtime, attempt_id, sid) is LateCall.NOTHING
    assert stats(sim)["hang_ups"] == 0


def test_a_late_call_for_a_contact_dialled_again_is_hung_up(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime)
    _placing(runtime, attempt_id, sent_s_ago=60)
    recover_placing(runtime, attempt_id)
    attempt, job, _ = state(runtime, attempt_id)
    with transaction(runtime.settings.database_url) as session:  # the contact's next attempt
        contact = session.get_one(CallJob, job.id)
        newer = make_attempt(session, contact, attempt_no=2, status=AttemptStatus.RINGING).id
    sid = _late_call(sim, attempt)
    assert resolve_late_call(runtime, attempt_id, sid) is LateCall.HUNG_UP
    attempt, job, _ = state(runtime, attempt_id)
    assert (attempt.status, attempt.call_sid) == (AttemptStatus.NOT_PLACED, sid)
    assert attempt.end_reason is EndReason.LATE_CREATE
    call = sim.get(
        f"/2010-04-01/Accounts/{SIMULATOR_ACCOUNT_SID}/Calls/{sid}.json",
        auth=(SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN),
    ).json()
    assert call["status"] in ("canceled", "completed")
    assert leases(runtime, attempt) == 0
    assert newer > attempt_id


@pytest.mark.parametrize(
    ("status", "job_status"),
    [(CampaignStatus.PAUSED, JobStatus.PENDING), (CampaignStatus.CANCELED, JobStatus.CANCELED)],
)
def test_a_dial_of_a_stopped_campaign_is_not_made(
    runtime: Runtime, sim: httpx.Client, status: CampaignStatus, job_status: JobStatus
) -> None:
    attempt_id = dialing_attempt(runtime)
    with transaction(runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, state(runtime, attempt_id)[2].id)
        campaign.status = status
    assert place_call(runtime, attempt_id) is PlaceResult.STOPPED
    attempt, job, _ = state(runtime, attempt_id)
    assert attempt.status is AttemptStatus.NOT_PLACED
    assert (job.status, job.attempt_count, job.dial_error_count) == (job_status, 0, 0)
    assert leases(runtime, attempt) == 0
    assert stats(sim)["create_requests"] == 0


def test_no_create_leaves_without_a_send_slot(runtime: Runtime, sim: httpx.Client) -> None:
    runtime.settings.send_wait_s = 0.2
    attempt_id = dialing_attempt(runtime)
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        account = session.get_one(Account, attempt.account_id)
        account.cps = 0.5  # one create every two seconds
        campaign = session.get_one(Campaign, attempt.campaign_id)
        windows = send_windows(account, campaign, ProviderLimits())
    # Another request took the window's slot and is not answered yet.
    assert runtime.pool.wait_for_send_slot("other", windows, time.monotonic() + 1, hold_s=60)
    assert place_call(runtime, attempt_id) is PlaceResult.RETRY_LATER
    attempt, job, _ = state(runtime, attempt_id)
    assert attempt.status is AttemptStatus.NOT_PLACED
    assert (job.status, job.attempt_count, job.dial_error_count) == (JobStatus.PENDING, 0, 0)
    assert stats(sim)["create_requests"] == 0


def test_a_poison_attempt_ends_after_three_tries(runtime: Runtime, sim: httpx.Client) -> None:
    attempt_id = dialing_attempt(runtime)
    with transaction(runtime.settings.database_url) as session:  # a placeholder with no value
        session.get_one(Campaign, state(runtime, attempt_id)[2].id).message = "Hi {nickname}"
    assert place_call(runtime, attempt_id) is PlaceResult.FAILED
    assert place_call(runtime, attempt_id) is PlaceResult.FAILED
    attempt, job, _ = state(runtime, attempt_id)
    assert (attempt.status, attempt.task_failures) == (AttemptStatus.DIALING, 2)
    assert place_call(runtime, attempt_id) is PlaceResult.FAILED
    attempt, job, _ = state(runtime, attempt_id)
    assert attempt.status is AttemptStatus.NOT_PLACED
    assert (job.status, job.outcome) == (JobStatus.DONE, Outcome.ERROR)
    assert attempt.error_message is not None and "nickname" in attempt.error_message
    assert "Error" in attempt.error_message.split(":")[0]
    assert leases(runtime, attempt) == 0
    assert stats(sim)["create_requests"] == 0


def test_the_breaker_pauses_every_running_campaign_of_the_account(
    runtime: Runtime, sim: httpx.Client
) -> None:
    attempt_id = dialing_attempt(runtime, phone="+15005550003")  # 21215: geo permission
    _, _, campaign = state(runtime, attempt_id)
    with transaction(runtime.settings.database_url) as session:
        account = session.get_one(Account, campaign.account_id)
        other = make_campaign(session, account, status=CampaignStatus.RUNNING).id
        draft = make_campaign(session, account, status=CampaignStatus.DRAFT).id
    assert place_call(runtime, attempt_id) is PlaceResult.BREAKER_TRIPPED
    with transaction(runtime.settings.database_url) as session:
        for campaign_id in (campaign.id, other):
            tripped = session.get_one(Campaign, campaign_id)
            assert tripped.status is CampaignStatus.PAUSED
            assert tripped.breaker_trips == 1
            assert tripped.status_reason is not None and "21215" in tripped.status_reason
            [event] = session.scalars(
                select(CampaignEvent).where(CampaignEvent.campaign_id == campaign_id)
            )
            assert (event.action, event.actor, event.from_status, event.to_status) == (
                "trip_breaker",
                "breaker",
                "running",
                "paused",
            )
            assert event.reason == tripped.status_reason
        assert session.get_one(Campaign, draft).status is CampaignStatus.DRAFT


@pytest.mark.parametrize(
    "slow_reply_s",
    [0.3, 1.5],
    ids=["create-answered-after-the-cancel", "create-timed-out-then-looked-up"],
)
def test_a_call_still_being_placed_when_its_campaign_is_cancelled_with_hang_up_is_hung_up(
    runtime: Runtime, sim: httpx.Client, slow_reply_s: float
) -> None:
    """`cancel --hang-up` while the create request is at the carrier (its reply held):
    once the call has its sid (the reply, or the lookup after the provider timeout of
    1 s), it is hung up at once. Read at the carrier: nothing is left live, although the
    call would talk for some 1,000 real seconds."""
    talk = {"median_s": 1e6, "sigma": 0.01, "minimum_s": 9e5, "maximum_s": 1.1e6}
    before = sim.get("/_sim/config").json()
    sim.post(
        "/_sim/config",
        json={
            "faults": {"slow": 1.0},
            "slow_delay_s": slow_reply_s,
            "talk": talk,
            "outcome_weights": {"human": 1.0},
        },
    ).raise_for_status()
    try:
        attempt_id = dialing_attempt(runtime)
        _, _, campaign = state(runtime, attempt_id)
        with ThreadPoolExecutor(1) as pool:
            placing = pool.submit(place_call, runtime, attempt_id)
            deadline = time.monotonic() + 10
            while stats(sim)["calls_created"] < 1:  # the call exists; its reply is held
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with transaction(runtime.settings.database_url) as session:
                lifecycle.cancel(session, campaign.account_id, campaign.id, actor="cli:ops")
                assert lifecycle.hang_up_on_cancel(session, campaign.id) == []  # no sid yet
            assert placing.result(timeout=30) is PlaceResult.STOPPED
        attempt, _, _ = state(runtime, attempt_id)
        assert attempt.call_sid is not None
        assert attempt.end_reason is EndReason.CAMPAIGN_CANCELED
        assert attempt.status not in LIVE_ATTEMPT_STATUSES
        call = sim.get(
            f"/2010-04-01/Accounts/{SIMULATOR_ACCOUNT_SID}/Calls/{attempt.call_sid}.json",
            auth=(SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN),
        ).json()
        assert call["status"] in ("canceled", "completed")
        seen = stats(sim)
        assert (seen["calls_created"], seen["live"]) == (1, 0)
        assert leases(runtime, attempt) == 0
    finally:
        sim.post(
            "/_sim/config",
            json={k: before[k] for k in ("slow_delay_s", "talk", "outcome_weights")},
        ).raise_for_status()


def test_a_call_tied_by_its_callback_before_the_lookup_of_a_cancelled_campaign_is_hung_up(
    runtime: Runtime, sim: httpx.Client
) -> None:
    """The reaper looks up a `placing` attempt whose call a status callback already tied
    to it, after `cancel --hang-up` marked it: the call is hung up (after the lookup's
    transaction commits: hanging up locks the attempt's row again), read at the carrier."""
    sim.post("/_sim/config", json={"outcome_weights": {"human": 1.0}}).raise_for_status()
    attempt_id = dialing_attempt(runtime)
    _, _, campaign = state(runtime, attempt_id)
    calls = f"/2010-04-01/Accounts/{SIMULATOR_ACCOUNT_SID}/Calls"
    auth = (SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN)
    created = sim.post(
        f"{calls}.json",
        data={"To": "+12125550143", "From": "+15005550006", "Twiml": "<Response/>"},
        auth=auth,
    )
    assert created.status_code == 201, created.text
    sid = created.json()["sid"]
    with transaction(runtime.settings.database_url) as session:
        lifecycle.cancel(session, campaign.account_id, campaign.id, actor="cli:ops")
        attempt = session.get_one(CallAttempt, attempt_id)
        attempt.status = AttemptStatus.RINGING  # as its first status callback leaves it
        attempt.call_sid = sid
        attempt.end_reason = EndReason.CAMPAIGN_CANCELED  # as `hang_up_on_cancel` marks it
    pool = ThreadPoolExecutor(1)  # not joined: a deadlocked lookup fails here, not hangs
    try:
        result = pool.submit(recover_placing, runtime, attempt_id).result(timeout=20)
    finally:
        pool.shutdown(wait=False)
    assert result is PlaceResult.STOPPED
    assert sim.get(f"{calls}/{sid}.json", auth=auth).json()["status"] in ("canceled", "completed")


@pytest.mark.parametrize("canceled", [False, True])
def test_a_call_its_status_callback_tied_first_is_placed_as_it_stands(
    runtime: Runtime, sim: httpx.Client, monkeypatch: pytest.MonkeyPatch, canceled: bool
) -> None:
    attempt_id = dialing_attempt(runtime)
    create = runtime.provider.create_call

    def create_then_callback(request: Any) -> Any:
        call = create(request)
        # The `initiated` callback is applied before the create's reply is: it ties the call
        # (and the campaign was cancelled with hang-up meanwhile, in one case).
        with transaction(runtime.settings.database_url) as session:
            attempt = session.get_one(CallAttempt, attempt_id)
            attempt.status, attempt.call_sid = AttemptStatus.INITIATED, call.sid
            if canceled:
                attempt.end_reason = EndReason.CAMPAIGN_CANCELED
        return call

    monkeypatch.setattr(runtime.provider, "create_call", create_then_callback)
    result = place_call(runtime, attempt_id)
    attempt, _, _ = state(runtime, attempt_id)
    assert stats(sim)["calls_created"] == 1
    if canceled:
        assert result is PlaceResult.STOPPED  # `hang_up_call` ran: the call is over
        [call] = sim.get("/_sim/calls").json()
        assert call["status"] in ("canceled", "completed")
        assert attempt.end_reason is EndReason.CAMPAIGN_CANCELED
    else:
        assert result is PlaceResult.PLACED
        assert attempt.status is AttemptStatus.INITIATED  # not moved back to `queued`


def test_a_call_cancelled_while_its_create_request_is_at_the_carrier_is_hung_up(
    runtime: Runtime, sim: httpx.Client
) -> None:
    """`DELETE /v1/calls/{id}` (`campaigns.calls.cancel_call`) while the create request is
    at the carrier (its reply held): the call is hung up as soon as its sid arrives, and
    the contact ends `canceled` with its campaign still running."""
    talk = {"median_s": 1e6, "sigma": 0.01, "minimum_s": 9e5, "maximum_s": 1.1e6}
    before = sim.get("/_sim/config").json()
    sim.post(
        "/_sim/config",
        json={
            "faults": {"slow": 1.0},
            "slow_delay_s": 0.3,
            "talk": talk,
            "outcome_weights": {"human": 1.0},
        },
    ).raise_for_status()
    try:
        attempt_id = dialing_attempt(runtime)
        _, job, campaign = state(runtime, attempt_id)
        with ThreadPoolExecutor(1) as pool:
            placing = pool.submit(place_call, runtime, attempt_id)
            deadline = time.monotonic() + 10
            while stats(sim)["calls_created"] < 1:  # the call exists; its reply is held
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with transaction(runtime.settings.database_url) as session:
                done = calls.cancel_call(session, runtime, job.account_id, job.id, actor="cli:ops")
                assert done.hang_up is None  # no sid yet: hung up when it comes
            assert placing.result(timeout=30) is PlaceResult.STOPPED
        attempt, job, campaign = state(runtime, attempt_id)
        assert attempt.call_sid is not None
        assert attempt.end_reason is EndReason.CALL_CANCELED
        assert attempt.status not in LIVE_ATTEMPT_STATUSES
        assert job.status is JobStatus.CANCELED
        assert campaign.status is CampaignStatus.RUNNING
        seen = stats(sim)
        assert (seen["calls_created"], seen["live"]) == (1, 0)
        assert leases(runtime, attempt) == 0
    finally:
        sim.post(
            "/_sim/config",
            json={k: before[k] for k in ("slow_delay_s", "talk", "outcome_weights")},
        ).raise_for_status()
