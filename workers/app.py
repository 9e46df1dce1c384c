"""The Celery app: `celery -A workers worker|beat|flower`.

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
its metrics on `WORKER_METRICS_PORT` (`workers.observability`). Workers send task events,
which Flower needs, only while a monitor asks for them (`workers.events`: a lease that
Flower's periodic `enable_events` renews, and a new worker starts with); senders do not
send `task-sent` (one more PUBLISH per task: Flower learns each task's name and arguments
from `task-received`).
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Exchange, Queue

from dialer.settings import get_settings
from workers import observability  # noqa: F401  # Celery signal receivers: logs, metrics
from workers.base import DialerTask
from workers.events import TaskEventsLeaseStep

PACER_QUEUE = "pacer"
DIALS_QUEUE = "dials"
MAINTENANCE_QUEUE = "maintenance"
WEBHOOKS_QUEUE = "webhooks"
"""Deliveries to customers' webhooks: their own queue, so a slow receiver never holds up
dials, the pacer or the reaper."""
WEBHOOK_SWEEP_S = 2.0
"""Seconds between two sweeps for due webhook retries (`dialer.webhooks.delivery.sweep`)."""


def create_app() -> Celery:
    """Build the Celery app from `Settings` (broker and result backend: `REDIS_URL`)."""
    settings = get_settings()
    app = Celery(
        "dialer", broker=settings.redis_url, include=["workers.tasks"], task_cls=DialerTask
    )
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
        broker_transport_options={"ack_emulation": False},
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name)
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
            "dialer.rest_flagged_numbers": {"queue": MAINTENANCE_QUEUE},
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
            "rest-flagged-numbers": {"task": "dialer.rest_flagged_numbers", "schedule": 60.0},
        },
        timezone="UTC",
        # Off until asked for: `workers.events` turns them on for a lease at the start and
        # on every `enable_events`.
        worker_send_task_events=False,
    )
    app.steps["consumer"].add(TaskEventsLeaseStep)
    return app


app = create_app()
