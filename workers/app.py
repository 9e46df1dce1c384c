"""The Celery app: `celery -A workers worker|beat|flower`.

The broker is `CELERY_BROKER_URL` (RabbitMQ or Redis), else `REDIS_URL`, through the
Sentinels when `REDIS_SENTINELS` is set (kombu's `sentinel://` transport). No result
backend: every task ignores its result, what it did is in PostgreSQL.

On RabbitMQ (`amqp://`) the four queues are quorum queues (`x-queue-type: quorum`:
replicated by Raft over the cluster's nodes, durable, and a message delivered more than
the delivery limit is dropped: none of ours is redelivered that often) and every publish
waits for the broker's confirm (`confirm_publish`), so a message the broker refused (a
memory or disk alarm, a queue without quorum) raises in the sender instead of vanishing.
Quorum queues have no global QoS: Celery sees them and sets the prefetch per consumer
(`worker_detect_quorum_queues`), one message per pool process here; nor priorities (none
of ours uses one) nor ETA/countdown through the broker (none of ours uses one: the pacer
owns time). RabbitMQ closes the channel of a consumer that holds an unacknowledged message
longer than its `consumer_timeout` (30 min by default) and redelivers it: with acks late,
a task must end well within that (the longest, a pacer run, lasts `budget_s`, 30 s).

Settings for short, idempotent tasks that must survive a worker dying mid-task: acks after
the task ends (`task_acks_late`), a message whose pool process was killed goes back to the
queue (`task_reject_on_worker_lost`), one message prefetched per process, JSON only.

The Redis transport keeps the messages a worker holds in that worker's memory, not in Redis
(`ack_emulation` off): a pool process that dies puts its message back on the queue, and so
does a warm shutdown with the messages not yet started; a worker killed outright (SIGKILL,
a lost machine) loses them. Kept in Redis they came back only after the broker's
visibility timeout (an hour), long after what covers every task anyway: the reaper hands
lost dials back to `place_call` after `stuck_dialing_after_s`, the beat kicks pacers and
runs the maintenance tasks again, the webhook sweep retries lost deliveries. Tracking them
in Redis cost eight commands per task (two MULTI/EXEC transactions).

Every task's class is `workers.base.DialerTask` (log context, counters, not-found mapping).
Logging goes through `dialer.logs` (Celery's `setup_logging` signal) and each worker serves
its metrics on `WORKER_METRICS_PORT` (`workers.observability`). Workers send task events
(`worker_send_task_events`), which Flower needs; senders do not send `task-sent` (one more
PUBLISH per task: Flower learns each task's name and arguments from `task-received`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from celery import Celery
from kombu.entity import Exchange, Queue

from dialer.settings import Settings, get_settings
from workers import observability  # noqa: F401  # Celery signal receivers: logs, metrics
from workers.base import DialerTask

PACER_QUEUE = "pacer"
DIALS_QUEUE = "dials"
MAINTENANCE_QUEUE = "maintenance"
WEBHOOKS_QUEUE = "webhooks"
"""Deliveries to customers' webhooks: their own queue, so a slow receiver never holds up
dials, the pacer or the reaper."""
WEBHOOK_SWEEP_S = 2.0
"""Seconds between two sweeps for due webhook retries (`dialer.webhooks.delivery.sweep`)."""


QUORUM = {"x-queue-type": "quorum"}
"""RabbitMQ queue arguments of every queue of the dialer (see the module's doc)."""


def broker(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The Celery broker URL and its transport options for `settings`.

    RabbitMQ: publisher confirms. Redis: the messages a worker holds stay in its memory
    (`ack_emulation` off, see the module's doc), the Redis socket and connect timeouts of
    `Settings`, and, with `REDIS_SENTINELS` and no `CELERY_BROKER_URL`, a `sentinel://` URL
    per Sentinel with `REDIS_URL`'s db, user and password (`master_name`:
    `REDIS_SENTINEL_MASTER`).
    """
    if settings.broker_is_amqp:
        return settings.broker_url, {"confirm_publish": True}
    options: dict[str, Any] = {
        "ack_emulation": False,
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "socket_keepalive": True,
        "retry_on_timeout": True,
        "health_check_interval": 30,
    }
    if settings.celery_broker_url is not None or not settings.sentinels:
        return settings.broker_url, options
    from redis.connection import parse_url

    parsed = parse_url(settings.redis_url)
    user, password = parsed.get("username") or "", parsed.get("password")
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if password else ""
    db = parsed.get("db", 0)
    url = ";".join(f"sentinel://{auth}{host}:{port}/{db}" for host, port in settings.sentinels)
    sentinel_password = settings.redis_sentinel_password
    options |= {
        "master_name": settings.redis_sentinel_master,
        "sentinel_kwargs": {
            "socket_timeout": settings.redis_connect_timeout_s,
            "socket_connect_timeout": settings.redis_connect_timeout_s,
            "password": sentinel_password.get_secret_value() if sentinel_password else None,
        },
    }
    if settings.redis_url.startswith("rediss://"):
        options["ssl"] = True
    return url, options


def create_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app from `settings` (default: the process's; broker: `broker`; no
    result backend)."""
    settings = settings or get_settings()
    broker_url, transport_options = broker(settings)
    queue_arguments = QUORUM if settings.broker_is_amqp else None
    app = Celery("dialer", broker=broker_url, include=["workers.tasks"], task_cls=DialerTask)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=True,
        # A lost broker is retried for ever, each try logged: a worker never stops
        # consuming for good because the broker was away (a failover, a restart).
        broker_connection_max_retries=None,
        broker_channel_error_retry=True,
        # A task running when the connection drops runs to its end; its message, not
        # acknowledged, comes back and the copy finds its work done (every task is
        # idempotent: `place_call` acts only on an attempt still `dialing`). Cancelling it
        # could stop a dial between the provider's create and the commit that records it.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport_options=transport_options,
        task_queues=[
            Queue(
                name,
                Exchange(name, type="direct"),
                routing_key=name,
                queue_arguments=queue_arguments,
            )
            for name in (DIALS_QUEUE, PACER_QUEUE, MAINTENANCE_QUEUE, WEBHOOKS_QUEUE)
        ],
        task_default_queue=DIALS_QUEUE,
        task_routes={
            "dialer.pacer": {"queue": PACER_QUEUE},
            "dialer.kick_pacers": {"queue": MAINTENANCE_QUEUE},
            "dialer.reap": {"queue": MAINTENANCE_QUEUE},
            "dialer.resolve_late_call": {"queue": MAINTENANCE_QUEUE},
            "dialer.deliver_webhook": {"queue": WEBHOOKS_QUEUE},
            "dialer.sweep_webhooks": {"queue": WEBHOOKS_QUEUE},
            "dialer.fire_schedules": {"queue": MAINTENANCE_QUEUE},
            "dialer.fold_counters": {"queue": MAINTENANCE_QUEUE},
        },
        beat_schedule={
            "kick-pacers": {"task": "dialer.kick_pacers", "schedule": 5.0},
            "reap": {"task": "dialer.reap", "schedule": 5.0},
            "sweep-webhooks": {"task": "dialer.sweep_webhooks", "schedule": WEBHOOK_SWEEP_S},
            "fire-schedules": {
                "task": "dialer.fire_schedules",
                "schedule": settings.schedule_tick_s,
            },
            "fold-counters": {"task": "dialer.fold_counters", "schedule": 60.0},
        },
        timezone="UTC",
        worker_send_task_events=True,
    )
    return app


app = create_app()
