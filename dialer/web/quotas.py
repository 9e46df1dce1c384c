"""What one API key or account may hold of the API, counted in Redis so every API process
shares the count: the key's request rate (GCRA) and the account's `wait` requests held
open at once (leases that expire, so a crashed process frees its slots by itself).

Both take Redis `TIME` inside one Lua script, as the pool does (`dialer.pool`): the API
processes' clocks never enter the count.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from dialer.errors import TooManyRequestsError

_RATE = """
-- KEYS[1]: the key's theoretical arrival time (µs); ARGV: interval µs, burst
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * tonumber(ARGV[2])
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"""

_TAKE_WAITER = """
-- KEYS[1]: the account's waiters (member -> lease expiry, ms); ARGV: member, cap, lease ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

WAITER_LEASE_S = 60.0
"""A waiter's slot expires this long after it was taken (the longest `wait`, 30 s, with a
margin), so a process that dies holding one leaks it for at most a minute."""
WAITER_RETRY_AFTER_S = 1
"""`Retry-After` of `too_many_waiters`: a slot frees as soon as any waiting call ends."""


class RequestQuotas:
    """The API's per-key rate limit and per-account waiter cap, on `client`.

    `rate_per_s` (requests per second, sustained) and `burst` (requests at once above it)
    are `Settings.rate_limit_per_s` and `rate_limit_burst`; `max_waiters` is
    `Settings.max_waiters_per_account`.
    """

    def __init__(
        self, client: redis.Redis, *, rate_per_s: float, burst: int, max_waiters: int
    ) -> None:
        self._client = client
        self._interval_us = max(1, round(1_000_000 / rate_per_s))
        self._burst = burst
        self._max_waiters = max_waiters
        self._rate = client.register_script(_RATE)
        self._take_waiter = client.register_script(_TAKE_WAITER)

    def admit(self, key_id: int) -> None:
        """Count one request of API key `key_id`.

        Raises:
            TooManyRequestsError: `rate_limited`, with the seconds until one more request
                fits (rounded up).
        """
        key = f"api:rate:{key_id}"
        wait_us = int(self._rate(keys=[key], args=[self._interval_us, self._burst]))
        if wait_us > 0:
            raise TooManyRequestsError(
                "rate_limited",
                "too many requests with this API key; try again after Retry-After seconds",
                max(1, math.ceil(wait_us / 1_000_000)),
            )

    @contextmanager
    def waiter(self, account_id: int) -> Iterator[None]:
        """Hold one of the account's `wait` slots while the block runs.

        Raises:
            TooManyRequestsError: `too_many_waiters` (all `max_waiters` slots are held),
                raised before the block runs.
        """
        key = f"api:waiters:{account_id}"
        member = uuid.uuid4().hex
        taken = self._take_waiter(
            keys=[key], args=[member, self._max_waiters, int(WAITER_LEASE_S * 1000)]
        )
        if not int(taken):
            raise TooManyRequestsError(
                "too_many_waiters",
                f"this account holds all its {self._max_waiters} requests with `wait` open; "
                "send it without `wait` and read GET /v1/calls/{id}, or try again",
                WAITER_RETRY_AFTER_S,
            )
        try:
            yield
        finally:
            self._client.zrem(key, member)
