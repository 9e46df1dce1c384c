"""Sending tasks by name, for the entry points (the HTTP app, the CLI) and the tests.

The entry points do not import task functions (that would load every task module and its
engine imports into the web process): they send by the task's registered name, and the
app's `task_routes` put each on its queue. Call these after the transaction that made the
work commits (`models.on_commit`), so no worker looks for a row that is not there yet.

Every id goes as a keyword argument (`attempt_id`, `campaign_id`, `account_id`), so a
person finds a call's tasks in Flower by any of them. (The tasks still take the same
arguments by position, so messages sent before this change run as they did.)
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
import structlog

from dialer.dispatch.dialing import DialOrder
from dialer.dispatch.pacer import pacer_idle_key
from dialer.runtime import get_runtime
from dialer.webhooks import outbox
from workers.app import app

PLACE_CALL = "dialer.place_call"
HANG_UP = "dialer.hang_up"
DROP_VOICEMAIL = "dialer.drop_voicemail"
PACER = "dialer.pacer"
KICK_PACERS = "dialer.kick_pacers"
REAP = "dialer.reap"
RESOLVE_LATE_CALL = "dialer.resolve_late_call"
DELIVER_WEBHOOK = "dialer.deliver_webhook"
SWEEP_WEBHOOKS = "dialer.sweep_webhooks"
FIRE_SCHEDULES = "dialer.fire_schedules"
FOLD_COUNTERS = "dialer.fold_counters"
REST_FLAGGED_NUMBERS = "dialer.rest_flagged_numbers"


log = structlog.get_logger(__name__)


def kick_pacer(account_id: int) -> None:
    """Make sure a pacer runs for the account (a second one exits at once on the lock).

    The account's idle mark (`pacer_idle_key`: "nothing to do until ...") is cleared
    first, since a kick means new work: so if the publish is lost (the broker down after
    the work committed), the beat's `kick_pacers` (every 5 s) starts the pacer instead.
    """
    try:
        get_runtime().redis.delete(pacer_idle_key(account_id))
    except redis.RedisError as error:
        log.warning("pacer_idle_mark_not_cleared", account_id=account_id, error=str(error))
    app.send_task(PACER, kwargs={"account_id": account_id})


def hang_up(attempt_id: int, reason: str) -> None:
    """Ask a worker to end a live call at the provider with `reason` as its end reason."""
    app.send_task(HANG_UP, kwargs={"attempt_id": attempt_id, "reason": reason})


def drop_voicemail(attempt_id: int) -> None:
    """Ask a worker to leave the voicemail message on a live call whose machine greeting
    ended (`dialer.dispatch.voicemail`)."""
    app.send_task(DROP_VOICEMAIL, kwargs={"attempt_id": attempt_id})


def place_calls(orders: Sequence[DialOrder]) -> None:
    """Send one `place_call` per committed `dialing` attempt, with the campaign and account
    ids its sender (the pacer, the reaper) already knows."""
    for order in orders:
        kwargs = {
            "attempt_id": order.attempt_id,
            "campaign_id": order.campaign_id,
            "account_id": order.account_id,
        }
        app.send_task(PLACE_CALL, kwargs=kwargs)


def resolve_late_call(attempt_id: int, call_sid: str) -> None:
    """Have a worker adopt or hang up a call made for an attempt already given up."""
    app.send_task(RESOLVE_LATE_CALL, kwargs={"attempt_id": attempt_id, "call_sid": call_sid})


def deliver_webhooks(event_ids: Sequence[str]) -> None:
    """Send the first try of each committed webhook event (`webhooks` queue)."""
    for event_id in event_ids:
        app.send_task(DELIVER_WEBHOOK, kwargs={"event_id": event_id})


# Events the engine writes in a process that imported this module (the API, the workers)
# are sent to delivery right after their commit; elsewhere the sweep finds them.
outbox.set_dispatcher(deliver_webhooks)
