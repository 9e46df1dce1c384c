"""Task events only while a monitor asks: the lease of `workers.events`.

The lease's rules on a controllable clock; then a real worker (in a thread, on the real
broker) sending task events from its start, with no monitor having asked yet.
Flower seeing a new worker's first tasks is `tests/e2e/test_observability.py`'s.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from celery.contrib.testing.worker import start_worker
from celery.worker.control import Panel

from dialer.logs import configure_logging
from tests.support import wait_until
from workers.app import DIALS_QUEUE, MAINTENANCE_QUEUE, PACER_QUEUE, app
from workers.events import LEASE_S, TASK_GROUP, TaskEventsLease, enable_events


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_task_events_stay_on_for_the_lease_and_go_off_once_it_lapses() -> None:
    clock, groups = Clock(), {"worker"}
    lease = TaskEventsLease(groups, clock)
    assert lease.renew() is True  # the worker's start
    assert groups == {"worker", TASK_GROUP}
    clock.now += LEASE_S - 0.1
    assert lease.check() is False and TASK_GROUP in groups
    assert lease.renew() is False  # a monitor's periodic `enable_events`: renewed
    clock.now += LEASE_S - 0.1
    assert lease.check() is False and TASK_GROUP in groups
    clock.now += 0.2
    assert lease.check() is True
    assert groups == {"worker"}  # heartbeats go on
    assert lease.check() is False  # already off
    assert lease.renew() is True  # a monitor comes back
    assert TASK_GROUP in groups


def test_disable_events_turns_them_off_and_the_lease_does_not_bring_them_back() -> None:
    clock, groups = Clock(), {"worker"}
    lease = TaskEventsLease(groups, clock)
    lease.renew()
    groups.discard(TASK_GROUP)  # Celery's `disable_events`
    clock.now += LEASE_S + 1
    assert lease.check() is False
    assert groups == {"worker"}


def test_enable_events_is_the_lease_s_command() -> None:
    assert Panel.data["enable_events"] is enable_events


def test_a_new_worker_sends_task_events_under_its_first_lease(
    committed_db: str, redis_client: redis.Redis
) -> None:
    configure_logging()  # before the worker's own setup, as `test_wiring`'s broker does
    app.loader.import_default_modules()
    events: list[dict[str, Any]] = []
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": events.append})
        listening = threading.Thread(
            target=receiver.capture, kwargs={"limit": None, "wakeup": False}, daemon=True
        )
        listening.start()
        with start_worker(
            app,
            pool="solo",
            concurrency=1,
            perform_ping_check=False,
            queues=[DIALS_QUEUE, PACER_QUEUE, MAINTENANCE_QUEUE],
            shutdown_timeout=30,
            without_heartbeat=False,  # heartbeats on, as a worker runs: the dispatcher is on
        ):
            app.send_task("dialer.kick_pacers")
            wait_until(
                lambda: any(e["type"] == "task-succeeded" for e in events),
                30,
                "the worker's task-succeeded event",
            )
        receiver.should_stop = True
        listening.join(10)
