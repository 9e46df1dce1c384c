"""The reconciler: rebuild an account's pool from PostgreSQL when Redis has lost it.

PostgreSQL is the record of which calls are live; Redis only mirrors it for speed. A
generation key, written when the pool is (re)built, tells whether Redis still holds the
mirror: after a restart or a `FLUSHALL` it is gone, and every live attempt's lease is added
back (with its recorded expiry) before the pacer dispatches anything.
"""

from __future__ import annotations

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.pool import Keys, Pool
from dialer.pool.leases import release_keys
from models import LIVE_ATTEMPT_STATUSES, CallAttempt, Campaign, transaction

log = structlog.get_logger(__name__)


def ensure_pool(pool: Pool, database_url: str, account_id: int) -> bool:
    """Rebuild the account's leases if Redis lost them. Returns True if it rebuilt.

    Cheap when nothing was lost: one `EXISTS`.
    """
    keys = Keys(account_id)
    if pool.redis.exists(keys.generation()):
        return False
    with transaction(database_url) as session:
        # Waits for a dispatch round in flight to commit, so its attempts are read too;
        # rounds wait for this rebuild in turn (they take the same lock).
        lock_account_pool(session, account_id)
        if pool.redis.exists(keys.generation()):
            return False  # another process rebuilt it while we waited
        rows = session.execute(
            select(
                CallAttempt.id,
                CallAttempt.campaign_id,
                CallAttempt.lease_expires_at,
                Campaign.caller_id_id,
            )
            .join(Campaign, Campaign.id == CallAttempt.campaign_id)
            .where(
                CallAttempt.account_id == account_id,
                CallAttempt.status.in_(LIVE_ATTEMPT_STATUSES),
            )
        ).all()
        pipe = pool.redis.pipeline(transaction=True)
        for attempt_id, campaign_id, expires, caller_id_id in rows:
            score = int(expires.timestamp() * 1000)
            for key in release_keys(account_id, campaign_id, caller_id_id):
                pipe.zadd(key, {str(attempt_id): score}, nx=True)
        pipe.set(keys.generation(), "1", nx=True)
        pipe.execute()
    log.warning("pool_rebuilt", account_id=account_id, leases=len(rows))
    return True


POOL_LOCK_NAMESPACE = 0x6469616C  # "dial"
"""First key of the PostgreSQL advisory lock that serialises an account's lease writers."""


def lock_account_pool(session: Session, account_id: int) -> None:
    """Take the account's pool lock until the session's transaction ends
    (`pg_advisory_xact_lock`). Dispatch rounds and pool rebuilds hold it, so a rebuild never
    reads the live attempts while a round's new attempts are still uncommitted."""
    session.execute(select(func.pg_advisory_xact_lock(POOL_LOCK_NAMESPACE, account_id)))


def try_lock_account_pool(session: Session, account_id: int) -> bool:
    """`lock_account_pool` without waiting (`pg_try_advisory_xact_lock`): False when a
    dispatch round or a rebuild holds it now."""
    return bool(
        session.scalar(select(func.pg_try_advisory_xact_lock(POOL_LOCK_NAMESPACE, account_id)))
    )
