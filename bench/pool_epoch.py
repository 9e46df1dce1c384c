"""Benchmark the pacer's per-round failover check (`dialer.pool.reconcile.ensure_pool` when
nothing was lost): one pipeline of `MGET` (the two generation keys) and `INFO server
replication` (the epoch).

Prints the check's cost in microseconds per round (median and p99 of `--rounds` checks) and
in Redis commands (2, one round trip), next to a `PING` round trip measured the same way in
the same process (the floor of any check that asks Redis), and their ratio: these machines
are shared and noisy, so the ratio is the figure to compare.

Writes the generation keys of one scratch account id (`--account`, deleted at the end) in
Redis database `--db`; no database is needed (the check does not read PostgreSQL unless the
pool must be rebuilt).

Usage: python -m bench.pool_epoch [--rounds N] [--db DB] [--account ID]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import redis

from dialer.pool import Keys, Pool, ProviderKeys


def _timed(check: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        check()
        out.append((time.perf_counter() - started) * 1_000_000)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--db", type=int, default=14)
    parser.add_argument("--account", type=int, default=999_999_001)
    args = parser.parse_args()
    client = redis.Redis(db=args.db)
    pool = Pool(client)
    keys = (Keys(args.account).generation(), ProviderKeys(f"bench{args.account}").generation())
    epoch, _ = pool.pool_epochs(())
    client.set(keys[0], epoch)
    client.set(keys[1], epoch)
    try:

        def check() -> None:
            current, generations = pool.pool_epochs(keys)
            assert all(g == current for g in generations)

        _timed(check, 200)  # warm the connection
        epoch_us = _timed(check, args.rounds)
        ping_us = _timed(client.ping, args.rounds)
    finally:
        client.delete(*keys)
    p99 = int(args.rounds * 0.99)
    for name, figures in (("epoch check", epoch_us), ("PING", ping_us)):
        print(f"{name:12} median {statistics.median(figures):7.1f} µs  p99 {figures[p99]:7.1f} µs")
    ratio = statistics.median(epoch_us) / statistics.median(ping_us)
    print(f"epoch check: 2 Redis commands, 1 round trip; {ratio:.2f}x a PING (median)")


if __name__ == "__main__":
    main()
