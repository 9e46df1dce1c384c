"""The reaper and hold-time watchdog (run by beat every few seconds).

- Leases near expiry whose attempt is not final: ask the provider what became of the call,
  apply it, hang up a call still live past its cap, and free the slot.
- Live calls with no callback for `status_poll_after_s`: fetch them (a final callback can
  be lost) and apply a terminal status found there.
- Calls live longer than their campaign's `max_hold_s`: hang up, mark `hold_cap`.
- Attempts stuck in `dialing` (their `place_call` message lost with a worker) are handed
  back to `place_call`; stuck in `placing`, they are resolved by lookup.
- Leases in Redis whose attempt is final or unknown are released.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

import structlog
from sqlalchemy import select

from dialer.dispatch.dialing import apply_provider_view, hang_up_call, recover_placing
from dialer.pool import Keys
from dialer.pool.leases import release_keys
from dialer.providers.base import ProviderError
from dialer.runtime import Runtime
from models import (
    LIVE_ATTEMPT_STATUSES,
    AttemptStatus,
    CallAttempt,
    Campaign,
    EndReason,
    session_factory,
    transaction,
    utcnow,
)

log = structlog.get_logger(__name__)

EXPIRY_HORIZON_S = 15.0
"""Leases expiring within this many seconds are checked with the provider."""


@dataclass
class ReapReport:
    """What one reaper pass did (attempt ids)."""

    resolved: list[int] = field(default_factory=list)
    polled: list[int] = field(default_factory=list)
    hung_up: list[int] = field(default_factory=list)
    redispatched: list[int] = field(default_factory=list)
    leaked: int = 0


def reap(runtime: Runtime, redispatch: Callable[[list[int]], None]) -> ReapReport:
    """One pass over every account's live attempts and leases."""
    report = ReapReport()
    now = utcnow()
    session = session_factory(runtime.settings.database_url)()
    try:
        live = session.execute(
            select(CallAttempt, Campaign.max_hold_s)
            .join(Campaign, Campaign.id == CallAttempt.campaign_id)
            .where(CallAttempt.status.in_(LIVE_ATTEMPT_STATUSES))
        ).all()
    finally:
        session.close()
    settings = runtime.settings
    stuck_before = now - timedelta(seconds=settings.stuck_dialing_after_s)
    quiet_before = now - timedelta(seconds=settings.status_poll_after_s)
    for attempt, max_hold_s in live:
        if attempt.call_sid is None:
            if attempt.created_at < stuck_before:
                if attempt.status is AttemptStatus.DIALING:
                    report.redispatched.append(attempt.id)
                else:
                    recover_placing(runtime, attempt.id)
                    report.resolved.append(attempt.id)
            continue
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
        elif attempt.updated_at < quiet_before:
            _poll(runtime, attempt.id, attempt.call_sid)
            report.polled.append(attempt.id)
    if report.redispatched:
        redispatch(report.redispatched)
    report.leaked = _release_leaked(runtime)
    return report


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


def _release_leaked(runtime: Runtime) -> int:
    """Release leases whose attempt is final. Returns how many.

    A lease whose attempt row does not exist (a pacer round that died before its commit)
    is left to lapse at its expiry: it may also be a round that is about to commit.
    """
    released = 0
    with transaction(runtime.settings.database_url) as session:
        accounts = session.scalars(select(Campaign.account_id).distinct()).all()
        for account_id in accounts:
            keys = Keys(account_id)
            held = cast("list[bytes]", runtime.redis.zrange(keys.account_pool(), 0, -1))
            members = [int(m) for m in held]
            if not members:
                continue
            final = session.execute(
                select(CallAttempt.id, CallAttempt.campaign_id, Campaign.caller_id_id)
                .join(Campaign, Campaign.id == CallAttempt.campaign_id)
                .where(
                    CallAttempt.id.in_(members),
                    CallAttempt.status.not_in(LIVE_ATTEMPT_STATUSES),
                )
            ).all()
            for attempt_id, campaign_id, caller_id_id in final:
                scope_keys = release_keys(account_id, campaign_id, caller_id_id)
                if runtime.pool.release(str(attempt_id), scope_keys, keys.wake()):
                    released += 1
    return released
