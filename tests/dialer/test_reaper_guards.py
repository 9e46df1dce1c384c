"""The reaper's guards: one pass at a time, and leases of rounds that died are reclaimed
only when no round can still commit them."""

from __future__ import annotations

import threading

import redis
from sqlalchemy import func, select, text

from dialer.dispatch.reaper import LOCK_KEY, ReapReport, lock_ttl_s, reap, release_leaked
from dialer.pool import Keys, Scope
from dialer.pool.reconcile import POOL_LOCK_NAMESPACE
from dialer.runtime import Runtime
from dialer.settings import Settings
from models import CampaignStatus, transaction
from tests.conftest import REDIS_URL
from tests.factories import make_account, make_campaign
from tests.support import wait_until


def _runtime(database_url: str) -> Runtime:
    return Runtime(Settings(database_url=database_url, redis_url=REDIS_URL))


def test_a_second_pass_is_skipped_while_one_runs(
    committed_db: str, redis_client: redis.Redis
) -> None:
    runtime = _runtime(committed_db)
    redis_client.set(LOCK_KEY, "another pass", px=60_000)
    report = reap(runtime, lambda ids: None)
    assert report.skipped
    redis_client.delete(LOCK_KEY)
    assert not reap(runtime, lambda ids: None).skipped
    assert redis_client.get(LOCK_KEY) is None  # released at the end of the pass


def test_a_stalled_pass_loses_the_lock_within_its_ttl_and_stops_when_it_wakes(
    committed_db: str, redis_client: redis.Redis
) -> None:
    """A pass stalled on a statement that does not return (its host cut off from
    PostgreSQL with the connection held open) does not keep every later pass out: its lock
    lapses `lock_ttl_s` after its last renewal, the next pass runs, and the stalled pass,
    once it wakes, stops without touching the other's lock."""
    runtime = Runtime(
        Settings(database_url=committed_db, redis_url=REDIS_URL, twilio_timeout_s=0.5)
    )
    with transaction(committed_db) as session:
        make_campaign(session, make_account(session), status=CampaignStatus.RUNNING)
    reports: list[ReapReport] = []
    with transaction(committed_db) as blocker:
        # The pass's look-up of the account's live attempts waits behind this lock.
        blocker.execute(text("LOCK TABLE call_attempts IN ACCESS EXCLUSIVE MODE"))
        stalled = threading.Thread(target=lambda: reports.append(reap(runtime, lambda ids: None)))
        stalled.start()
        wait_until(lambda: redis_client.exists(LOCK_KEY) == 1, 5, "the pass to take the lock")
        ttl_s = lock_ttl_s(runtime.settings)
        wait_until(lambda: redis_client.exists(LOCK_KEY) == 0, ttl_s + 2, "the lock to lapse")
        redis_client.set(LOCK_KEY, "the next pass", px=60_000)
    stalled.join(10)
    assert not stalled.is_alive()
    assert reports[0].lock_lost and not reports[0].skipped
    assert redis_client.get(LOCK_KEY) == b"the next pass"  # left to its holder
    redis_client.delete(LOCK_KEY)


def test_a_lease_with_no_attempt_row_is_released_only_when_no_round_holds_the_lock(
    committed_db: str, redis_client: redis.Redis
) -> None:
    runtime = _runtime(committed_db)
    with transaction(committed_db) as session:
        account = make_account(session)
        campaign = make_campaign(session, account, status=CampaignStatus.RUNNING)
        account_id, campaign_id = account.id, campaign.id
    keys = Keys(account_id)
    scopes = [Scope(keys.account_pool(), 10), Scope(keys.campaign_pool(campaign_id), 10)]
    # A pacer round took a lease under a reserved attempt id, and died before its commit.
    assert runtime.pool.acquire("987654", 600, scopes, []).result.value == "acquired"
    with transaction(committed_db) as round_in_flight:
        round_in_flight.execute(select(func.pg_advisory_xact_lock(POOL_LOCK_NAMESPACE, account_id)))
        # While a round holds the pool lock, the lease may be about to be committed.
        assert release_leaked(runtime, account_id) == 0
        assert runtime.pool.live(keys.account_pool()) == 1
    assert release_leaked(runtime, account_id) == 1
    assert runtime.pool.live(keys.account_pool()) == 0
    assert runtime.pool.live(keys.campaign_pool(campaign_id)) == 0
