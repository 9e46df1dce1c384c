"""The Celery wiring with a real worker on the real Redis broker (not `task_always_eager`):
task names, queues, and the base task around every task.

The worker runs in a thread of this process (`celery.contrib.testing.worker.start_worker`,
solo pool), so its counters and log entries are visible here; its tasks use the process's
runtime, which reads the test databases from the environment (tests/conftest.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from prometheus_client import REGISTRY

from dialer.dispatch.dialing import DialOrder
from dialer.logs import configure_logging
from models import AttemptStatus, CampaignStatus, JobStatus, transaction
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.support import captured_logs, wait_until
from workers import enqueue
from workers.app import DIALS_QUEUE, MAINTENANCE_QUEUE, PACER_QUEUE, app
from workers.base import DialerTask

QUEUES = (DIALS_QUEUE, PACER_QUEUE, MAINTENANCE_QUEUE)
TASK_NAMES = (
    enqueue.PLACE_CALL,
    enqueue.HANG_UP,
    enqueue.PACER,
    enqueue.KICK_PACERS,
    enqueue.REAP,
    enqueue.FOLD_COUNTERS,
)


def count(task: str, state: str) -> float:
    return REGISTRY.get_sample_value("dialer_tasks_total", {"task": task, "state": state}) or 0.0


def queued(client: redis.Redis, queue: str) -> list[str]:
    """Names of the tasks waiting in `queue`, sorted (the Redis transport keeps a list per
    queue)."""
    return sorted(json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1))


@pytest.fixture
def broker(committed_db: str, redis_client: redis.Redis) -> redis.Redis:
    """The tests' Redis as an empty broker: queues declared again after the flush."""
    configure_logging()  # once, before any test captures it (the worker's setup is a no-op)
    app.loader.import_default_modules()
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.amqp.queues.values():
            queue(channel).declare()
    return redis_client


def running_worker() -> Any:
    """A worker consuming every queue of the app, in a thread, for the block."""
    return start_worker(
        app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,  # the ping needs a result backend; the app keeps none
        queues=list(QUEUES),
        shutdown_timeout=30,
    )


def final_attempt(database_url: str) -> tuple[int, int]:
    """An account with a running campaign whose one contact's attempt has ended."""
    with transaction(database_url) as session:
        account = make_account(session)
        campaign = make_campaign(session, account, status=CampaignStatus.RUNNING)
        job = make_job(session, campaign, "+12125550143", status=JobStatus.DONE)
        return account.id, make_attempt(session, job, status=AttemptStatus.COMPLETED).id


def test_every_task_the_entry_points_send_is_registered_on_the_base_task(
    broker: redis.Redis,
) -> None:
    for name in TASK_NAMES:
        assert name in app.tasks, name
        assert isinstance(app.tasks[name], DialerTask), name


def test_tasks_go_to_their_queues_and_a_worker_runs_them(
    broker: redis.Redis, committed_db: str
) -> None:
    account_id, attempt_id = final_attempt(committed_db)
    unknown = attempt_id + 1000
    states = ("started", "succeeded", "not_found", "failed")
    before = {(name, s): count(name, s) for name in TASK_NAMES for s in states}

    # No worker yet: each message waits in its queue's Redis list.
    enqueue.place_calls([DialOrder(unknown, 1, account_id), DialOrder(unknown + 1, 1, account_id)])
    enqueue.hang_up(attempt_id, "machine")
    enqueue.kick_pacer(account_id)
    app.send_task(enqueue.KICK_PACERS)  # beat sends these two by name
    app.send_task(enqueue.REAP)
    assert queued(broker, DIALS_QUEUE) == [enqueue.HANG_UP] + [enqueue.PLACE_CALL] * 2
    assert queued(broker, PACER_QUEUE) == [enqueue.PACER]
    assert queued(broker, MAINTENANCE_QUEUE) == [enqueue.KICK_PACERS, enqueue.REAP]

    expected = {
        (enqueue.PLACE_CALL, "started"): 2,
        (enqueue.PLACE_CALL, "not_found"): 2,  # mapped by the base task: no failure
        (enqueue.HANG_UP, "started"): 1,
        (enqueue.HANG_UP, "succeeded"): 1,  # the call is over: nothing to hang up
        (enqueue.PACER, "started"): 1,
        (enqueue.PACER, "succeeded"): 1,
        (enqueue.KICK_PACERS, "started"): 1,
        (enqueue.KICK_PACERS, "succeeded"): 1,
        (enqueue.REAP, "started"): 1,
        (enqueue.REAP, "succeeded"): 1,
    }

    def moved() -> dict[tuple[str, str], float]:
        delta = {key: count(*key) - value for key, value in before.items()}
        return {key: n for key, n in delta.items() if n}

    def ended() -> float:
        return sum(n for (_, state), n in moved().items() if state != "started")

    with captured_logs() as logs, running_worker():
        wait_until(lambda: ended() == 6, timeout_s=30, what="six task runs to end")
    assert moved() == expected
    assert all(not queued(broker, queue) for queue in QUEUES)

    # The base task bound the message's id, the task's name and its attempt id.
    not_found = [e for e in logs if e["event"] == "task_target_not_found"]
    assert sorted(e["attempt_id"] for e in not_found) == [unknown, unknown + 1]
    for entry in not_found:
        assert entry["task_name"] == enqueue.PLACE_CALL
        assert entry["code"] == "attempt_not_found"
        assert isinstance(entry["task_id"], str) and entry["task_id"]
    assert len({e["task_id"] for e in not_found}) == 2
