"""Task events only while a monitor asks for them: a lease that `enable_events` renews.

Celery's task events (`task-received`, `task-started`, `task-succeeded`, ...) are what Flower
shows; each is a Redis `PUBLISH` from the worker's main process, three per task, and
buffering and sending them was half of the worker's consumer loop on the dispatch bench
(`bench/dispatch.py`). Nobody reads them unless a monitor is connected. Flower asks every
worker for them with the `enable_events` remote control command every 5 seconds, for as
long as it runs (`flower.events.Events.events_enable_interval`), and never says when it
stops.

So each worker treats `enable_events` as a lease of `LEASE_S` seconds (three of Flower's
intervals: one or two lost broadcasts do not turn the events off):

- a worker starts with task events on, under a first lease: a monitor that is already
  running sees a new worker's first tasks, and renews the lease within 5 seconds; with no
  monitor the events stop after `LEASE_S`;
- every `enable_events` (Flower's, or `celery -A workers control enable_events`) turns
  them on if needed and renews the lease;
- `CHECK_S` seconds apart, the worker's event loop turns them off once the lease has
  lapsed (`disable_events` still turns them off at once).

Worker heartbeats (the `worker` group, every 2 seconds) are untouched: Flower needs them to
list the workers at all. A monitor other than Flower keeps task events on by sending
`enable_events` more often than every `LEASE_S` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from celery import bootsteps
from celery.worker.control import control_command, nok, ok

log = structlog.get_logger(__name__)

LEASE_S = 15.0
"""Seconds task events stay on after the last `enable_events` (or the worker's start)."""
CHECK_S = 1.0
"""Seconds between two checks of the lease on the worker's event loop."""
TASK_GROUP = "task"
"""Celery's event group of the task events (`EventDispatcher.groups`)."""


class TaskEventsLease:
    """The lease of one worker's task events over its event dispatcher's groups
    (`celery.events.EventDispatcher`: a set of group names, `task` among them while task
    events are sent). `clock` gives monotonic seconds."""

    def __init__(self, groups: set[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.groups = groups
        self.clock = clock
        self.until = 0.0

    def renew(self) -> bool:
        """Task events on, for `LEASE_S` from now; True if they were off."""
        self.until = self.clock() + LEASE_S
        if TASK_GROUP in self.groups:
            return False
        self.groups.add(TASK_GROUP)
        return True

    def check(self) -> bool:
        """Task events off if the lease has lapsed; True if they were turned off now."""
        if TASK_GROUP not in self.groups or self.clock() < self.until:
            return False
        self.groups.discard(TASK_GROUP)
        return True


_leases: dict[int, TaskEventsLease] = {}
"""The lease of each consumer in this process (by `id(consumer)`; one in a worker)."""


def lease_of(consumer: Any) -> TaskEventsLease | None:
    """The task events lease of a worker's consumer, once its event dispatcher runs."""
    return _leases.get(id(consumer))


class TaskEventsLeaseStep(bootsteps.StartStopStep):  # type: ignore[misc]  # Celery is untyped
    """The consumer's step that starts the first lease and checks it every `CHECK_S`."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self._timer: Any = None

    def start(self, consumer: Any) -> None:
        dispatcher = consumer.event_dispatcher
        if dispatcher is None or not dispatcher.enabled or dispatcher.groups is None:
            return  # no events at all (no heartbeats either), or every group always
        lease = _leases[id(consumer)] = TaskEventsLease(dispatcher.groups)
        lease.renew()
        if self._timer is None:
            self._timer = consumer.timer.call_repeatedly(CHECK_S, self._check, (consumer,))

    def _check(self, consumer: Any) -> None:
        lease = lease_of(consumer)
        if lease is not None and lease.check():
            log.info("task_events_lease_lapsed", lease_s=LEASE_S)

    def stop(self, consumer: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _leases.pop(id(consumer), None)


@control_command()  # replaces Celery's own `enable_events`
def enable_events(state: Any) -> dict[str, str]:
    """Tell worker(s) to send task-related events for the next `LEASE_S` seconds."""
    lease = lease_of(state.consumer)
    if lease is None:
        unavailable: dict[str, str] = nok("event dispatcher unavailable")
        return unavailable
    reply: dict[str, str] = ok(
        "task events enabled" if lease.renew() else "task events lease renewed"
    )
    return reply
