"""Webhooks to the customer through the whole chain: a campaign dialled by real Celery
workers, its events written by the status webhook's fast path and the workers, delivered
by the `webhooks` queue and beat's sweep to a receiver that fails the first deliveries;
and one account's hanging receiver not holding the webhook workers from another's."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from campaigns import lifecycle
from dialer.webhooks.events import EventType, new_event
from dialer.webhooks.outbox import add_events
from dialer.webhooks.signing import HEADER, verify_signature
from models import Account, WebhookEvent, WebhookStatus, transaction, utcnow
from tests.e2e.conftest import Stack
from tests.e2e.helpers import start_campaign, wait_finished
from tests.factories import account_named
from tests.receiver import Receiver
from tests.servers import serve_app
from tests.support import wait_until
from workers import enqueue  # noqa: F401  # registers the dispatcher: commits send first tries

MAX_TRIES = 4


def events_of(stack: Stack, account: str) -> list[WebhookEvent]:
    with transaction(stack.runtime.settings.database_url) as session:
        return list(
            session.scalars(
                select(WebhookEvent)
                .join(Account, Account.id == WebhookEvent.account_id)
                .where(Account.name == account)
                .order_by(WebhookEvent.id)
            )
        )


def secret_of(stack: Stack, account: str) -> str:
    with transaction(stack.runtime.settings.database_url) as session:
        secret = session.scalar(select(Account.webhook_secret).where(Account.name == account))
    assert secret is not None
    return secret


def test_events_are_delivered_signed_retried_and_dead_lettered(stack: Stack) -> None:
    receiver = Receiver()
    receiver.answer("/hook", 500, 503, 502)  # the first three deliveries fail
    receiver.default = 200
    with serve_app(receiver) as base:
        stack.env.update(
            {
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",  # the receiver is on loopback
                "WEBHOOK_RETRY_BASE_S": "0.3",
                "WEBHOOK_RETRY_CAP_S": "1",
                "WEBHOOK_MAX_ATTEMPTS": str(MAX_TRIES),
            }
        )
        url = stack.runtime.settings.database_url
        with transaction(url) as session:
            account_named(session, "e2e", max_concurrency=10, cps=50).webhook_url = base + "/hook"
            account_named(session, "down").webhook_url = base + "/down"
        receiver.answer("/down")
        stack.start_worker(concurrency=4)
        stack.start_beat()

        account_id, campaign_id = start_campaign(stack, 3, max_attempts=1)
        final = wait_finished(stack, account_id, campaign_id, timeout_s=60)
        assert final["status"] == "completed"

        # A receiver that always fails: the paused campaign's event is dead-lettered.
        receiver.answer("/down", *[500] * 3 * MAX_TRIES)
        down_id, down_campaign = start_campaign(stack, 1, account="down", max_attempts=1)
        with transaction(url) as session:
            lifecycle.pause(session, down_id, down_campaign, actor="cli:test")

        def settled(account: str) -> bool:
            return all(e.status is not WebhookStatus.PENDING for e in events_of(stack, account))

        def state(account: str) -> list[tuple[str, str, int, str | None]]:
            return [
                (e.type, e.status.value, e.attempts, e.last_error)
                for e in events_of(stack, account)
            ]

        try:
            wait_until(lambda: settled("e2e") and bool(events_of(stack, "e2e")), 60, "deliveries")
            wait_until(lambda: settled("down"), 60, "the dead letter")
        except AssertionError as error:
            raise AssertionError(f"{error}: e2e {state('e2e')}, down {state('down')}") from None

    written = events_of(stack, "e2e")
    types = Counter(e.type for e in written)
    assert types["call.completed"] == 3
    assert types["contact.completed"] == 3
    assert types["campaign.completed"] == 1
    assert {e.status for e in written} == {WebhookStatus.DELIVERED}

    received = receiver.at("/hook")
    ids = [r.event["id"] for r in received]
    # Every event arrived, the three failed deliveries were retried with the same id, and
    # nothing else was sent twice.
    assert set(ids) == {e.event_id for e in written}
    assert len(ids) == len(written) + 3
    retried = {e.event_id: e.attempts for e in written if e.attempts > 1}
    assert sum(retried.values()) - len(retried) == 3
    assert all(ids.count(event_id) == tries for event_id, tries in retried.items())
    secret = secret_of(stack, "e2e")
    for request in received:
        assert verify_signature(secret, request.headers[HEADER.lower()], request.body)
    calls = [r.event for r in received if r.event["type"] == "call.completed"]
    assert {c["data"]["campaign_id"] for c in calls} == {campaign_id}
    assert all(c["data"]["contact_done"] for c in calls)

    # (Its one contact may have been dialled before the pause: those events die too.)
    (paused,) = [e for e in events_of(stack, "down") if e.type == "campaign.paused"]
    assert paused.status is WebhookStatus.DEAD
    assert paused.attempts == MAX_TRIES
    down = [r for r in receiver.at("/down") if r.event["id"] == paused.event_id]
    assert len(down) == MAX_TRIES
    assert down[0].event["data"]["reason"] == "paused by operator"


def test_a_hanging_receiver_does_not_hold_the_webhook_workers_from_other_accounts(
    stack: Stack,
) -> None:
    receiver = Receiver()
    receiver.slow["/a"] = 20.0  # hangs past the 8 s deadline
    with serve_app(receiver) as base:
        stack.env.update(
            {
                "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",  # the receiver is on loopback
                "WEBHOOK_TIMEOUT_S": "8",
                "WEBHOOK_ACCOUNT_CONCURRENCY": "1",
            }
        )
        url = stack.runtime.settings.database_url
        with transaction(url) as session:  # A's three events, then B's: sent in that order
            hostile = account_named(session, "a")
            events = [new_event(EventType.CALL_COMPLETED, {"n": n}, utcnow()) for n in range(3)]
            add_events(session, hostile.id, base + "/a", events)
        with transaction(url) as session:
            other = account_named(session, "b")
            add_events(
                session, other.id, base + "/b", [new_event(EventType.CALL_COMPLETED, {}, utcnow())]
            )
        stack.start_worker(concurrency=2)  # two processes, A may hold one of them
        wait_until(lambda: bool(receiver.at("/a")), 30, "A's first try")
        first_a = receiver.at("/a")[0].at
        # B's event is delivered while A's first try still hangs (its 8 s deadline), not
        # after every process has waited out one of A's tries.
        wait_until(lambda: bool(receiver.at("/b")), 6, "B's delivery")
        assert receiver.at("/b")[0].at - first_a < 6
        assert len(receiver.at("/a")) == 1  # A's others were deferred, not sent
        deferred = [e for e in events_of(stack, "a") if e.attempts == 0]
        assert len(deferred) == 2
        assert {e.status for e in deferred} == {WebhookStatus.PENDING}
