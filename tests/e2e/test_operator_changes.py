"""Operators change what runs (issue 22 part 6), end to end through the API, a real Celery
worker and the carrier simulator, the witness: a running campaign's cap raised by `PATCH`
is seen at the carrier within one pacer round; a new caller-ID pool and message reach the
next calls at the carrier; a live call cancelled by `DELETE` is hung up at the carrier."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from campaigns.accounts import create_account, create_api_key
from dialer.dispatch.pacer import MAX_SLEEP_S
from models import Account, CallAttempt, CallerId, CampaignEvent, transaction
from tests.e2e.conftest import Stack
from tests.e2e.helpers import start_campaign
from tests.support import daytime_number, wait_until

LONG_CALLS = {
    "outcome_weights": {"human": 1.0},
    # 1,200-1,800 simulated seconds: 6-9 s of wall time at the stack's time scale (0.005).
    "talk": {"median_s": 1500.0, "sigma": 0.1, "minimum_s": 1200.0, "maximum_s": 1800.0},
}


def _key(stack: Stack, account_id: int) -> dict[str, str]:
    with transaction(stack.runtime.settings.database_url) as session:
        key = create_api_key(session, session.get_one(Account, account_id), "operator").key
    return {"Authorization": f"Bearer {key}"}


def _change_time(stack: Stack, campaign_id: int) -> datetime:
    with transaction(stack.runtime.settings.database_url) as session:
        return session.scalars(
            select(CampaignEvent.at).where(
                CampaignEvent.campaign_id == campaign_id, CampaignEvent.action == "change"
            )
        ).one()


def _live(stack: Stack) -> int:
    stats: dict[str, Any] = stack.sim("GET", "/_sim/stats")
    return int(stats["live"])


def test_a_raised_cap_is_seen_at_the_carrier_within_one_round(stack: Stack) -> None:
    stack.sim("POST", "/_sim/config", json=LONG_CALLS)
    stack.start_worker(concurrency=4)
    account_id, campaign_id = start_campaign(
        stack, 30, account_cap=10, max_concurrency=2, max_attempts=1, time_limit_s=3600
    )
    headers = _key(stack, account_id)
    wait_until(lambda: _live(stack) == 2, 60, "two live calls")
    assert stack.sim("GET", "/_sim/stats")["max_concurrent"] == 2

    asked = time.monotonic()
    reply = httpx.patch(
        f"{stack.api_url}/v1/campaigns/{campaign_id}",
        json={"max_concurrency": 5, "reason": "the clinic added lines"},
        headers=headers,
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["max_concurrency"] == 5
    # The pacer is woken after the commit (and otherwise sleeps at most MAX_SLEEP_S); its
    # dials then take a worker hop and the carrier's setup, on a shared machine.
    wait_until(lambda: _live(stack) == 5, MAX_SLEEP_S + 10, "five live calls")
    assert time.monotonic() - asked < MAX_SLEEP_S + 10
    stats = stack.sim("GET", "/_sim/stats")
    assert stats["max_concurrent"] == 5  # the new cap, never more
    # Within one round: one round after the change made all three calls the new cap allowed
    # (a round's attempts share its transaction's `created_at`).
    changed_at = _change_time(stack, campaign_id)
    with transaction(stack.runtime.settings.database_url) as session:
        rounds = Counter(
            session.scalars(
                select(CallAttempt.created_at).where(
                    CallAttempt.campaign_id == campaign_id, CallAttempt.created_at > changed_at
                )
            )
        )
    assert max(rounds.values()) >= 3, rounds

    events = httpx.get(
        f"{stack.api_url}/v1/campaigns/{campaign_id}/events", headers=headers, timeout=10
    ).json()["items"]
    [change] = [e for e in events if e["action"] == "change"]
    assert change["changes"] == {"max_concurrency": {"before": 2, "after": 5}}
    assert (change["actor"], change["reason"]) == ("api-key:operator", "the clinic added lines")

    # Lowered: no new call leaves while five are live, so the carrier sees no sixth.
    lowered = httpx.patch(
        f"{stack.api_url}/v1/campaigns/{campaign_id}",
        json={"max_concurrency": 1, "reason": "lines back to one"},
        headers=headers,
        timeout=10,
    )
    assert lowered.status_code == 200, lowered.text
    created = stats["calls_created"]
    wait_until(lambda: _live(stack) <= 1, 30, "the live calls to end")
    # Calls made after the live count fell to the new cap are one at a time.
    wait_until(
        lambda: stack.sim("GET", "/_sim/stats")["calls_created"] > created, 15, "a next call"
    )
    assert _live(stack) <= 1
    assert stack.sim("GET", "/_sim/stats")["max_concurrent"] == 5
    httpx.post(
        f"{stack.api_url}/v1/campaigns/{campaign_id}/cancel?hang_up=true",
        headers=headers,
        timeout=10,
    ).raise_for_status()


def test_a_new_pool_and_message_reach_the_next_calls_at_the_carrier(stack: Stack) -> None:
    """One call at a time: the PATCH lands while the first call is live (the cap is full,
    so no round claims meanwhile); every later call presents a number of the new pool and
    says the new message (the simulator's call log of each call's TwiML)."""
    stack.sim("POST", "/_sim/config", json=LONG_CALLS)
    stack.start_worker(concurrency=2)
    account_id, campaign_id = start_campaign(
        stack, 3, max_concurrency=1, max_attempts=1, time_limit_s=3600
    )
    pool = ["+14155550101", "+14155550102"]
    with transaction(stack.runtime.settings.database_url) as session:
        session.add_all(CallerId(account_id=account_id, e164=number) for number in pool)
    headers = _key(stack, account_id)

    def said(call: dict[str, Any]) -> list[str]:
        return [entry["text"] for entry in call["log"] if entry["what"] == "say"]

    def calls() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = stack.sim("GET", "/_sim/calls")
        return listed

    wait_until(lambda: _live(stack) == 1 and any(said(c) for c in calls()), 60, "a first call")
    [first] = calls()
    reply = httpx.patch(
        f"{stack.api_url}/v1/campaigns/{campaign_id}",
        json={
            "caller_id_pool": pool,
            "message": "Changed for {first_name}.",
            "reason": "the clinic's new numbers and script",
        },
        headers=headers,
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    assert _live(stack) == 1  # the change landed while the first call was live

    def all_said() -> bool:
        listed = calls()
        return len(listed) == 3 and all(said(c) for c in listed)

    wait_until(all_said, 90, "the three calls to say their message")
    later = [c for c in calls() if c["sid"] != first["sid"]]
    assert first["from"] == "+15005550006"
    assert said(first)[0].startswith("Hello ")
    assert len(later) == 2
    for call in later:
        assert call["from"] in pool, call["from"]
        assert said(call)[0].startswith("Changed for "), said(call)
    events = httpx.get(
        f"{stack.api_url}/v1/campaigns/{campaign_id}/events", headers=headers, timeout=10
    ).json()["items"]
    [change] = [e for e in events if e["action"] == "change"]
    assert change["changes"]["caller_id_pool"] == {"before": ["+15005550006"], "after": pool}
    assert change["changes"]["message"]["after"] == "Changed for {first_name}."


def test_a_live_call_cancelled_is_hung_up_at_the_carrier(stack: Stack) -> None:
    to = daytime_number()
    stack.sim("POST", "/_sim/config", json={**LONG_CALLS, "talk_seconds_by_number": {to: 5000}})
    stack.start_worker(concurrency=2)
    with transaction(stack.runtime.settings.database_url) as session:
        account = create_account(session, "cancels", max_concurrency=2, cps=5, simulator=True)
        account_id = account.id
    headers = _key(stack, account_id)
    body = {"to_number": to, "message": "Your order is ready.", "time_limit": 14400}
    placed = httpx.post(f"{stack.api_url}/v1/calls", json=body, headers=headers, timeout=10)
    assert placed.status_code == 201, placed.text
    call_id = placed.json()["call_id"]

    def in_progress_at_carrier() -> bool:
        return any(
            c["to"] == to and c["status"] == "in-progress" for c in stack.sim("GET", "/_sim/calls")
        )

    wait_until(in_progress_at_carrier, 60, "the call to be answered")
    hang_ups = stack.sim("GET", "/_sim/stats")["hang_ups"]
    reply = httpx.delete(f"{stack.api_url}/v1/calls/{call_id}", headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text

    def ended() -> bool:
        shown = httpx.get(f"{stack.api_url}/v1/calls/{call_id}", headers=headers, timeout=10)
        return bool(shown.json()["status"] == "canceled")

    wait_until(ended, 30, "the call to end canceled")
    [seen] = [c for c in stack.sim("GET", "/_sim/calls") if c["to"] == to]
    assert seen["status"] == "completed"
    assert stack.sim("GET", "/_sim/stats")["hang_ups"] == hang_ups + 1
    shown = httpx.get(f"{stack.api_url}/v1/calls/{call_id}", headers=headers, timeout=10).json()
    assert shown["outcome"] == "answered"
    [attempt] = shown["attempts"]
    assert attempt["sid"] == seen["sid"]
    again = httpx.delete(f"{stack.api_url}/v1/calls/{call_id}", headers=headers, timeout=10)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "call_ended"
