"""Pool throughput: acquire+release pairs per second, from 1 client and from 8 concurrent
clients, against a bare Redis `SET` loop in the same run (the ratio is what to compare
across machines).

Usage: python -m bench.pool [--seconds S] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import redis

from dialer.pool import AcquireResult, Keys, Pool, ProviderKeys, RateLimit, Scope

ACCOUNT = 990_001


def acquire_release(url: str, seconds: float, worker: int) -> int:
    client = redis.Redis.from_url(url)
    pool = Pool(client)
    keys = Keys(ACCOUNT)
    provider = ProviderKeys()
    # The scopes and limits of a pacer's lease (`dialer.pool.leases`), the provider
    # account's included.
    scopes = [
        Scope(keys.account_pool(), 1_000_000),
        Scope(provider.pool(), 1_000_000),
        Scope(keys.campaign_pool(1), 1_000_000),
    ]
    limits = [RateLimit(keys.account_rate(), 1e9), RateLimit(provider.rate(), 1e9)]
    release_keys = [s.key for s in scopes]
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        member = f"{worker}:{n}"
        got = pool.acquire(member, 60, scopes, limits)
        assert got.result is AcquireResult.ACQUIRED, got
        pool.release(member, release_keys, keys.wake())
        n += 1
    client.delete(keys.wake())
    return n


def bare_set(url: str, seconds: float, worker: int) -> int:
    client = redis.Redis.from_url(url)
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        client.set(f"bench:set:{worker}", n)
        n += 1
    return n


def rate(fn: object, url: str, seconds: float, clients: int) -> float:
    with mp.Pool(clients) as workers:
        counts = workers.starmap(fn, [(url, seconds, w) for w in range(clients)])  # type: ignore[arg-type]
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    redis.Redis.from_url(args.redis_url).flushdb()
    print(f"{'clients':>8} {'acquire+release/s':>18} {'bare SET/s':>12} {'ratio':>7}")
    for clients in (1, 8):
        pairs = rate(acquire_release, args.redis_url, args.seconds, clients)
        sets = rate(bare_set, args.redis_url, args.seconds, clients)
        print(f"{clients:>8} {pairs:>18,.0f} {sets:>12,.0f} {pairs / sets:>7.2f}")
    redis.Redis.from_url(args.redis_url).flushdb()


if __name__ == "__main__":
    main()
