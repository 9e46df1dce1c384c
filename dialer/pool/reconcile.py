"""The reconciler: rebuild an account's pool from PostgreSQL when Redis has lost it or failed
over.

PostgreSQL is the record of which calls are live; Redis only mirrors it for speed. A
generation key, written when the pool is (re)built, holds the Redis epoch it was built in
(`Pool.epoch`: the server's run id and replication id). When the key is gone (a restart
without persistence, a `FLUSHALL`) or names another epoch (a restart, a replica promoted by
Sentinel, which may lack the last writes its master acknowledged: replication is
asynchronous), every live attempt's lease is added back (with its recorded expiry) before
the pacer admits anything, and the send windows the lost writes may have held are counted
full for one window (`fill_send_windows`: no CPS burst from forgotten slots). The provider
account's scope, shared by every account, has a generation key of its own: the first pacer
to find it stale puts back the live attempts of every account, under the provider lock that
every dispatch round holds shared (`lock_account_pool`). The caller IDs' dial windows (their
minute and day limits) are rebuilt with the account's pool, from the attempts of the last
day, so a number does not present its day's calls again after Redis lost them.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from redis.client import Pipeline
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.pool import Keys, Pool, ProviderKeys
from dialer.pool.leases import ProviderLimits, release_keys, send_window, send_windows
from models import (
    LIVE_ATTEMPT_STATUSES,
    Account,
    CallAttempt,
    Campaign,
    CampaignStatus,
    transaction,
)

log = structlog.get_logger(__name__)

DIAL_WINDOW_TTL_MS = 86_400_000 + 60_000
"""A rebuilt dial window lapses a day (and a minute) after it is written, as the admission
script's do (`acquire.lua`) when no call is admitted meanwhile."""


def ensure_pool(
    pool: Pool, database_url: str, account_id: int, provider: ProviderLimits | None = None
) -> bool:
    """Rebuild the account's leases, and the provider account's scope, if Redis lost them
    or failed over since they were built. Returns True if it rebuilt either.

    `provider`: the provider account's limits (`ProviderLimits.of(settings)`), for its send
    window; None: none.

    Cheap when nothing changed: one round trip (`Pool.pool_epochs`, measured by
    `bench/pool_epoch.py`).
    """
    keys = Keys(account_id)
    provider_keys = ProviderKeys()
    provider = provider or ProviderLimits()
    epoch, (account_gen, provider_gen) = pool.pool_epochs(
        (keys.generation(), provider_keys.generation())
    )
    if account_gen == provider_gen == epoch:
        return False
    rebuilt = provider_gen != epoch and _ensure_provider_scope(pool, database_url, provider)
    if account_gen == epoch:
        return rebuilt
    with transaction(database_url) as session:
        # Waits for a dispatch round in flight to commit, so its attempts are read too;
        # rounds wait for this rebuild in turn (they take the same lock).
        lock_account_pool(session, account_id)
        epoch, (account_gen,) = pool.pool_epochs((keys.generation(),))
        if account_gen == epoch:
            return rebuilt  # another process rebuilt it while we waited
        rows = session.execute(
            select(
                CallAttempt.id,
                CallAttempt.campaign_id,
                CallAttempt.lease_expires_at,
                CallAttempt.from_e164,
            ).where(
                CallAttempt.account_id == account_id,
                CallAttempt.status.in_(LIVE_ATTEMPT_STATUSES),
            )
        ).all()
        pipe = pool.redis.pipeline(transaction=True)
        for attempt_id, campaign_id, expires, from_e164 in rows:
            score = int(expires.timestamp() * 1000)
            for key in release_keys(account_id, campaign_id, from_e164):
                pipe.zadd(key, {str(attempt_id): score}, nx=True)
        _rebuild_dial_windows(session, pipe, account_id)
        pipe.set(keys.generation(), epoch)
        pipe.execute()
        if account_gen is not None or rows:
            # Slots of requests sent in the last window may be gone with the lost writes.
            # (A pool never built, with nothing live, had nothing to lose.)
            account = session.get_one(Account, account_id)
            running = session.scalars(
                select(Campaign).where(
                    Campaign.account_id == account_id,
                    Campaign.status == CampaignStatus.RUNNING,
                    Campaign.cps.is_not(None),
                )
            ).all()
            windows = {send_window(keys.account_sends(), account.cps)}
            for campaign in running:
                windows.update(send_windows(account, campaign, ProviderLimits()))
            pool.fill_send_windows(sorted(windows, key=lambda w: w.key))
    log.warning(
        "pool_rebuilt", account_id=account_id, leases=len(rows), stale=account_gen is not None
    )
    return True


def _rebuild_dial_windows(session: Session, pipe: Pipeline, account_id: int) -> None:
    """Queue on `pipe` the account's dial windows (`Keys.caller_id_dials`) as the attempts
    of the last day recorded them: one entry per attempt, scored by its creation (ms), kept
    a day like the admission script keeps them. One index range per campaign of the account
    (`ix_call_attempts_campaign_created`)."""
    keys = Keys(account_id)
    rows = session.execute(
        select(CallAttempt.id, CallAttempt.from_e164, CallAttempt.created_at)
        .join(Campaign, Campaign.id == CallAttempt.campaign_id)
        .where(
            Campaign.account_id == account_id,
            CallAttempt.created_at >= func.now() - timedelta(days=1),
        )
    ).all()
    windows: set[str] = set()
    for attempt_id, from_e164, created_at in rows:
        window = keys.caller_id_dials(from_e164)
        pipe.zadd(window, {str(attempt_id): int(created_at.timestamp() * 1000)}, nx=True)
        windows.add(window)
    for window in windows:
        pipe.pexpire(window, DIAL_WINDOW_TTL_MS)


def _ensure_provider_scope(pool: Pool, database_url: str, provider: ProviderLimits) -> bool:
    """Put every account's live attempts back in the provider account's scope if Redis lost
    it or failed over. Returns True if it rebuilt."""
    provider_keys = ProviderKeys()
    with transaction(database_url) as session:
        # Exclusive: waits for every dispatch round in flight (each holds it shared).
        session.execute(select(func.pg_advisory_xact_lock(PROVIDER_LOCK_NAMESPACE, 0)))
        epoch, (generation,) = pool.pool_epochs((provider_keys.generation(),))
        if generation == epoch:
            return False
        rows = session.execute(
            select(CallAttempt.id, CallAttempt.lease_expires_at).where(
                CallAttempt.status.in_(LIVE_ATTEMPT_STATUSES)
            )
        ).all()
        pipe = pool.redis.pipeline(transaction=True)
        for attempt_id, expires in rows:
            score = int(expires.timestamp() * 1000)
            pipe.zadd(provider_keys.pool(), {str(attempt_id): score}, nx=True)
        pipe.set(provider_keys.generation(), epoch)
        pipe.execute()
        if provider.cps is not None and (generation is not None or rows):
            pool.fill_send_windows([send_window(provider_keys.sends(), provider.cps)])
    log.warning("provider_pool_rebuilt", leases=len(rows), stale=generation is not None)
    return True


POOL_LOCK_NAMESPACE = 0x6469616C  # "dial"
"""First key of the PostgreSQL advisory lock that serialises an account's lease writers."""
PROVIDER_LOCK_NAMESPACE = 0x70726F76  # "prov"
"""First key (second: 0) of the advisory lock on the provider account's scope: dispatch
rounds hold it shared, its rebuild exclusive."""


def lock_account_pool(session: Session, account_id: int) -> None:
    """Take the account's pool lock, and the provider account's shared (in that statement,
    the provider's first, the order a rebuild takes them in), until the session's
    transaction ends (`pg_advisory_xact_lock`). Dispatch rounds and pool rebuilds hold
    them, so a rebuild never reads the live attempts while a round's new attempts are still
    uncommitted."""
    session.execute(
        select(
            func.pg_advisory_xact_lock_shared(PROVIDER_LOCK_NAMESPACE, 0),
            func.pg_advisory_xact_lock(POOL_LOCK_NAMESPACE, account_id),
        )
    )


def try_lock_account_pool(session: Session, account_id: int) -> bool:
    """`lock_account_pool` without waiting (`pg_try_advisory_xact_lock`): False when a
    dispatch round or a rebuild holds it now."""
    return bool(
        session.scalar(select(func.pg_try_advisory_xact_lock(POOL_LOCK_NAMESPACE, account_id)))
    )
