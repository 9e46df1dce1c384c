"""Thin tasks: arguments are ids, each calls one service function and maps its errors."""

from __future__ import annotations

import structlog
from celery import Task

from dialer.dialing import hang_up_call, place_call
from dialer.errors import NotFoundError
from dialer.pacer import accounts_needing_pacer, run_pacer
from dialer.reaper import reap
from dialer.runtime import get_runtime
from workers.app import app

log = structlog.get_logger(__name__)

PACER_BUDGET_S = 30.0
"""Seconds one pacer task runs before handing over to a fresh one (re-armed)."""


def enqueue_dials(attempt_ids: list[int]) -> None:
    """Send one `dialer.place_call` per attempt (called after the attempts are committed)."""
    for attempt_id in attempt_ids:
        place_call_task.delay(attempt_id)


def kick_pacer(account_id: int) -> None:
    """Make sure a pacer runs for the account (a second one exits at once on the lock)."""
    pacer_task.delay(account_id)


@app.task(name="dialer.place_call", bind=True)
def place_call_task(self: Task, attempt_id: int) -> str:
    """Create the provider call for one attempt (idempotent: see `dialer.dialing`)."""
    try:
        result = place_call(get_runtime(), attempt_id)
    except NotFoundError:
        log.warning("place_call_unknown_attempt", attempt_id=attempt_id)
        return "unknown"
    return result.value


@app.task(name="dialer.hang_up")
def hang_up_task(attempt_id: int, reason: str) -> None:
    """End a live call at the provider with `reason` as its end reason (e.g. `machine`)."""
    hang_up_call(get_runtime(), attempt_id, reason)


@app.task(name="dialer.pacer")
def pacer_task(account_id: int) -> int:
    """Dispatch an account's due contacts for a while; re-arm while work remains."""
    run = run_pacer(get_runtime(), account_id, enqueue_dials, budget_s=PACER_BUDGET_S)
    if run.locked and run.work_left:
        kick_pacer(account_id)
    return run.dispatched


@app.task(name="dialer.kick_pacers")
def kick_pacers_task() -> int:
    """Beat: start a pacer for every account with a running campaign and no pacer."""
    accounts = accounts_needing_pacer(get_runtime())
    for account_id in accounts:
        kick_pacer(account_id)
    return len(accounts)


@app.task(name="dialer.reap")
def reap_task() -> dict[str, int]:
    """Beat: the reaper and hold-time watchdog."""
    report = reap(get_runtime(), enqueue_dials)
    return {
        "resolved": len(report.resolved),
        "hung_up": len(report.hung_up),
        "redispatched": len(report.redispatched),
        "leaked": report.leaked,
    }
