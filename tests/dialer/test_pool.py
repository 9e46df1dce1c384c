"""The pool's Lua scripts against a real Redis."""

from __future__ import annotations

import time
import uuid

import redis

from dialer.pool import (
    _RELEASE,
    AcquireResult,
    CallerIdSlot,
    DialClock,
    Keys,
    LeaseRequest,
    Pool,
    ProviderKeys,
    RateLimit,
    Scope,
    SendWindow,
)
from dialer.pool.leases import send_window


def scopes(account_cap: int = 3, campaign_cap: int = 2) -> list[Scope]:
    keys = Keys(1)
    return [Scope(keys.account_pool(), account_cap), Scope(keys.campaign_pool(7), campaign_cap)]


def test_caps_hold_in_every_scope(redis_client: redis.Redis) -> None:
    pool = Pool(redis_client)
    results = [pool.acquire(str(i), 60, scopes(), []).result for i in range(4)]
    assert results == [AcquireResult.ACQUIRED] * 2 + [AcquireResult.FULL] * 2
    other_campaign = [Scope(Keys(1).account_pool(), 3), Scope(Keys(1).campaign_pool(8), 5)]
    assert pool.acquire("a", 60, other_campaign, []).result is AcquireResult.ACQUIRED
    full = pool.acquire("b", 60, other_campaign, [])
    assert full.result is AcquireResult.FULL
    assert full.full_scope == Keys(1).account_pool()
    # All or nothing: the refused member holds no lease anywhere.
    assert redis_client.zscore(Keys(1).campaign_pool(8), "b") is None


def test_reacquire_is_idempotent(redis_client: redis.Redis) -> None:
    pool = Pool(redis_client)
    assert pool.acquire("1", 60, scopes(), []).result is AcquireResult.ACQUIRED
    assert pool.acquire("1", 60, scopes(), []).result is AcquireResult.ACQUIRED
    assert pool.live(Keys(1).account_pool()) == 1


def test_release_is_idempotent_and_wakes(redis_client: redis.Redis) -> None:
    pool = Pool(redis_client)
    keys = Keys(1)
    pool.acquire("1", 60, scopes(), [])
    scope_keys = [s.key for s in scopes()]
    assert pool.release("1", scope_keys, keys.wake()) == 2
    assert pool.release("1", scope_keys, keys.wake()) == 0
    assert redis_client.llen(keys.wake()) == 1


def test_release_many_frees_every_lease_in_one_round_trip(redis_client: redis.Redis) -> None:
    pool = Pool(redis_client)
    keys = Keys(1)
    scope_keys = [s.key for s in scopes(account_cap=10, campaign_cap=10)]
    for member in ("1", "2", "3"):
        pool.acquire(member, 60, scopes(account_cap=10, campaign_cap=10), [])
    pool.release_many([(m, scope_keys, keys.wake()) for m in ("1", "2")])
    assert redis_client.zrange(keys.account_pool(), 0, -1) == [b"3"]
    assert redis_client.zrange(keys.campaign_pool(7), 0, -1) == [b"3"]
    assert redis_client.llen(keys.wake()) == 2


def test_release_many_loads_a_script_redis_lost(redis_client: redis.Redis) -> None:
    """A Redis that restarted has no scripts: the pipeline's EVALSHA fails, and each lease is
    released one by one, which loads the script again."""
    pool = Pool(redis_client)
    keys = Keys(1)
    scope_keys = [s.key for s in scopes()]
    pool.acquire("1", 60, scopes(), [])
    # A script body this server has never seen stands for one it has lost.
    pool._release = redis_client.register_script(f"{_RELEASE}\n-- {uuid.uuid4()}")
    pool.release_many([("1", scope_keys, keys.wake())])
    assert redis_client.zcard(keys.account_pool()) == 0
    assert redis_client.script_exists(pool._release.sha) == [True]


def test_expired_leases_are_purged(redis_client: redis.Redis) -> None:
    pool = Pool(redis_client)
    assert pool.acquire("1", 0.05, scopes(campaign_cap=1), []).result is AcquireResult.ACQUIRED
    assert pool.acquire("2", 60, scopes(campaign_cap=1), []).result is AcquireResult.FULL
    time.sleep(0.08)
    assert pool.acquire("2", 60, scopes(campaign_cap=1), []).result is AcquireResult.ACQUIRED


def test_gcra_spaces_calls(redis_client: redis.Redis) -> None:
    pool = Pool(redis_client)
    limit = [RateLimit(Keys(1).account_rate(), 10.0)]  # one call every 100 ms
    big = [Scope(Keys(1).account_pool(), 1000)]
    assert pool.acquire("1", 60, big, limit).result is AcquireResult.ACQUIRED
    second = pool.acquire("2", 60, big, limit)
    assert second.result is AcquireResult.RATE_LIMITED
    assert 0.05 < second.wait_s <= 0.1
    # A refused call takes no lease.
    assert redis_client.zscore(Keys(1).account_pool(), "2") is None
    time.sleep(second.wait_s + 0.005)
    assert pool.acquire("2", 60, big, limit).result is AcquireResult.ACQUIRED


def test_rate_over_one_second_never_exceeds_limit(redis_client: redis.Redis) -> None:
    pool = Pool(redis_client)
    limit = [RateLimit(Keys(1).account_rate(), 50.0)]
    big = [Scope(Keys(1).account_pool(), 10_000)]
    granted: list[float] = []
    deadline = time.monotonic() + 1.0
    i = 0
    while time.monotonic() < deadline:
        got = pool.acquire(str(i), 60, big, limit)
        if got.result is AcquireResult.ACQUIRED:
            granted.append(time.monotonic())
            i += 1
        else:
            time.sleep(got.wait_s)
    # Never more than the limit (+1 for a closed window); fewer only if this loop is starved.
    assert 30 <= len(granted) <= 51


def test_a_send_window_holds_a_slot_until_one_window_after_the_answer(
    redis_client: redis.Redis,
) -> None:
    pool = Pool(redis_client)
    window = [SendWindow(Keys(1).account_sends(), 2, 0.3)]
    deadline = time.monotonic() + 5
    first = pool.wait_for_send_slot("1", window, deadline, hold_s=60)
    second = pool.wait_for_send_slot("2", window, deadline, hold_s=60)
    assert first is not None and second is not None
    # Full, and neither request answered: the third would wait for their whole hold.
    assert pool.wait_for_send_slot("3", window, time.monotonic() + 0.5, hold_s=60) is None
    pool.sent(first)
    started = time.monotonic()
    third = pool.wait_for_send_slot("3", window, deadline, hold_s=60)
    # The first slot lapsed one window (0.3 s) after its answer, computed, not polled.
    assert third is not None
    assert 0.2 < time.monotonic() - started < 0.45
    assert redis_client.zcard(Keys(1).account_sends()) == 2


def test_a_full_window_in_any_scope_refuses_in_every_scope(redis_client: redis.Redis) -> None:
    pool = Pool(redis_client)
    keys = Keys(1)
    wide = SendWindow(keys.account_sends(), 10, 1.0)
    narrow = SendWindow(keys.campaign_sends(7), 1, 1.0)
    assert pool.wait_for_send_slot("1", [wide, narrow], time.monotonic() + 1, 60) is not None
    assert pool.wait_for_send_slot("2", [wide, narrow], time.monotonic() + 0.2, 60) is None
    assert redis_client.zcard(keys.account_sends()) == 1  # the refused one took nothing


def test_send_windows_never_allow_more_than_the_limit_in_a_second() -> None:
    for cps in (1.0, 2.0, 10.0, 50.0, 100.0, 250.0):  # Twilio's limits: whole calls/s
        assert send_window("k", cps) == SendWindow("k", int(cps), 1.0)
    for cps in (0.5, 1.5, 49.5):
        window = send_window("k", cps)
        assert window.seconds >= 1.0 and window.calls <= cps * window.seconds, cps


def test_a_batch_takes_leases_in_order_as_single_acquisitions_would(
    redis_client: redis.Redis,
) -> None:
    pool = Pool(redis_client)
    keys = Keys(1)
    account = Scope(keys.account_pool(), 4)
    small, large = Scope(keys.campaign_pool(7), 1), Scope(keys.campaign_pool(8), 10)
    limit = [RateLimit(keys.account_rate(), 10.0)]  # one call every 100 ms

    def request(member: str, campaign: Scope) -> LeaseRequest:
        return LeaseRequest(member, 60, [account, campaign], limit, own_scope=campaign.key)

    batch = [request("1", small), request("2", small), request("3", large)]
    batch += [request("4", large), request("5", large), request("6", large)]
    got = pool.acquire_many(batch, horizon_s=0.25)
    # Campaign 7 is full after one: its second is refused and the batch goes on; the
    # account's CPS slots run out past the horizon (0, 100, 200 ms booked): the batch stops.
    assert [g.result for g in got] == [
        AcquireResult.ACQUIRED,
        AcquireResult.FULL,
        AcquireResult.ACQUIRED,
        AcquireResult.ACQUIRED,
        AcquireResult.RATE_LIMITED,
    ]
    assert got[1].full_scope == small.key
    assert [round(g.delay_s, 1) for g in got if g.result is AcquireResult.ACQUIRED] == [
        0.0,
        0.1,
        0.2,
    ]
    assert 0 < got[4].wait_s <= 0.1
    assert set(redis_client.zrange(keys.account_pool(), 0, -1)) == {b"1", b"3", b"4"}
    # The account is full after one more: the batch stops at its first refusal there.
    time.sleep(0.35)
    got = pool.acquire_many([request("4", large), request("7", large), request("8", large)])
    assert [g.result for g in got] == [
        AcquireResult.ACQUIRED,  # already held: no second lease, no CPS slot
        AcquireResult.ACQUIRED,
        AcquireResult.FULL,
    ]
    assert got[2].full_scope == account.key
    assert redis_client.zcard(keys.account_pool()) == 4


def test_a_release_in_one_account_wakes_a_pacer_waiting_for_the_provider_scope(
    redis_client: redis.Redis,
) -> None:
    pool = Pool(redis_client)
    provider = ProviderKeys()
    a, b = Keys(1), Keys(2)
    a_scopes = [Scope(a.account_pool(), 5), Scope(provider.pool(), 1)]
    assert pool.acquire("1", 60, a_scopes, []).result is AcquireResult.ACQUIRED
    full = pool.acquire("2", 60, [Scope(b.account_pool(), 5), Scope(provider.pool(), 1)], [])
    assert (full.result, full.full_scope) == (AcquireResult.FULL, provider.pool())
    pool.wait_for_provider(b.wake())
    assert pool.release("1", [s.key for s in a_scopes], a.wake()) == 2
    assert redis_client.lrange(b.wake(), 0, -1) == [b"1"]
    assert redis_client.llen(a.wake()) == 1
    assert redis_client.scard(provider.waiters()) == 0  # one release, one waiter woken


def _caller(e164: str, per_minute: int | None, per_day: int | None, cap: int = 100) -> CallerIdSlot:
    keys = Keys(1)
    scope = Scope(keys.caller_id_pool(e164), cap)
    return CallerIdSlot(e164, scope, keys.caller_id_dials(e164), per_minute, per_day)


def test_a_caller_id_at_its_limit_is_skipped_and_the_wait_is_until_its_oldest_call_leaves(
    redis_client: redis.Redis,
) -> None:
    pool = Pool(redis_client)
    a, b = _caller("+14155550100", 2, 3), _caller("+12125550100", None, None, cap=1)
    t0 = 1_800_000_000_000

    def batch(
        members: list[str], at_ms: int, *callers: CallerIdSlot
    ) -> list[tuple[str, str | None, float]]:
        requests = [LeaseRequest(m, 60, scopes(99, 99), [], caller_ids=callers) for m in members]
        got = pool.acquire_many(requests, clock=DialClock(at_ms))
        return [(r.result.value, r.caller_id, r.wait_s) for r in got]

    # The least used first (a tie: the first), a live call each; then b is at its cap of one
    # live call and a at its minute's 2: the wait is a's first call leaving the minute.
    assert batch(["1", "2", "3", "4"], t0, a, b) == [
        ("acquired", a.e164, 0.0),
        ("acquired", b.e164, 0.0),
        ("acquired", a.e164, 0.0),
        ("caller_ids_spent", None, 60.0),
    ]
    # 20 s later a alone: its minute opens when the first call leaves it, 40 s on.
    assert batch(["5"], t0 + 20_000, a) == [("caller_ids_spent", None, 40.0)]
    assert batch(["5"], t0 + 60_001, a) == [("acquired", a.e164, 0.0)]
    # Its day's 3 are spent: the wait is until the first call is a day old.
    assert batch(["6"], t0 + 120_000, a) == [("caller_ids_spent", None, 86_400.0 - 120.0)]
    assert batch(["6"], t0 + 86_400_001, a) == [("acquired", a.e164, 0.0)]
    # Preferred numbers are tried in order before the least used.
    preferred = LeaseRequest("7", 60, scopes(99, 99), [], caller_ids=(a, b), preferred=1)
    [got] = pool.acquire_many([preferred], clock=DialClock(t0 + 86_400_002))
    assert (got.result, got.caller_id) == (AcquireResult.ACQUIRED, a.e164)
