"""Thin tasks: arguments are ids, each calls one service function and returns its result.

Log context, counters and the mapping of `NotFoundError` (a warning and a None result) are
the base class's (`workers.base.DialerTask`), the same for every task.
"""

from __future__ import annotations

from campaigns import counters
from dialer.dispatch.dialing import hang_up_call, place_call, resolve_late_call
from dialer.dispatch.pacer import accounts_needing_pacer, run_pacer
from dialer.dispatch.reaper import reap
from dialer.runtime import get_runtime
from models import EndReason, transaction
from workers.app import app
from workers.enqueue import (
    FOLD_COUNTERS,
    HANG_UP,
    KICK_PACERS,
    PACER,
    PLACE_CALL,
    REAP,
    RESOLVE_LATE_CALL,
    kick_pacer,
    place_calls,
)

PACER_BUDGET_S = 30.0
"""Seconds one pacer task runs before handing over to a fresh one (re-armed)."""


@app.task(name=PLACE_CALL)
def place_call_task(attempt_id: int) -> str:
    """Create the provider call for one attempt (idempotent: see `dialer.dispatch.dialing`)."""
    return place_call(get_runtime(), attempt_id).value


@app.task(name=HANG_UP)
def hang_up_task(attempt_id: int, reason: str) -> None:
    """End a live call at the provider with `reason` as its end reason (e.g. `machine`)."""
    hang_up_call(get_runtime(), attempt_id, EndReason(reason))


@app.task(name=RESOLVE_LATE_CALL)
def resolve_late_call_task(attempt_id: int, call_sid: str) -> str:
    """Adopt or hang up a call made for an attempt already given up."""
    return resolve_late_call(get_runtime(), attempt_id, call_sid).value


@app.task(name=PACER)
def pacer_task(account_id: int) -> int:
    """Dispatch an account's due contacts for a while; re-arm while work remains."""
    run = run_pacer(get_runtime(), account_id, place_calls, budget_s=PACER_BUDGET_S)
    if run.locked and run.work_left:
        kick_pacer(account_id)
    return run.dispatched


@app.task(name=KICK_PACERS)
def kick_pacers_task() -> int:
    """Beat: start a pacer for every account with a running campaign and no pacer."""
    accounts = accounts_needing_pacer(get_runtime())
    for account_id in accounts:
        kick_pacer(account_id)
    return len(accounts)


@app.task(name=REAP)
def reap_task() -> dict[str, int]:
    """Beat: the reaper and hold-time watchdog."""
    report = reap(get_runtime(), place_calls)
    return {
        "resolved": len(report.resolved),
        "hung_up": len(report.hung_up),
        "redispatched": len(report.redispatched),
        "leaked": report.leaked,
        "skipped": int(report.skipped),
    }


@app.task(name=FOLD_COUNTERS)
def fold_counters_task() -> int:
    """Beat: fold the report counters' stripes of database backends that are gone, so a
    report sums few rows (`campaigns.counters.fold`)."""
    with transaction(get_runtime().settings.database_url) as session:
        return counters.fold(session)
