"""The reaper and hold-time watchdog (run by beat every few seconds).

One pass at a time, account by account, at most `MAX_PER_PASS` live attempts each. The
pass holds a Redis lock with a short TTL (`lock_ttl_s`) that it renews before each account
and each attempt: a pass that stops making progress (its host cut off from PostgreSQL with
the connection held open, a statement that never returns) loses the lock within that TTL
and the next beat's pass takes over; the stalled pass, when it wakes, finds the lock no
longer its own and stops. The pass is shared by every account, so each
account, and each attempt, is isolated: a failure (a bug, or stored data no check holds
any more, such as a campaign's poisoned retry policy) is logged with its traceback and the
pass goes on with the others.

- Leases near expiry whose attempt is not final: ask the provider what became of the call,
  apply it, hang up a call still live past its cap, and free the slot.
- Live calls with no callback for `status_poll_after_s` (scaled in development:
  `Settings.status_poll_wait_s`): fetch them (a final callback can be lost) and apply a
  terminal status found there.
- Calls live longer than their campaign's `max_hold_s`: hang up, mark `hold_cap`.
- Attempts stuck in `dialing` (their `place_call` message lost with a worker, or a failed
  try waiting) are handed back to `place_call` once per `stuck_dialing_after_s`, or
  stopped if their campaign no longer runs; stuck in `placing`, they are resolved by
  lookup once their send deadline and the provider timeout have passed, never before.
- Leases in Redis whose attempt is final, or has no row at all (a pacer round that died
  before its commit), are released; the latter only under the account's pool lock, when
  no round can still be about to commit them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

import structlog
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock
from sqlalchemy import func, select

from dialer.dispatch.dialing import (
    DialOrder,
    apply_provider_view,
    hand_back_lost,
    hang_up_call,
    recover_placing,
    recoverable_at,
)
from dialer.pool import Keys, ProviderKeys
from dialer.pool.leases import release_keys
from dialer.pool.reconcile import try_lock_account_pool
from dialer.providers.base import ProviderError
from dialer.runtime import Runtime
from dialer.settings import Settings
from models import (
    LIVE_ATTEMPT_STATUSES,
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    EndReason,
    transaction,
    utcnow,
)

log = structlog.get_logger(__name__)

EXPIRY_HORIZON_S = 15.0
"""Leases expiring within this many seconds are checked with the provider."""
MAX_PER_PASS = 500
"""Most live attempts of one account one pass looks at (oldest-touched first)."""
LOCK_MARGIN_S = 5.0
"""Seconds of the lock's TTL beyond a step's provider requests: its own statements and
Redis round trips (milliseconds each)."""
LOCK_KEY = "dialer:reaper:lock"


def lock_ttl_s(settings: Settings) -> float:
    """Seconds the reaper lock outlives its last renewal: the longest step between two
    renewals (one attempt: a look-up and a hang-up at the provider, each bounded by
    `twilio_timeout_s`) plus `LOCK_MARGIN_S`. 25 s with the defaults."""
    return 2 * settings.twilio_timeout_s + LOCK_MARGIN_S


class ReaperLockLostError(Exception):
    """The pass's lock lapsed (the pass stalled past `lock_ttl_s`), and another pass may
    hold it now: this pass stops."""


def _renew(lock: Lock) -> None:
    """Reset the lock's TTL, or raise `ReaperLockLostError` if it is no longer this pass's."""
    try:
        lock.reacquire()
    except LockNotOwnedError as lost:
        raise ReaperLockLostError from lost


@dataclass
class ReapReport:
    """What one reaper pass did (attempt ids; the attempts handed back to `place_call` as
    `DialOrder`s); `skipped` when another pass held the lock."""

    resolved: list[int] = field(default_factory=list)
    polled: list[int] = field(default_factory=list)
    hung_up: list[int] = field(default_factory=list)
    redispatched: list[DialOrder] = field(default_factory=list)
    leaked: int = 0
    skipped: bool = False
    lock_lost: bool = False
    """The pass stalled past `lock_ttl_s` and stopped where it was."""


def reap(runtime: Runtime, redispatch: Callable[[list[DialOrder]], None]) -> ReapReport:
    """One pass over every account's live attempts and leases, unless another pass runs."""
    report = ReapReport()
    lock = runtime.redis.lock(LOCK_KEY, timeout=lock_ttl_s(runtime.settings))
    if not lock.acquire(blocking=False):
        report.skipped = True
        return report
    try:
        with transaction(runtime.settings.database_url) as session:
            accounts = list(
                session.scalars(
                    select(Campaign.account_id).distinct().order_by(Campaign.account_id)
                )
            )
        for account_id in accounts:
            _renew(lock)
            # Isolated: one account's failure (a bug, or stored data no check holds any
            # more) is logged with its traceback and the pass goes on with the others.
            try:
                _reap_account(runtime, lock, account_id, report)
            except ReaperLockLostError:
                raise
            except Exception:
                log.exception("reap_account_failed", account_id=account_id)
            _renew(lock)
            try:
                report.leaked += release_leaked(runtime, account_id)
            except Exception:
                log.exception("release_leaked_failed", account_id=account_id)
    except ReaperLockLostError:
        log.warning("reaper_lock_lost", ttl_s=lock_ttl_s(runtime.settings))
        report.lock_lost = True
    finally:
        if not report.lock_lost:
            try:
                lock.release()
            except LockNotOwnedError:  # lapsed during the last step
                report.lock_lost = True
    if report.redispatched:
        redispatch(report.redispatched)
    return report


def _reap_account(runtime: Runtime, lock: Lock, account_id: int, report: ReapReport) -> None:
    now = utcnow()
    with transaction(runtime.settings.database_url) as session:
        live = session.execute(
            select(CallAttempt, func.coalesce(CallJob.max_hold_s, Campaign.max_hold_s))
            .join(Campaign, Campaign.id == CallAttempt.campaign_id)
            .join(CallJob, CallJob.id == CallAttempt.job_id)
            .where(
                CallAttempt.account_id == account_id,
                CallAttempt.status.in_(LIVE_ATTEMPT_STATUSES),
            )
            .order_by(CallAttempt.updated_at)
            .limit(MAX_PER_PASS)
        ).all()
    for attempt, max_hold_s in live:
        _renew(lock)
        try:
            _reap_attempt(runtime, attempt, max_hold_s, now, report)
        except Exception:  # isolated: the account's other attempts are still reaped
            log.exception("reap_attempt_failed", account_id=account_id, attempt_id=attempt.id)


def _reap_attempt(
    runtime: Runtime,
    attempt: CallAttempt,
    max_hold_s: int | None,
    now: datetime,
    report: ReapReport,
) -> None:
    """One live attempt (read detached, in no session) at `now`: see the module's list."""
    settings = runtime.settings
    if attempt.call_sid is None:
        if attempt.status is AttemptStatus.DIALING:
            stuck_before = now - timedelta(seconds=settings.stuck_dialing_after_s)
            if attempt.updated_at < stuck_before and hand_back_lost(runtime, attempt.id):
                order = DialOrder(attempt.id, attempt.campaign_id, attempt.account_id)
                report.redispatched.append(order)
        elif now >= recoverable_at(settings, attempt):
            recover_placing(runtime, attempt.id)
            report.resolved.append(attempt.id)
        return
    over_hold = (
        max_hold_s is not None
        and attempt.answered_at is not None
        and (now - attempt.answered_at).total_seconds() > max_hold_s
    )
    near_expiry = attempt.lease_expires_at <= now + timedelta(seconds=EXPIRY_HORIZON_S)
    if over_hold:
        hang_up_call(runtime, attempt.id, reason=EndReason.HOLD_CAP)
        report.hung_up.append(attempt.id)
    elif near_expiry:
        hang_up_call(runtime, attempt.id, reason=EndReason.LEASE_EXPIRED)
        report.resolved.append(attempt.id)
    elif attempt.updated_at < now - timedelta(seconds=settings.status_poll_wait_s):
        _poll(runtime, attempt.id, attempt.call_sid)
        report.polled.append(attempt.id)


def _poll(runtime: Runtime, attempt_id: int, call_sid: str) -> None:
    """Fetch a quiet call; apply what the provider reports (touching the attempt either way,
    so a call that is simply long is polled once per `status_poll_after_s`)."""
    try:
        call = runtime.provider.fetch_call(call_sid)
    except ProviderError as error:
        log.warning("status_poll_failed", attempt_id=attempt_id, error=str(error))
        return
    if apply_provider_view(runtime, attempt_id, call):
        log.info("call_end_polled", attempt_id=attempt_id, status=call.status)


def release_leaked(runtime: Runtime, account_id: int) -> int:
    """Release the account's leases whose attempt is final or has no row. Returns how many.

    A lease without a row is a pacer round's that died before its commit, or one that is
    about to commit: the rows are read under the account's pool lock, which every round
    holds from its first lease to its commit, so neither is mistaken for the other. When a
    round holds the lock now, only final attempts' leases are released this pass.
    """
    keys = Keys(account_id)
    released = 0
    with transaction(runtime.settings.database_url) as session:
        locked = try_lock_account_pool(session, account_id)
        held = cast("list[bytes]", runtime.redis.zrange(keys.account_pool(), 0, -1))
        members = [int(m) for m in held if m.isdigit()]
        if not members:
            return 0
        rows = session.execute(
            select(
                CallAttempt.id, CallAttempt.status, CallAttempt.campaign_id, CallAttempt.from_e164
            ).where(CallAttempt.id.in_(members))
        ).all()
        known = {attempt_id for attempt_id, _, _, _ in rows}
        for attempt_id, status, campaign_id, from_e164 in rows:
            if status not in LIVE_ATTEMPT_STATUSES:
                scope_keys = release_keys(account_id, campaign_id, from_e164)
                released += runtime.pool.release(str(attempt_id), scope_keys, keys.wake()) > 0
        orphans = set(members) - known if locked else set()
        # An orphan's campaign is unknown: drop it from every pool scope of the account,
        # and from the provider account's.
        scope_keys = (
            [key.decode() for key in runtime.redis.scan_iter(match=keys.scopes(), count=1000)]
            + [ProviderKeys().pool()]
            if orphans
            else []
        )
        for orphan in orphans:
            released += runtime.pool.release(str(orphan), scope_keys, keys.wake()) > 0
            log.warning("orphan_lease_released", account_id=account_id, attempt_id=orphan)
    return released
