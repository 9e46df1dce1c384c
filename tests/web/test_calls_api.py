"""Single calls through the HTTP API: POST /v1/calls (its validation order, one test per
step showing the earlier failure wins), GET /v1/calls/{id}, the lists with filters and
cursor pagination, `wait`, and another account's calls and campaigns being 404."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from campaigns import lifecycle
from dialer.campaign_state import BREAKER, CampaignAction, transition
from dialer.runtime import Runtime
from dialer.web.app import create_app
from models import AttemptStatus, CallerId, CallJob, Campaign, transaction
from tests.dialer.test_pacer_windows import Clock, utc
from tests.factories import make_attempt
from tests.servers import serve_app
from tests.web.support import KEY, OTHER_KEY, SAMPLE, Api, error_code
from workers.app import PACER_QUEUE

TO = "+447386172392"
CALL = {"to_number": TO, "message": "Hello {name}.", "variables": {"name": "Ada"}}


def call_count(api: Api) -> int:
    with transaction(api.runtime.settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(CallJob)) or 0


def place(api: Api, key: str | None = None, **fields: Any) -> Any:
    response = api.post("/v1/calls", json={**CALL, **fields}, **({"key": key} if key else {}))
    assert response.status_code == 201, response.text
    return response.json()


def test_a_call_is_queued_and_read_back(api: Api, redis_client: redis.Redis) -> None:
    created = place(api, metadata={"order": "A-17"}, amd="detect", ring_timeout=20)
    assert created["status"] == "queued"
    assert (created["to"], created["from"]) == (TO, "+15005550006")
    assert isinstance(created["call_id"], int)
    assert created["attempts"] == []

    shown = api.get(f"/v1/calls/{created['call_id']}")
    assert shown.status_code == 200, shown.text
    call = shown.json()
    assert call["metadata"] == {"order": "A-17"}
    assert call["variables"] == {"name": "Ada"}
    assert call["outcome"] is None
    assert call["next_attempt_at"]
    # The standing campaign of the account's caller ID holds it, running.
    campaign = api.get(f"/v1/campaigns/{call['campaign_id']}").json()
    assert campaign["status"] == "running"
    assert campaign["name"] == "api (+15005550006)"
    with transaction(api.runtime.settings.database_url) as session:
        job = session.get_one(CallJob, created["call_id"])
        assert (job.message, job.ring_timeout_s, job.machine_detection) == (
            "Hello {name}.",
            20,
            True,
        )
        assert job.machine_action is not None and job.machine_action.value == "continue"
    # The pacer is woken once the call is committed.
    deadline = time.monotonic() + 5
    while redis_client.llen(PACER_QUEUE) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert redis_client.llen(PACER_QUEUE) == 1

    # The same number again is another call of the same standing campaign.
    again = place(api)
    assert again["call_id"] != created["call_id"]
    assert again["campaign_id"] == call["campaign_id"]


def test_the_standing_campaign_follows_the_accounts_cap(api: Api) -> None:
    campaign_id = place(api)["campaign_id"]
    assert api.get(f"/v1/campaigns/{campaign_id}").json()["max_concurrency"] == 10
    assert api.patch("/v1/account", json={"max_concurrency": 40}).status_code == 200
    assert api.get(f"/v1/campaigns/{campaign_id}").json()["max_concurrency"] == 40


def test_a_call_from_another_number_goes_to_that_numbers_standing_campaign(api: Api) -> None:
    assert api.post("/v1/numbers", json={"number": "+14155550101"}).status_code == 201
    first = place(api)
    other = place(api, from_number="+14155550101")
    assert other["from"] == "+14155550101"
    assert other["campaign_id"] != first["campaign_id"]


def test_a_call_in_a_named_campaign_uses_its_message_and_caller_id(api: Api) -> None:
    campaign_id = api.upload(SAMPLE.read_bytes()).json()["campaign_id"]
    created = place(
        api,
        campaign_id=campaign_id,
        message=None,
        variables={"first_name": "Ada", "appointment_time": "Monday"},
    )
    assert created["campaign_id"] == campaign_id
    assert created["from"] == "+15005550006"
    listed = api.get(f"/v1/campaigns/{campaign_id}/calls", params={"to_number": TO}).json()
    assert [c["call_id"] for c in listed["items"]] == [created["call_id"]]
    # The campaign's message needs {appointment_time}.
    refused = api.post(
        "/v1/calls",
        json={"to_number": TO, "campaign_id": campaign_id, "variables": {"first_name": "A"}},
    )
    assert error_code(refused, 400) == "missing_variable"
    assert "appointment_time" in refused.json()["error"]["message"]
    mismatch = api.post(
        "/v1/calls", json={**CALL, "campaign_id": campaign_id, "from_number": "+14155550101"}
    )
    assert error_code(mismatch, 400) == "from_number_not_found"
    assert api.post("/v1/numbers", json={"number": "+14155550101"}).status_code == 201
    mismatch = api.post(
        "/v1/calls", json={**CALL, "campaign_id": campaign_id, "from_number": "+14155550101"}
    )
    assert error_code(mismatch, 400) == "from_number_mismatch"
    assert api.post(f"/v1/campaigns/{campaign_id}/cancel").status_code == 200
    closed = api.post("/v1/calls", json={**CALL, "campaign_id": campaign_id})
    assert error_code(closed, 409) == "invalid_state"


# --- the validation order: each step wins over every later one ------------------------------


def _allowed_countries_campaign(api: Api) -> int:
    with transaction(api.runtime.settings.database_url) as session:
        from models import Account

        account = session.get_one(Account, api.account_id)
        options = lifecycle.CampaignOptions(
            name="US only", message="Hi {first_name}.", allowed_countries=["US"]
        )
        csv = io.BytesIO(b"phone,first_name\n+12125550143,Ada\n")
        campaign, _ = lifecycle.create_campaign(session, account, options, csv)
        return campaign.id


BAD_LATER = {"from_number": "+14155550199", "message": "Hi {missing}."}
"""Fields that fail later steps (an unknown caller ID, a placeholder without a value)."""
US_ONLY = -1
"""Stands for the id of a campaign that allows US numbers only."""


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to_number": None, **BAD_LATER}, "missing_field"),
        ({"to_number": "07386172392", "message": None}, "missing_field"),
        ({"to_number": "07386172392", **BAD_LATER}, "invalid_phone_format"),
        ({"to_number": "911", **BAD_LATER}, "emergency_or_short_code"),
        ({"to_number": "+19005550100", **BAD_LATER}, "premium_rate"),
        (
            {"to_number": "+447386172393", "campaign_id": US_ONLY, **BAD_LATER},
            "country_not_allowed",
        ),
        ({"to_number": TO, **BAD_LATER}, "do_not_call"),
        ({"to_number": "+447386172393", **BAD_LATER}, "from_number_not_found"),
        ({"to_number": "+447386172393", "message": "Hi {missing}."}, "missing_variable"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_validation_order(api: Api, fields: dict[str, Any], code: str) -> None:
    """Each step's failure wins over every later step's (the body fails those too)."""
    assert api.post("/v1/dnc", json={"numbers": [TO]}).json() == {"added": 1}
    body = {**CALL, **fields}
    if body.get("campaign_id") == US_ONLY:
        body["campaign_id"] = _allowed_countries_campaign(api)
    body = {key: value for key, value in body.items() if value is not None}
    response = api.post("/v1/calls", json=body)
    assert error_code(response, 400) == code, response.text
    if code == "missing_field":
        [detail] = response.json()["error"]["details"]
        assert detail["field"] == ("to_number" if "to_number" not in body else "message")
    with transaction(api.runtime.settings.database_url) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(CallJob).where(CallJob.line_no.is_(None))
            )
            == 0
        )


def test_no_outbound_number_comes_before_missing_variable(api: Api) -> None:
    disabled = api.post("/v1/numbers", json={"number": "+15005550006", "outbound": False})
    assert disabled.status_code == 200
    response = api.post("/v1/calls", json={**CALL, "message": "Hi {missing}."})
    assert error_code(response, 400) == "no_outbound_number"
    response = api.post("/v1/calls", json={**CALL, "from_number": "+15005550006"})
    assert error_code(response, 400) == "from_number_not_found"


def test_bodies_refused_before_validation(api: Api) -> None:
    not_json = api.post(
        "/v1/calls",
        content=b"to_number=+447386172392",
        headers={"Content-Type": "application/json"},
    )
    assert error_code(not_json, 422) == "invalid_json"
    big = {"k": "x" * 5000}
    too_big = api.post("/v1/calls", json={**CALL, "metadata": big})
    assert error_code(too_big, 400) == "invalid_option"
    for field, value in [
        ("amd", "maybe"),
        ("ring_timeout", 1),
        ("wait", 31),
        ("metadata", {"n": 1}),
        ("call_at", "2026-01-01T09:00:00"),  # no offset
        ("colour", "red"),
    ]:
        response = api.post("/v1/calls", json={**CALL, field: value})
        assert error_code(response, 400) == "invalid_option", field
        assert response.json()["error"]["details"][0]["field"].startswith(field)
    refused = api.post("/v1/calls", json={**CALL, "webhook_url": "ftp://example.com/"})
    assert error_code(refused, 400) == "webhook_url_not_allowed"
    assert call_count(api) == 0


def test_call_at_is_the_due_time_inside_the_window(api: Api) -> None:
    # A London number, the default window 09:00-20:00: 10:30 London is inside it.
    created = place(api, call_at="2030-01-02T11:30:00+01:00")
    shown = api.get(f"/v1/calls/{created['call_id']}").json()
    assert shown["next_attempt_at"].startswith("2030-01-02T10:30:00")
    # 08:30 London is before the window opens: due at 09:00.
    early = place(api, call_at="2030-01-02T09:30:00+01:00")
    shown = api.get(f"/v1/calls/{early['call_id']}").json()
    assert shown["next_attempt_at"].startswith("2030-01-02T09:00:00")


def test_wait_inside_the_window_holds_until_the_deadline(api: Api) -> None:
    """10:00 in London, inside the callee's window: the call is due now and the request
    holds for its end. No worker runs here: the call stays queued, and the reply comes at
    the deadline."""
    api.runtime.clock = Clock(utc(2027, 1, 15, 10))
    started = time.monotonic()
    created = place(api, wait=1.0)
    assert 1.0 <= time.monotonic() - started < 5
    assert created["status"] == "queued"
    assert created["waiting_reason"] is None
    assert created["next_attempt_at"] == "2027-01-15T10:00:00Z"


def test_wait_outside_the_window_answers_at_once_with_the_reason(api: Api) -> None:
    """Midnight in New York: the call's first attempt is at 09:00 there, hours past the
    `wait`; the reply comes at once and says so, and a read says the same."""
    api.runtime.clock = Clock(utc(2027, 1, 15, 5))  # 00:00 in New York
    started = time.monotonic()
    created = place(api, to_number="+12125550143", wait=20)
    assert time.monotonic() - started < 5
    assert created["status"] == "queued"
    assert created["waiting_reason"] == "calling_window"
    assert created["next_attempt_at"] == "2027-01-15T14:00:00Z"  # 09:00 in New York
    shown = api.get(f"/v1/calls/{created['call_id']}").json()
    assert (shown["waiting_reason"], shown["next_attempt_at"]) == (
        "calling_window",
        "2027-01-15T14:00:00Z",
    )


def test_wait_over_the_frequency_cap_answers_at_once_with_the_reason(api: Api) -> None:
    """The number had the account's 3 calls of the day, the oldest at 11:00: the next
    attempt is at 11:00 tomorrow, not now."""
    clock = Clock(utc(2027, 1, 15, 15))  # 10:00 in New York
    api.runtime.clock = clock
    first = place(api, to_number="+12125550143")
    with transaction(api.runtime.settings.database_url) as session:
        contact = session.get_one(CallJob, first["call_id"])
        for hour in (11, 12, 13):
            make_attempt(
                session, contact, status=AttemptStatus.NO_ANSWER, created_at=utc(2027, 1, 15, hour)
            )
    started = time.monotonic()
    created = place(api, to_number="+12125550143", wait=20)
    assert time.monotonic() - started < 5
    assert created["waiting_reason"] == "frequency_cap"
    assert created["next_attempt_at"] == "2027-01-16T14:00:00Z"  # 11:00 UTC is 06:00 there


def test_wait_in_a_paused_campaign_answers_at_once_with_the_reason(api: Api) -> None:
    """An operator's pause takes the call; no time is known until the campaign resumes."""
    api.runtime.clock = Clock(utc(2027, 1, 15, 10))
    campaign_id = place(api)["campaign_id"]
    with transaction(api.runtime.settings.database_url) as session:
        transition(session.get_one(Campaign, campaign_id), CampaignAction.PAUSE, actor="cli:ops")
    started = time.monotonic()
    created = place(api, wait=20)
    assert time.monotonic() - started < 5
    assert (created["waiting_reason"], created["next_attempt_at"]) == ("campaign_paused", None)


def test_wait_requests_over_the_accounts_cap_are_refused_at_once(
    api: Api, redis_client: redis.Redis
) -> None:
    """With one waiter allowed, a second `wait` of the account is 429 at once and places
    nothing; another account waits as usual; a slot left by a dead process expires."""
    waiters = f"api:waiters:{api.account_id}"
    runtime = Runtime(api.runtime.settings.model_copy(update={"max_waiters_per_account": 1}))
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url, timeout=30) as http:
        acme = {"Authorization": f"Bearer {KEY}"}
        holding = ThreadPoolExecutor(1).submit(
            http.post, "/v1/calls", json={**CALL, "wait": 3.0}, headers=acme
        )
        deadline = time.monotonic() + 10
        while not redis_client.zcard(waiters) and time.monotonic() < deadline:
            pass
        started = time.monotonic()
        refused = http.post("/v1/calls", json={**CALL, "wait": 3.0}, headers=acme)
        assert time.monotonic() - started < 2
        other = http.post(
            "/v1/calls",
            json={**CALL, "wait": 0.2},
            headers={"Authorization": f"Bearer {OTHER_KEY}"},
        )
        assert holding.result(30).status_code == 201
        assert error_code(refused, 429) == "too_many_waiters"
        assert refused.headers["Retry-After"] == "1"
        assert other.status_code == 201, other.text
        assert call_count(api) == 2
        assert redis_client.zcard(waiters) == 0
        # A slot whose holder died (its lease expired) does not count.
        redis_client.zadd(waiters, {"dead-process": 1})
        assert http.post("/v1/calls", json={**CALL, "wait": 0.1}, headers=acme).status_code == 201


def test_a_wait_refused_for_the_cap_does_not_use_up_its_idempotency_key(api: Api) -> None:
    runtime = Runtime(api.runtime.settings.model_copy(update={"max_waiters_per_account": 0}))
    request = {"json": {**CALL, "wait": 0.1}, "headers": {"Idempotency-Key": "order-7"}}
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url, timeout=30) as http:
        refused = http.post(
            "/v1/calls", json=request["json"], headers={**api.headers(), **request["headers"]}
        )
    assert error_code(refused, 429) == "too_many_waiters"
    again = api.post("/v1/calls", **request)
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert call_count(api) == 1


def test_a_call_into_a_campaign_the_breaker_paused_is_refused_with_the_reason(api: Api) -> None:
    """The breaker paused the account's standing campaign (the provider said the balance
    is gone): a new call would wait for ever, so it is refused, naming the reason, whether
    it names the campaign or goes to the standing one. An operator's pause takes calls."""
    campaign_id = place(api)["campaign_id"]
    reason = "provider account error 21606: insufficient balance"
    with transaction(api.runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, campaign_id)
        transition(campaign, CampaignAction.TRIP_BREAKER, actor=BREAKER, reason=reason)
    standing = api.post("/v1/calls", json=CALL)
    assert error_code(standing, 409) == "campaign_paused"
    assert "insufficient balance" in standing.json()["error"]["message"]
    named = api.post("/v1/calls", json={**CALL, "campaign_id": campaign_id})
    assert error_code(named, 409) == "campaign_paused"
    assert call_count(api) == 1

    with transaction(api.runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, campaign_id)
        transition(campaign, CampaignAction.RESUME, actor="cli:ops")
        transition(campaign, CampaignAction.PAUSE, actor="cli:ops")
    assert place(api)["status"] == "queued"
    assert call_count(api) == 2


# --- listing --------------------------------------------------------------------------------


def test_list_filters_and_cursor_pagination(api: Api) -> None:
    ids = [place(api, to_number=f"+4473861724{i:02d}")["call_id"] for i in range(5)]
    page = api.get("/v1/calls", params={"limit": 2}).json()
    assert [c["call_id"] for c in page["items"]] == ids[::-1][:2]
    seen = [c["call_id"] for c in page["items"]]
    while page["next_cursor"]:
        page = api.get("/v1/calls", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [c["call_id"] for c in page["items"]]
    assert seen == ids[::-1]
    by_number = api.get("/v1/calls", params={"to_number": "+447386172402"}).json()
    assert [c["call_id"] for c in by_number["items"]] == [ids[2]]
    assert by_number["next_cursor"] is None
    queued = api.get("/v1/calls", params={"status": "queued"}).json()
    assert len(queued["items"]) == 5
    assert api.get("/v1/calls", params={"status": "completed"}).json()["items"] == []
    assert api.get("/v1/calls", params={"outcome": "answered"}).json()["items"] == []
    assert error_code(api.get("/v1/calls", params={"cursor": "nonsense"}), 400) == (
        "invalid_cursor"
    )
    assert error_code(api.get("/v1/calls", params={"limit": 1001}), 400) == "invalid_request"
    assert error_code(api.get("/v1/calls", params={"status": "ringing"}), 400) == (
        "invalid_request"
    )


def test_the_to_number_filter_reads_the_number_as_the_client_meant_it(api: Api) -> None:
    """A `+` sent unencoded in a query string arrives as a space; a national form names the
    same number; what is not a number is refused, not an empty page."""
    wanted = place(api, to_number="+12125550143")["call_id"]
    place(api, to_number="+12125550144")
    for raw in ("+12125550143", " 12125550143", "(212) 555-0143"):
        found = api.get("/v1/calls", params={"to_number": raw}).json()["items"]
        assert [c["call_id"] for c in found] == [wanted], raw
    unencoded = api.get("/v1/calls?to_number=+12125550143").json()["items"]
    assert [c["call_id"] for c in unencoded] == [wanted]
    refused = api.get("/v1/calls", params={"to_number": "not-a-number"})
    assert error_code(refused, 400) == "invalid_phone_format"


# --- tenant isolation -----------------------------------------------------------------------


def test_another_accounts_calls_and_campaigns_are_not_found(api: Api) -> None:
    created = place(api)
    mine = api.get(f"/v1/calls/{created['call_id']}")
    assert mine.status_code == 200
    assert error_code(api.get(f"/v1/calls/{created['call_id']}", key=OTHER_KEY), 404) == (
        "call_not_found"
    )
    assert api.get("/v1/calls", key=OTHER_KEY).json() == {"items": [], "next_cursor": None}
    campaign = created["campaign_id"]
    listed = api.get(f"/v1/campaigns/{campaign}/calls", key=OTHER_KEY)
    assert error_code(listed, 404) == "campaign_not_found"
    into = api.post("/v1/calls", key=OTHER_KEY, json={**CALL, "campaign_id": campaign})
    assert error_code(into, 404) == "campaign_not_found"
    assert error_code(api.get("/v1/calls/999999"), 404) == "call_not_found"
    # The other account's own call goes to its own standing campaign.
    theirs = place(api, key=OTHER_KEY)
    assert theirs["campaign_id"] != campaign
    with transaction(api.runtime.settings.database_url) as session:
        owners = {c.id: c.account_id for c in session.scalars(select(Campaign))}
    assert owners[theirs["campaign_id"]] == api.other_account_id


def test_a_call_may_present_a_caller_id_pool(api: Api) -> None:
    for number in ("+14155550101", "+14155550102"):
        assert api.post("/v1/numbers", json={"number": number}).status_code == 201
    pool = ["+14155550102", "+14155550101"]
    created = place(api, caller_id_pool=pool)
    # The standing campaign of the pool's first number; the call keeps its own pool.
    assert created["from"] == "+14155550102"
    with transaction(api.runtime.settings.database_url) as session:
        job = session.get_one(CallJob, created["call_id"])
        numbers = session.scalars(
            select(CallerId.e164).where(CallerId.id.in_(job.pool_caller_ids or []))
        ).all()
    assert sorted(numbers) == sorted(pool)
    both = api.post("/v1/calls", json={**CALL, "caller_id_pool": pool, "from_number": pool[0]})
    assert error_code(both, 400) == "invalid_option"
    twice = api.post("/v1/calls", json={**CALL, "caller_id_pool": [pool[0], pool[0]]})
    assert error_code(twice, 400) == "invalid_option"
    foreign = api.post("/v1/calls", json={**CALL, "caller_id_pool": [pool[0], "+14155550199"]})
    assert error_code(foreign, 400) == "from_number_not_found"
    campaign_id = api.upload(SAMPLE.read_bytes()).json()["campaign_id"]
    named = api.post("/v1/calls", json={**CALL, "campaign_id": campaign_id, "caller_id_pool": pool})
    assert error_code(named, 400) == "from_number_mismatch"
