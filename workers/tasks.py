"""Thin tasks: arguments are ids, each calls one service function and returns its result.

Log context, counters and the mapping of `NotFoundError` (a warning and a None result) are
the base class's (`workers.base.DialerTask`), the same for every task.
"""

from __future__ import annotations

from campaigns import counters
from campaigns.number_health import rest_flagged_everywhere
from campaigns.schedules import fire_due
from dialer.dispatch.dialing import hang_up_call, place_call, resolve_late_call
from dialer.dispatch.pacer import accounts_needing_pacer, run_pacer
from dialer.dispatch.reaper import reap
from dialer.dispatch.voicemail import drop_voicemail
from dialer.metrics import DIALS
from dialer.runtime import get_runtime
from dialer.settings import get_settings
from dialer.webhooks.delivery import deliver, sweep, sweep_time_limit_s, try_time_limit_s
from models import EndReason, transaction
from workers.app import app
from workers.enqueue import (
    DELIVER_WEBHOOK,
    DROP_VOICEMAIL,
    FIRE_SCHEDULES,
    FOLD_COUNTERS,
    HANG_UP,
    KICK_PACERS,
    PACER,
    PLACE_CALL,
    REAP,
    RESOLVE_LATE_CALL,
    REST_FLAGGED_NUMBERS,
    SWEEP_WEBHOOKS,
    kick_pacer,
    place_calls,
)

PACER_BUDGET_S = 30.0
"""Seconds one pacer task runs before handing over to a fresh one (re-armed)."""


@app.task(name=PLACE_CALL)
def place_call_task(
    attempt_id: int, campaign_id: int | None = None, account_id: int | None = None
) -> str:
    """Create the provider call for one attempt (idempotent: see `dialer.dispatch.dialing`).
    `campaign_id` and `account_id` only name the call (log context, Flower)."""
    result = place_call(get_runtime(), attempt_id)
    DIALS.labels(result.value).inc()
    return result.value


@app.task(name=HANG_UP)
def hang_up_task(attempt_id: int, reason: str) -> None:
    """End a live call at the provider with `reason` as its end reason (e.g. `machine`)."""
    hang_up_call(get_runtime(), attempt_id, EndReason(reason))


@app.task(name=DROP_VOICEMAIL)
def drop_voicemail_task(attempt_id: int) -> str:
    """Leave the voicemail message on a call whose machine greeting ended."""
    return drop_voicemail(get_runtime(), attempt_id).value


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
        "lock_lost": int(report.lock_lost),
    }


HARD_LIMIT_MARGIN_S = 5.0
"""Seconds past a task's soft time limit (`SoftTimeLimitExceeded` raised in it) before its
process is killed (the hard limit)."""


@app.task(
    name=DELIVER_WEBHOOK,
    soft_time_limit=try_time_limit_s(get_settings()),
    time_limit=try_time_limit_s(get_settings()) + HARD_LIMIT_MARGIN_S,
)
def deliver_webhook_task(event_id: str) -> str | None:
    """One try of a webhook event, sent after the commit that wrote it (None: not tried)."""
    status = deliver(get_runtime(), event_id)
    return status.value if status else None


@app.task(
    name=SWEEP_WEBHOOKS,
    soft_time_limit=sweep_time_limit_s(get_settings()),
    time_limit=sweep_time_limit_s(get_settings()) + HARD_LIMIT_MARGIN_S,
)
def sweep_webhooks_task() -> int | None:
    """Beat: try the due webhook events (retries, lost first tries); None: another sweep
    runs."""
    return sweep(get_runtime())


@app.task(name=FIRE_SCHEDULES)
def fire_schedules_task() -> int:
    """Beat: fire every due schedule (each occurrence once, however many beats run) and
    wake the pacers of the accounts whose campaigns it started."""
    settings = get_runtime().settings
    fired = fire_due(settings.database_url, settings.data_dir)
    for account_id in {f.account_id for f in fired if f.campaign_id is not None}:
        kick_pacer(account_id)
    return len(fired)


@app.task(name=FOLD_COUNTERS)
def fold_counters_task() -> int:
    """Beat: fold the report counters' stripes of database backends that are gone, so a
    report sums few rows (`campaigns.counters.fold`)."""
    with transaction(get_runtime().settings.database_url) as session:
        return counters.fold(session)


@app.task(name=REST_FLAGGED_NUMBERS)
def rest_flagged_numbers_task() -> int:
    """Beat: rest the caller IDs the number-health report flags, in the accounts that
    asked for it (`campaigns.number_health.rest_flagged_everywhere`)."""
    runtime = get_runtime()
    return rest_flagged_everywhere(runtime.settings.database_url, runtime.clock())
