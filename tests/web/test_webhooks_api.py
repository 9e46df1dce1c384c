"""`GET /v1/webhooks/deliveries` and `POST /v1/webhooks/deliveries/{id}/retry`: scoped to
the key's account, filtered, paginated, and a retry sends the delivery task after commit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import select

from dialer.runtime import Runtime
from dialer.web.app import create_app
from dialer.webhooks.events import EventType, new_event
from models import WebhookEvent, WebhookStatus, transaction, utcnow
from tests.factories import make_account, make_api_key
from tests.servers import serve_app
from workers.app import WEBHOOKS_QUEUE
from workers.enqueue import DELIVER_WEBHOOK

KEY = "dk_test-key-acme-" + "a" * 32
OTHER_KEY = "dk_test-key-other-" + "b" * 32
HOOK = "https://hooks.example.test/in"


def add_event(url: str, account_id: int, status: WebhookStatus) -> str:
    event = new_event(EventType.CALL_COMPLETED, {"call_id": 7, "metadata": {}}, utcnow())
    with transaction(url) as session:
        session.add(
            WebhookEvent(
                event_id=event.event_id,
                account_id=account_id,
                type=event.type,
                url=HOOK,
                body=event.body,
                status=status,
                attempts=0 if status is WebhookStatus.PENDING else 3,
                last_status_code=None if status is WebhookStatus.PENDING else 500,
            )
        )
    return event.event_id


@pytest.fixture
def accounts(runtime: Runtime) -> tuple[int, int]:
    with transaction(runtime.settings.database_url) as session:
        acme = make_account(session, "acme")
        make_api_key(session, acme, KEY)
        other = make_account(session, "other")
        make_api_key(session, other, OTHER_KEY)
        return acme.id, other.id


@pytest.fixture
def http(runtime: Runtime) -> Iterator[httpx.Client]:
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_deliveries_are_the_accounts_own_newest_first_filtered_and_paginated(
    runtime: Runtime, accounts: tuple[int, int], http: httpx.Client
) -> None:
    url = runtime.settings.database_url
    acme, other = accounts
    delivered = add_event(url, acme, WebhookStatus.DELIVERED)
    dead = add_event(url, acme, WebhookStatus.DEAD)
    pending = add_event(url, acme, WebhookStatus.PENDING)
    theirs = add_event(url, other, WebhookStatus.DEAD)

    listed = http.get("/v1/webhooks/deliveries", headers=auth())
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [d["id"] for d in page["items"]] == [pending, dead, delivered]
    assert page["next_cursor"] is None
    first = page["items"][1]
    assert first["status"] == "dead"
    assert first["type"] == "call.completed"
    assert first["url"] == HOOK
    assert first["attempts"] == 3
    assert first["last_status_code"] == 500
    assert first["event"]["id"] == dead and first["event"]["data"]["call_id"] == 7

    only_dead = http.get("/v1/webhooks/deliveries?status=dead", headers=auth()).json()
    assert [d["id"] for d in only_dead["items"]] == [dead]
    assert [
        d["id"]
        for d in http.get("/v1/webhooks/deliveries", headers=auth(OTHER_KEY)).json()["items"]
    ] == [theirs]

    one = http.get("/v1/webhooks/deliveries?limit=2", headers=auth()).json()
    assert [d["id"] for d in one["items"]] == [pending, dead]
    rest = http.get(
        "/v1/webhooks/deliveries", params={"limit": 2, "cursor": one["next_cursor"]}, headers=auth()
    ).json()
    assert [d["id"] for d in rest["items"]] == [delivered]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("cursor=not-a-cursor", "invalid_cursor"),
        ("limit=0", "invalid_request"),
        ("limit=1001", "invalid_request"),
        ("status=lost", "invalid_request"),
    ],
)
def test_bad_list_queries_are_400(
    accounts: tuple[int, int], http: httpx.Client, query: str, code: str
) -> None:
    response = http.get(f"/v1/webhooks/deliveries?{query}", headers=auth())
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code


def test_without_a_key_it_is_401(accounts: tuple[int, int], http: httpx.Client) -> None:
    assert http.get("/v1/webhooks/deliveries").status_code == 401
    assert http.post("/v1/webhooks/deliveries/evt_x/retry").status_code == 401


def test_retry_sends_the_delivery_again_after_commit_and_is_404_across_accounts(
    runtime: Runtime, accounts: tuple[int, int], http: httpx.Client, redis_client: redis.Redis
) -> None:
    url = runtime.settings.database_url
    acme, other = accounts
    dead = add_event(url, acme, WebhookStatus.DEAD)
    theirs = add_event(url, other, WebhookStatus.DEAD)

    response = http.post(f"/v1/webhooks/deliveries/{dead}/retry", headers=auth())
    assert response.status_code == 200, response.text
    assert response.json()["id"] == dead
    assert response.json()["status"] == "pending"
    assert response.json()["next_attempt_at"] is not None
    # The first try of the retry is on the webhooks queue (the sweep would find it too).
    sent = [json.loads(raw) for raw in redis_client.lrange(WEBHOOKS_QUEUE, 0, -1)]
    assert [(m["headers"]["task"], m["headers"]["kwargsrepr"]) for m in sent] == [
        (DELIVER_WEBHOOK, repr({"event_id": dead}))
    ]

    for missing in (theirs, "evt_" + "0" * 32):
        refused = http.post(f"/v1/webhooks/deliveries/{missing}/retry", headers=auth())
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "webhook_delivery_not_found"
    with transaction(url) as session:
        status = session.scalar(select(WebhookEvent.status).where(WebhookEvent.event_id == theirs))
    assert status is WebhookStatus.DEAD
