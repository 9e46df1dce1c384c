"""The status webhook: signature, malformed bodies, store-once, state machine, lease release."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from campaigns import lifecycle
from dialer.pool import Keys
from dialer.runtime import Runtime
from dialer.settings import SIMULATOR_AUTH_TOKEN, Settings
from dialer.web.app import create_app
from models import (
    AttemptStatus,
    CallAttempt,
    CallJob,
    CampaignStatus,
    JobStatus,
    Outcome,
    ProviderEvent,
    transaction,
    utcnow,
)
from tests.conftest import REDIS_URL
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.servers import serve_app
from tests.support import POISONED_POLICY, hold_lease, poison_retry_reader
from workers.app import DIALS_QUEUE
from workers.enqueue import HANG_UP

BASE = "https://dialer.example.test"
SID = "CA" + "b" * 32


@pytest.fixture
def runtime_settings() -> dict[str, Any]:
    return {"public_base_url": BASE}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[httpx.Client]:
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url) as http:
        yield http


@pytest.fixture
def attempt_id(runtime: Runtime) -> int:
    """A live attempt holding a lease, for a campaign that retries busy calls."""
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session)
        campaign = make_campaign(
            session,
            account,
            status=CampaignStatus.RUNNING,
            max_attempts=2,
            retry_policy={"busy": {"retry": True, "delay_s": 60}},
        )
        job = make_job(
            session, campaign, "+12125550143", status=JobStatus.IN_PROGRESS, attempt_count=1
        )
        attempt_id = make_attempt(session, job, status=AttemptStatus.QUEUED, call_sid=SID).id
    hold_lease(runtime, attempt_id)
    return attempt_id


def post(
    client: httpx.Client,
    attempt_id: int,
    params: dict[str, str],
    *,
    token: str = SIMULATOR_AUTH_TOKEN,
    kind: str = "status",
) -> Any:
    path = f"/v1/providers/twilio/{kind}/{attempt_id}"
    signature = RequestValidator(token).compute_signature(BASE + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def status(call_status: str, seq: int, **extra: str) -> dict[str, str]:
    return {
        "CallSid": SID,
        "AccountSid": "AC" + "0" * 31 + "1",
        "CallStatus": call_status,
        "SequenceNumber": str(seq),
        "Timestamp": f"Sat, 21 Nov 2026 12:00:0{seq} +0000",
        **extra,
    }


def load(runtime: Runtime, attempt_id: int) -> tuple[CallAttempt, CallJob, int]:
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        job = session.get_one(CallJob, attempt.job_id)
        events = session.scalar(select(func.count()).select_from(ProviderEvent)) or 0
        return attempt, job, events


def test_forged_callbacks_are_rejected_and_change_nothing(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    assert (
        post(client, attempt_id, status("completed", 3), token="not-the-token").status_code == 403
    )
    unsigned = client.post(f"/v1/providers/twilio/status/{attempt_id}", data=status("completed", 3))
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "invalid_signature"
    attempt, _, events = load(runtime, attempt_id)
    assert attempt.status is AttemptStatus.QUEUED
    assert events == 0


def test_malformed_body_is_400_with_a_code(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    response = post(client, attempt_id, status("exploded", 1))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_callback"
    response = post(client, attempt_id, {"CallStatus": "ringing"})
    assert response.status_code == 400
    assert load(runtime, attempt_id)[2] == 0


def test_unknown_attempt_is_404(client: httpx.Client, attempt_id: int) -> None:
    response = post(client, attempt_id + 1000, status("ringing", 1))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "attempt_not_found"


def test_events_apply_once_and_terminal_frees_the_lease(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    assert post(client, attempt_id, status("ringing", 1)).status_code == 204
    assert post(client, attempt_id, status("ringing", 1)).status_code == 204  # duplicate
    attempt, _, events = load(runtime, attempt_id)
    assert attempt.status is AttemptStatus.RINGING and events == 1
    assert post(client, attempt_id, status("busy", 2)).status_code == 204
    assert post(client, attempt_id, status("in-progress", 3)).status_code == 204  # stale
    attempt, job, events = load(runtime, attempt_id)
    assert attempt.status is AttemptStatus.BUSY
    assert job.status is JobStatus.PENDING  # busy retries (2 attempts allowed)
    assert job.outcome is Outcome.BUSY
    assert (job.next_due_at - utcnow()).total_seconds() > 50
    assert runtime.redis.zcard(Keys(attempt.account_id).account_pool()) == 0
    assert runtime.redis.llen(Keys(attempt.account_id).wake()) == 1


def test_a_busy_retry_at_night_is_due_at_the_next_opening(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    """The webhook's fast path decides retries with the contact's window too."""
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        session.get_one(CallJob, attempt.job_id).zones = ["America/New_York"]
    runtime.clock = lambda: datetime(2027, 1, 16, 0, 59, 30, tzinfo=UTC)  # 19:59:30 New York
    assert post(client, attempt_id, status("busy", 1)).status_code == 204
    _, job, _ = load(runtime, attempt_id)
    assert job.status is JobStatus.PENDING
    assert job.next_due_at == datetime(2027, 1, 16, 14, tzinfo=UTC)  # 09:00, not 20:00:30


def test_amd_and_gather_are_recorded(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    amd = {"CallSid": SID, "AccountSid": "AC" + "0" * 31 + "1", "AnsweredBy": "machine_end_beep"}
    assert post(client, attempt_id, amd, kind="amd").status_code == 204
    gathered = post(client, attempt_id, {**amd, "Digits": "1"}, kind="gather")
    assert gathered.status_code == 200 and "<Say " in gathered.text
    assert post(client, attempt_id, status("completed", 4, CallDuration="30")).status_code == 204
    attempt, job, _ = load(runtime, attempt_id)
    assert attempt.answered_by == "machine_end_beep"
    assert attempt.digits == "1"
    assert job.status is JobStatus.DONE and job.outcome is Outcome.MACHINE


def test_database_unreachable_is_503_and_retried_later(runtime: Runtime, attempt_id: int) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = Runtime(
        Settings(
            database_url=f"postgresql+psycopg://root@127.0.0.1:{closed_port}/dialer",
            redis_url=REDIS_URL,
            public_base_url=BASE,
        )
    )
    with serve_app(create_app(down)) as url, httpx.Client(base_url=url) as http:
        response = post(http, attempt_id, status("completed", 3, CallDuration="30"))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.headers["Retry-After"] == "1"
    # Nothing was lost: Twilio's retry, once PostgreSQL is back, applies the event.
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url) as http:
        assert post(http, attempt_id, status("completed", 3, CallDuration="30")).status_code == 204
    attempt, job, events = load(runtime, attempt_id)
    assert attempt.status is AttemptStatus.COMPLETED and events == 1
    assert job.status is JobStatus.DONE


def test_a_callback_that_fails_to_apply_is_answered_and_the_other_accounts_are_applied(
    client: httpx.Client, runtime: Runtime, attempt_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another account's campaign holds a retry policy written before any check (old data):
    its busy callback is stored and answered 204 (a 5xx would only make Twilio resend an
    event already stored), its attempt left as it was; this account's callbacks, sent at the
    same moment, are applied."""
    poison_retry_reader(monkeypatch)
    poisoned_sid = "CA" + "c" * 32
    with transaction(runtime.settings.database_url) as session:
        campaign = make_campaign(
            session,
            make_account(session, "hostile"),
            status=CampaignStatus.RUNNING,
            max_attempts=2,
            retry_policy=POISONED_POLICY,
        )
        job = make_job(
            session, campaign, "+12125550144", status=JobStatus.IN_PROGRESS, attempt_count=1
        )
        poisoned = make_attempt(session, job, status=AttemptStatus.QUEUED, call_sid=poisoned_sid).id
    with ThreadPoolExecutor(2) as senders:
        answers = list(
            senders.map(
                lambda sent: post(client, *sent).status_code,
                [
                    (poisoned, {**status("busy", 1), "CallSid": poisoned_sid}),
                    (attempt_id, status("busy", 1)),
                ],
            )
        )
    assert answers == [204, 204]
    attempt, job, _ = load(runtime, attempt_id)
    assert attempt.status is AttemptStatus.BUSY and job.status is JobStatus.PENDING
    with transaction(runtime.settings.database_url) as session:
        assert session.get_one(CallAttempt, poisoned).status is AttemptStatus.QUEUED
        stored = session.scalar(select(func.count()).where(ProviderEvent.attempt_id == poisoned))
    assert stored == 1


def test_the_first_callback_of_a_call_placed_for_a_cancelled_campaign_hangs_it_up(
    client: httpx.Client, runtime: Runtime, redis_client: redis.Redis
) -> None:
    """`cancel --hang-up` while the create request was out: the call's first status
    callback (before the create's reply) ties it to the attempt, and asks for its hang-up."""
    with transaction(runtime.settings.database_url) as session:
        campaign = make_campaign(session, make_account(session), status=CampaignStatus.RUNNING)
        job = make_job(
            session, campaign, "+12125550143", status=JobStatus.IN_PROGRESS, attempt_count=1
        )
        attempt_id = make_attempt(session, job, status=AttemptStatus.PLACING).id
        lifecycle.cancel(session, campaign.account_id, campaign.id, actor="cli:ops")
        assert lifecycle.hang_up_on_cancel(session, campaign.id) == []
    assert post(client, attempt_id, status("ringing", 1)).status_code == 204
    attempt, _, _ = load(runtime, attempt_id)
    assert (attempt.status, attempt.call_sid) == (AttemptStatus.RINGING, SID)
    sent = [json.loads(raw)["headers"] for raw in redis_client.lrange(DIALS_QUEUE, 0, -1)]
    assert [(m["task"], m["kwargsrepr"]) for m in sent] == [
        (HANG_UP, repr({"attempt_id": attempt_id, "reason": "campaign_canceled"}))
    ]
