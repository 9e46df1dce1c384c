"""`Idempotency-Key` on POSTs: a retry gets the first response and does nothing again,
another body is 422, a request while the first still runs is 409 (also when both arrive
at once), and keys are per account."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
import redis
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import func, select

from dialer.dispatch.pacer import accounts_needing_pacer, pacer_idle_key
from dialer.web.routers import calls as calls_router
from models import CallJob, IdempotencyKey, transaction
from tests.dialer.test_pacer_windows import Clock, utc
from tests.web.support import OTHER_KEY, Api, error_code
from workers.app import app as celery_app

CALL = {"to_number": "+447386172392", "message": "Hello."}


def calls(api: Api) -> int:
    with transaction(api.runtime.settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(CallJob)) or 0


def test_a_retried_post_returns_the_first_response_and_places_no_second_call(api: Api) -> None:
    key = {"Idempotency-Key": "order-17-reminder"}
    first = api.post("/v1/calls", json=CALL, headers=key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = api.post("/v1/calls", json=CALL, headers=key)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert calls(api) == 1
    # Without the header, the same body is another call.
    assert api.post("/v1/calls", json=CALL).status_code == 201
    assert calls(api) == 2


def test_the_same_key_with_another_body_is_422(api: Api) -> None:
    key = {"Idempotency-Key": "k-1"}
    assert api.post("/v1/calls", json=CALL, headers=key).status_code == 201
    other = api.post("/v1/calls", json={**CALL, "message": "Bye."}, headers=key)
    assert error_code(other, 422) == "idempotency_key_reused"
    elsewhere = api.post("/v1/dnc", json={"numbers": ["+12125550143"]}, headers=key)
    assert error_code(elsewhere, 422) == "idempotency_key_reused"
    assert calls(api) == 1
    assert api.dnc_numbers() == set()


def test_errors_are_replayed_too_but_server_failures_are_not_kept(api: Api) -> None:
    key = {"Idempotency-Key": "k-2"}
    refused = api.post("/v1/calls", json={**CALL, "to_number": "911"}, headers=key)
    assert error_code(refused, 400) == "emergency_or_short_code"
    replayed = api.post("/v1/calls", json={**CALL, "to_number": "911"}, headers=key)
    assert replayed.json() == refused.json()
    assert replayed.headers["idempotent-replayed"] == "true"


def test_keys_are_per_account(api: Api) -> None:
    key = {"Idempotency-Key": "shared"}
    assert api.post("/v1/calls", json=CALL, headers=key).status_code == 201
    theirs = api.post("/v1/calls", json=CALL, headers=key, key=OTHER_KEY)
    assert theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert calls(api) == 2


def test_a_bad_key_and_an_unauthenticated_post(api: Api) -> None:
    too_long = api.post("/v1/calls", json=CALL, headers={"Idempotency-Key": "k" * 256})
    assert error_code(too_long, 400) == "invalid_idempotency_key"
    unknown = api.post("/v1/calls", json=CALL, headers={"Idempotency-Key": "k"}, key="dk_nope")
    assert error_code(unknown, 401) == "unknown_api_key"
    with transaction(api.runtime.settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_two_concurrent_requests_with_one_key_run_once(api: Api) -> None:
    """Both requests are sent at the same moment; the one that claims the key holds it for
    its `wait` (no worker runs, so the call stays queued; 10:00 in London, inside its
    window, so the wait is not cut short), so the other finds it running."""
    api.runtime.clock = Clock(utc(2027, 1, 15, 10))
    body = {**CALL, "wait": 2}
    barrier = threading.Barrier(2)

    def send(_: int) -> httpx.Response:
        barrier.wait()
        return api.post("/v1/calls", json=body, headers={"Idempotency-Key": "at-once"})

    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(send, range(2)))
    assert sorted(r.status_code for r in responses) == [201, 409]
    [conflict] = [r for r in responses if r.status_code == 409]
    assert error_code(conflict, 409) == "request_in_progress"
    assert calls(api) == 1
    retry = api.post("/v1/calls", json=body, headers={"Idempotency-Key": "at-once"})
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert calls(api) == 1


def test_a_broker_down_after_commit_answers_the_call_and_the_beat_recovers_the_kick(
    api: Api, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pacer kick (an after-commit hook) cannot reach the broker: the call was
    committed, so the client gets it, a retry with the key gets the same call, and the
    account is left for the beat's `kick_pacers` (its idle mark cleared), not stranded."""
    redis_client.set(pacer_idle_key(api.account_id), "1", px=3_600_000)

    def broker_down(*_: object, **__: object) -> None:
        raise BrokerError("[Errno 111] Connection refused")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    key = {"Idempotency-Key": "broker-down"}
    first = api.post("/v1/calls", json=CALL, headers=key)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "queued"
    again = api.post("/v1/calls", json=CALL, headers=key)
    assert again.status_code == 201, again.text
    assert again.json()["call_id"] == first.json()["call_id"]
    assert calls(api) == 1
    assert accounts_needing_pacer(api.runtime) == [api.account_id]


def test_a_database_blip_after_commit_answers_the_stored_call_and_a_retry_places_no_second(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call is committed, then the `wait` request's read fails (PostgreSQL gone for a
    moment): the client gets the reply stored with the call, not a 503 that invites a
    retry, and a retry with the key is answered from it."""

    def blip(*_: object) -> None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(calls_router, "_read", blip)
    key = {"Idempotency-Key": "db-blip"}
    body = {**CALL, "wait": 1}
    first = api.post("/v1/calls", json=body, headers=key)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "queued"
    monkeypatch.undo()
    again = api.post("/v1/calls", json=body, headers=key)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["call_id"] == first.json()["call_id"]
    assert calls(api) == 1
