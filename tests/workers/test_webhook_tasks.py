"""The webhook tasks' wiring: registered on the base task, sent to their own queue (so a
slow receiver never holds up dials), the sweep on beat's schedule, and committed events
handed to delivery by the dispatcher `workers.enqueue` registers."""

from __future__ import annotations

import json

import redis

from dialer.settings import get_settings
from dialer.webhooks import outbox
from dialer.webhooks.delivery import SWEEP_BUDGET_S, claim_lease_s
from dialer.webhooks.events import EventType, new_event
from models import transaction, utcnow
from tests.factories import make_account
from tests.support import captured_logs
from tests.workers.test_wiring import broker  # noqa: F401  # the fixture
from workers import enqueue
from workers.app import DIALS_QUEUE, WEBHOOKS_QUEUE, app
from workers.base import DialerTask


def sent(client: redis.Redis, queue: str) -> list[tuple[str, str]]:
    """(task, keyword arguments) of the messages waiting in `queue`, sorted."""
    messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    return sorted((m["headers"]["task"], m["headers"]["kwargsrepr"]) for m in messages)


def test_webhook_tasks_are_registered_routed_and_scheduled(
    broker: redis.Redis,  # noqa: F811  # the fixture imported above
) -> None:
    for name in (enqueue.DELIVER_WEBHOOK, enqueue.SWEEP_WEBHOOKS):
        assert isinstance(app.tasks[name], DialerTask), name
    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule[enqueue.SWEEP_WEBHOOKS] <= 2.0
    enqueue.deliver_webhooks(["evt_a", "evt_b"])
    app.send_task(enqueue.SWEEP_WEBHOOKS)
    assert sent(broker, WEBHOOKS_QUEUE) == [
        (enqueue.DELIVER_WEBHOOK, "{'event_id': 'evt_a'}"),
        (enqueue.DELIVER_WEBHOOK, "{'event_id': 'evt_b'}"),
        (enqueue.SWEEP_WEBHOOKS, "{}"),
    ]
    assert sent(broker, DIALS_QUEUE) == []


def test_committed_events_are_sent_to_delivery_and_rolled_back_ones_are_not(
    broker: redis.Redis,  # noqa: F811
    committed_db: str,
) -> None:
    hook = "https://hooks.example.test/x"
    kept = new_event(EventType.CAMPAIGN_COMPLETED, {"campaign_id": 1}, utcnow())
    with transaction(committed_db) as session:
        account = make_account(session, webhook_url=hook)
        outbox.add_events(session, account.id, hook, [kept])
        assert sent(broker, WEBHOOKS_QUEUE) == []  # not before the commit
    assert sent(broker, WEBHOOKS_QUEUE) == [
        (enqueue.DELIVER_WEBHOOK, repr({"event_id": kept.event_id}))
    ]
    broker.delete(WEBHOOKS_QUEUE)
    dropped = new_event(EventType.CAMPAIGN_COMPLETED, {"campaign_id": 2}, utcnow())
    try:
        with transaction(committed_db) as session:
            outbox.add_events(session, account.id, hook, [dropped])
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert sent(broker, WEBHOOKS_QUEUE) == []


def test_a_dispatch_that_fails_after_commit_is_logged_and_left_to_the_sweep() -> None:
    def unreachable(event_ids: object) -> None:
        raise ConnectionError("broker down")

    outbox.set_dispatcher(unreachable)
    try:
        with captured_logs() as logs:
            outbox.dispatch(["evt_a"])  # does not raise into the committed caller
    finally:
        outbox.set_dispatcher(enqueue.deliver_webhooks)
    assert [(e["event"], e["event_ids"]) for e in logs] == [("webhook_dispatch_failed", ["evt_a"])]


def test_webhook_tasks_have_soft_and_hard_time_limits_within_the_claim_lease() -> None:
    settings = get_settings()
    deliver = app.tasks[enqueue.DELIVER_WEBHOOK]
    # A try past its deadline (plus DNS and its transactions) is stopped, and its process
    # killed, before its claim lapses and a second try of the event could start.
    assert settings.webhook_timeout_s < deliver.soft_time_limit < deliver.time_limit
    assert deliver.time_limit < claim_lease_s(settings)
    sweep = app.tasks[enqueue.SWEEP_WEBHOOKS]
    assert SWEEP_BUDGET_S + settings.webhook_timeout_s < sweep.soft_time_limit < sweep.time_limit
