"""One call end to end: `POST /v1/calls` with `wait` through the real API, a Celery worker
and the carrier simulator; the reply is the call's final state, and `GET /v1/calls/{id}`
shows its attempt as the simulator saw it."""

from __future__ import annotations

import httpx
import pytest
from kombu.exceptions import OperationalError as BrokerError

from campaigns.accounts import create_account, create_api_key
from models import transaction
from tests.e2e.conftest import Stack
from tests.support import daytime_number, wait_until
from workers.app import app as celery_app

TO = daytime_number()


def test_a_single_call_with_wait_answers_its_final_state(stack: Stack) -> None:
    stack.sim(
        "POST",
        "/_sim/config",
        json={"outcomes_by_number": {TO: "machine_end_beep"}, "talk_seconds_by_number": {TO: 5}},
    )
    stack.start_worker(concurrency=2)
    with transaction(stack.runtime.settings.database_url) as session:
        account = create_account(session, "single", max_concurrency=2, cps=5, simulator=True)
        key = create_api_key(session, account, "e2e").key
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "one-call"}
    body = {
        "to_number": TO,
        "message": "Hello {name}, your order {order} is ready.",
        "variables": {"name": "Ada", "order": "A-17"},
        "metadata": {"crm_id": "42"},
        "amd": "detect",
        "wait": 25,
    }
    reply = httpx.post(f"{stack.api_url}/v1/calls", json=body, headers=headers, timeout=40)
    assert reply.status_code == 201, reply.text
    call = reply.json()
    assert call["status"] == "completed", call
    assert call["outcome"] == "machine"  # detected, recorded, and the message went on
    assert call["metadata"] == {"crm_id": "42"}
    [attempt] = call["attempts"]
    assert attempt["sid"] and attempt["sid"].startswith("CA")
    assert attempt["status"] == "completed"
    assert attempt["answered_by"] == "machine_start"  # AMD `Enable` does not wait for the beep
    assert attempt["from"] == "+15005550006"
    assert attempt["duration"] is not None and attempt["ended_at"]

    shown = httpx.get(
        f"{stack.api_url}/v1/calls/{call['call_id']}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    assert shown["attempts"] == call["attempts"]
    [seen] = [c for c in stack.sim("GET", "/_sim/calls") if c["to"] == TO]
    assert seen["sid"] == attempt["sid"]
    assert seen["status"] == "completed"
    assert stack.sim("GET", "/_sim/stats")["hang_ups"] == 0  # carried on past the machine
    # The retried POST places no second call.
    again = httpx.post(f"{stack.api_url}/v1/calls", json=body, headers=headers, timeout=40)
    assert again.json()["call_id"] == call["call_id"]
    assert len([c for c in stack.sim("GET", "/_sim/calls") if c["to"] == TO]) == 1


def test_a_call_whose_broker_publish_fails_after_commit_is_answered_and_dialled_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API cannot reach the broker once the call is committed (its pacer kick is lost):
    the client gets the call, not a 5xx; its retry with the key gets the same call; the
    beat's `kick_pacers` starts the pacer; the carrier sees one call."""
    to = daytime_number()
    stack.start_worker(concurrency=2)
    stack.start_beat()

    def broker_down(*_: object, **__: object) -> None:
        raise BrokerError("[Errno 111] Connection refused")

    monkeypatch.setattr(celery_app, "send_task", broker_down)  # the API's process only
    with transaction(stack.runtime.settings.database_url) as session:
        account = create_account(session, "lost-kick", max_concurrency=2, cps=5, simulator=True)
        key = create_api_key(session, account, "e2e").key
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "lost-kick"}
    body = {"to_number": to, "message": "Hello."}
    reply = httpx.post(f"{stack.api_url}/v1/calls", json=body, headers=headers, timeout=40)
    assert reply.status_code == 201, reply.text
    again = httpx.post(f"{stack.api_url}/v1/calls", json=body, headers=headers, timeout=40)
    assert again.status_code == 201, again.text
    assert again.json()["call_id"] == reply.json()["call_id"]

    def completed() -> bool:
        shown = httpx.get(
            f"{stack.api_url}/v1/calls/{reply.json()['call_id']}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()
        return bool(shown["status"] == "completed")

    wait_until(completed, 40, "the call dialled by the pacer the beat started")
    assert len([c for c in stack.sim("GET", "/_sim/calls") if c["to"] == to]) == 1
