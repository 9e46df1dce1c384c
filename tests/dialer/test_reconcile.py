"""The reconciler: an account's pool rebuilt from PostgreSQL after Redis lost it."""

from __future__ import annotations

import time
from datetime import timedelta

import redis

from dialer.pool import Keys, ProviderKeys
from dialer.pool.leases import ProviderLimits, release_keys, send_window
from dialer.pool.reconcile import ensure_pool
from dialer.runtime import Runtime
from models import Account, AttemptStatus, CampaignStatus, JobStatus, transaction, utcnow
from tests.factories import make_account, make_attempt, make_caller_id, make_campaign, make_job

LIVE = (AttemptStatus.DIALING, AttemptStatus.PLACING, AttemptStatus.RINGING)
FINAL = (AttemptStatus.COMPLETED, AttemptStatus.NOT_PLACED)


def seed(runtime: Runtime) -> tuple[int, dict[int, tuple[list[str], int]], list[int], int]:
    """Two campaigns (two caller IDs) of one account with live and final attempts, and a
    live attempt of another account.

    Returns:
        The account id; live attempt id -> (its scope keys, its lease expiry in ms); the
        final attempt ids; the other account's live attempt id.
    """
    live: dict[int, tuple[list[str], int]] = {}
    final: list[int] = []
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session)
        for n, e164 in enumerate(("+15005550006", "+15005550007")):
            caller_id = make_caller_id(session, account, e164)
            campaign = make_campaign(
                session, account, caller_id=caller_id, status=CampaignStatus.RUNNING
            )
            keys = release_keys(account.id, campaign.id, caller_id.e164)
            for i, status in enumerate(LIVE + FINAL):
                job = make_job(session, campaign, f"+1212555{n}{i:03d}", status=JobStatus.DONE)
                # Distinct expiries, to the millisecond: each must come back as recorded.
                expires = utcnow() + timedelta(seconds=60 + 10 * i + n, milliseconds=7 * i)
                attempt = make_attempt(session, job, status=status, lease_expires_at=expires)
                if status in LIVE:
                    live[attempt.id] = (keys, int(expires.timestamp() * 1000))
                else:
                    final.append(attempt.id)
        other = make_account(session, "other")
        other_campaign = make_campaign(session, other, status=CampaignStatus.RUNNING)
        other_job = make_job(session, other_campaign, "+12125559999")
        other_attempt = make_attempt(session, other_job, status=AttemptStatus.RINGING).id
        return account.id, live, final, other_attempt


def test_a_flushed_pool_is_rebuilt_with_every_live_lease_and_its_recorded_expiry(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    account_id, live, final, other_attempt = seed(runtime)
    redis_client.flushdb()  # a Redis restart without persistence
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is True
    keys = Keys(account_id)
    assert redis_client.exists(keys.generation())
    for attempt_id, (scope_keys, expires_ms) in live.items():
        for key in scope_keys:
            assert redis_client.zscore(key, str(attempt_id)) == expires_ms, (attempt_id, key)
    assert runtime.pool.live(keys.account_pool()) == len(live)
    held = {int(m) for m in redis_client.zrange(keys.account_pool(), 0, -1)}
    assert held.isdisjoint(final)
    assert other_attempt not in held


def test_a_second_call_is_a_no_op(runtime: Runtime, redis_client: redis.Redis) -> None:
    account_id, live, _, _ = seed(runtime)
    redis_client.flushdb()
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is True
    # A lease released after the rebuild stays released: the pool is not rebuilt again.
    released, (scope_keys, _) = next(iter(live.items()))
    runtime.pool.release(str(released), scope_keys, Keys(account_id).wake())
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is False
    assert runtime.pool.live(Keys(account_id).account_pool()) == len(live) - 1
    for key in scope_keys:
        assert redis_client.zscore(key, str(released)) is None


def test_an_account_with_nothing_live_gets_an_empty_pool_and_a_generation(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    with transaction(runtime.settings.database_url) as session:
        account_id = make_account(session).id
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is True
    assert redis_client.exists(Keys(account_id).generation())
    assert runtime.pool.live(Keys(account_id).account_pool()) == 0
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is False


def test_the_provider_accounts_scope_is_rebuilt_with_every_accounts_live_leases(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    account_id, live, _, other_attempt = seed(runtime)
    redis_client.flushdb()
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is True
    provider = ProviderKeys()
    assert redis_client.exists(provider.generation())
    held = {int(m) for m in redis_client.zrange(provider.pool(), 0, -1)}
    # The other account's pacer has not run: its live call counts against the provider all
    # the same.
    assert held == {*live, other_attempt}
    # Only the provider's scope lost: the next round finds it missing and it is rebuilt.
    redis_client.delete(provider.generation(), provider.pool())
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id) is True
    assert runtime.pool.live(provider.pool()) == len(live) + 1


def test_a_failover_is_seen_by_the_epoch_and_the_pool_rebuilt_with_full_send_windows(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    """A replica promoted by Sentinel holds the generation keys its master wrote, but may
    lack the master's last writes (replication is asynchronous): the epoch written in the
    generation key differs from the new master's, so the pool is rebuilt from PostgreSQL,
    and the send windows count as full for one window."""
    account_id, live, _, _ = seed(runtime)
    provider = ProviderLimits(cps=5.0)
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id, provider)
    assert not ensure_pool(runtime.pool, runtime.settings.database_url, account_id, provider)
    keys = Keys(account_id)
    # What the promoted replica holds: the generation keys of the old master's epoch, and
    # not the last leases nor the send slots of the last second.
    epoch, _ = runtime.pool.pool_epochs(())
    old_epoch = "0" * 40 + "/" + epoch.split("/")[1]
    redis_client.set(keys.generation(), old_epoch)
    redis_client.set(ProviderKeys().generation(), old_epoch)
    lost, (scope_keys, _) = next(iter(live.items()))
    for key in scope_keys:
        redis_client.zrem(key, str(lost))
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id, provider)
    assert runtime.pool.live(keys.account_pool()) == len(live)
    assert redis_client.get(keys.generation()) == epoch.encode()
    with transaction(runtime.settings.database_url) as session:
        account = session.get_one(Account, account_id)
        windows = [send_window(keys.account_sends(), account.cps)]
    windows.append(send_window(ProviderKeys().sends(), 5.0))
    for window in windows:
        deadline = time.monotonic() + 0.2
        assert runtime.pool.wait_for_send_slot("x", [window], deadline, 5.0) is None, window
    # One window later, sends flow again.
    time.sleep(max(w.seconds for w in windows))
    assert runtime.pool.wait_for_send_slot("x", windows, time.monotonic() + 0.5, 5.0)


def test_the_epoch_check_costs_one_round_trip(runtime: Runtime) -> None:
    """`ensure_pool` with nothing lost or failed over sends one pipeline (MGET, INFO)."""
    account_id, _, _, _ = seed(runtime)
    assert ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
    db = runtime.redis.connection_pool.connection_kwargs["db"]
    with runtime.redis.monitor() as monitor:
        assert not ensure_pool(runtime.pool, runtime.settings.database_url, account_id)
        runtime.redis.echo("checked")
        seen = []
        for command in monitor.listen():  # every database's: keep this test's own
            if int(command["db"]) != db:
                continue
            if command["command"] == "ECHO checked":
                break
            seen.append(command["command"].split()[0].upper())
    seen = [name for name in seen if name not in {"SELECT", "CLIENT", "HELLO"}]  # a new
    # connection's set-up (the monitor holds the one the pool had)
    assert seen == ["MGET", "INFO"]
