"""The Celery app: `celery -A workers worker|beat|flower`.

Settings for short, idempotent tasks that must survive a worker dying mid-task: acks after
the task ends (`task_acks_late`), a message whose worker was killed goes back to the queue
(`task_reject_on_worker_lost`), one message prefetched per process, JSON only. No task here
uses a countdown or ETA, so the Redis broker's `visibility_timeout` only bounds how long a
message held by a vanished worker waits before redelivery; the reaper covers that wait for
dials.

Every task's class is `workers.base.DialerTask` (log context, counters, not-found mapping).
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Exchange, Queue

from dialer.settings import get_settings
from workers.base import DialerTask

PACER_QUEUE = "pacer"
DIALS_QUEUE = "dials"
MAINTENANCE_QUEUE = "maintenance"


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
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in (DIALS_QUEUE, PACER_QUEUE, MAINTENANCE_QUEUE)
        ],
        task_default_queue=DIALS_QUEUE,
        task_routes={
            "dialer.pacer": {"queue": PACER_QUEUE},
            "dialer.kick_pacers": {"queue": MAINTENANCE_QUEUE},
            "dialer.reap": {"queue": MAINTENANCE_QUEUE},
            "dialer.resolve_late_call": {"queue": MAINTENANCE_QUEUE},
            "dialer.fold_counters": {"queue": MAINTENANCE_QUEUE},
        },
        beat_schedule={
            "kick-pacers": {"task": "dialer.kick_pacers", "schedule": 5.0},
            "reap": {"task": "dialer.reap", "schedule": 5.0},
            "fold-counters": {"task": "dialer.fold_counters", "schedule": 60.0},
        },
        timezone="UTC",
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


app = create_app()
