"""The shared concurrency pool and calls-per-second limiter, in Redis.

One sorted set per scope (the provider account, account, campaign, caller ID): member =
attempt id, score = lease expiry in milliseconds of Redis `TIME`. `acquire.lua` takes a
batch of leases in order (one pacer round): it checks every scope's cap (purging lapsed
leases from a scope that looks full) and every GCRA limiter, and adds each lease to all its
scopes atomically; release is idempotent and pushes to the account's wake list, on which
the pacer sleeps, and to that of one pacer waiting for room in the provider's scope. All
keys of an account share the hash tag `{a<account id>}`; the provider account's scope and
limiters (`ProviderKeys`, shared by every account, so all tenants together stay within
what the provider granted) have their own, so an admission touches two hash slots: the
pool needs one Redis, not Redis Cluster.

The GCRA limiters pace the pacer's bookings; the CPS limit as the provider counts it is kept
at the moment each create request leaves, by send windows (`send_slot.lua`): a sliding
window whose slots count until the provider has answered, plus the window's length.

Failover, and what `min-replicas-to-write 1` does and does not guarantee. Redis replicates
asynchronously: a write is acknowledged to the client before any replica has it, so a
replica promoted by Sentinel can miss the master's last writes: leases taken (the pool
would admit above its caps), send slots (a CPS burst), the pacer's fencing counter
(`INCR` going back). Releases lost are harmless: the lease lapses. With
`min-replicas-to-write 1` and `min-replicas-max-lag 10` the master refuses writes
(`NOREPLICAS`) while no replica has acknowledged the replication stream within the last
10 s (replicas report once a second). What that guarantees: a master cut off from every
replica stops admitting within about 10 s, so the writes a partitioned old master accepts
after the failover, which are thrown away when it rejoins as a replica, are bounded by
that lag. What it does not guarantee: that an acknowledged write reached a replica. The
check is about the replicas' last acknowledgement, not about this write, so the writes
of the last second or so before a crash can still be lost; `WAIT` does not close that
either (its documentation: it "does not make Redis a strongly consistent store", a write
acknowledged by enough replicas can still be lost if the failover promotes one that did not
receive it), and the Redis Cluster specification says the same of failover in general
("Redis Cluster is not able to guarantee strong consistency ... acknowledged writes can
be lost"). So nothing here trusts Redis to keep a write: PostgreSQL is the record of which
calls are live, and before each round the pacer compares the epoch the pool was built in
(`Pool.pool_epochs`: run id and replication id) with the server's, and rebuilds the pool
from PostgreSQL and counts the send windows full for one window when they differ
(`dialer.pool.reconcile`); the pacer's tokens never go below the highest PostgreSQL has
recorded. A round in flight during the failover is counted: the rebuild takes the
account's pool lock, which a round holds until it commits. What remains: a failover
between the pacer's check and its admission (within one round) lets that round see a
pool missing the lost leases; the next round's check repairs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files

import redis
from redis.exceptions import NoScriptError

_ACQUIRE = files("dialer.pool").joinpath("lua/acquire.lua").read_text()
_RELEASE = files("dialer.pool").joinpath("lua/release.lua").read_text()
_SEND_SLOT = files("dialer.pool").joinpath("lua/send_slot.lua").read_text()


class AcquireResult(StrEnum):
    ACQUIRED = "acquired"
    FULL = "full"
    RATE_LIMITED = "rate_limited"
    POOL_LOST = "pool_lost"
    """Redis lost the pool (restart, flush): rebuild it (`dialer.pool.reconcile`) first."""
    CALLER_IDS_SPENT = "caller_ids_spent"
    """No caller ID of the request's candidates may present another call now (its
    concurrency cap, or its minute's or day's limit): the contact waits."""
    FENCED = "fenced"
    """The pacer's lock no longer holds its fencing token: another pacer took over."""


@dataclass(frozen=True, slots=True)
class Fence:
    """A pacer's lock and the fencing token it must hold for an admission to take leases
    (`dialer.dispatch.pacer.PacerLock`)."""

    lock_key: str
    token: str


@dataclass(frozen=True, slots=True)
class Scope:
    """One concurrency scope: its Redis key and its cap (live calls)."""

    key: str
    cap: int


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One calls-per-second pace (GCRA): its Redis key and rate (calls/s); calls are booked
    exactly one interval apart."""

    key: str
    cps: float


@dataclass(frozen=True, slots=True)
class SendWindow:
    """A CPS limit as the provider counts it: at most `calls` create requests in any sliding
    window of `seconds`; its Redis key (a sorted set of send slots)."""

    key: str
    calls: int
    seconds: float


@dataclass(frozen=True, slots=True)
class SendSlot:
    """A send slot granted in every window of `windows` (`Pool.wait_for_send_slot`).

    Attributes:
        member: the slot's member in each window (the attempt id).
        windows: the windows it counts in.
        granted_us: Redis `TIME` at the grant, µs.
        asked_at: `time.monotonic()` just before the grant was asked for.
    """

    member: str
    windows: tuple[SendWindow, ...]
    granted_us: int
    asked_at: float


@dataclass(frozen=True, slots=True)
class CallerIdSlot:
    """A caller ID a call may present (`LeaseRequest.caller_ids`).

    Attributes:
        e164: the number (what `Acquisition.caller_id` names).
        scope: its live calls and their cap (`UNBOUNDED` when it has none): the lease is
            taken in it too when it is chosen.
        window_key: its dial window, a sorted set of its admissions (member = attempt id,
            score = the dial clock's ms), kept one day.
        per_minute, per_day: most calls it may present in any sliding minute and day
            (None: no limit).
    """

    e164: str
    scope: Scope
    window_key: str
    per_minute: int | None = None
    per_day: int | None = None


@dataclass(frozen=True, slots=True)
class DialClock:
    """The clock a caller ID's minute and day are measured by: now in ms (None: Redis
    `TIME`), and a minute's and a day's length in ms (shorter in development, scaled by
    `Settings.dev_time_scale`, so the limits are seen in a demo's minutes)."""

    now_ms: int | None = None
    minute_ms: int = 60_000
    day_ms: int = 86_400_000


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """One lease to take (`Pool.acquire_many`): its member (the attempt id), length in
    seconds, the scopes it counts in (the account's first) and the CPS limits it is booked
    against. `own_scope`: the key of the one scope (its campaign's) whose being full refuses
    only the requests in it, not the rest of the batch. `caller_ids`: the numbers it may
    present, the first `preferred` of them tried in order, then the least used of the
    others (`acquire.lua`); empty: it presents none of the pool's choosing."""

    member: str
    lease_s: float
    scopes: list[Scope]
    limits: list[RateLimit]
    own_scope: str | None = None
    caller_ids: tuple[CallerIdSlot, ...] = ()
    preferred: int = 0


@dataclass(frozen=True, slots=True)
class Acquisition:
    """What `Pool.acquire` decided.

    Attributes:
        result: acquired, or why not.
        full_scope: the key of the scope at its cap (when FULL).
        wait_s: seconds until the CPS limiter admits the next call (when RATE_LIMITED).
        delay_s: seconds from now to the call's booked CPS slot (when ACQUIRED): the
            create request must not leave before it.
        caller_id: the caller ID chosen among the request's (when ACQUIRED; None: the
            request had none to choose from).

    With CALLER_IDS_SPENT, `wait_s` is the time until a candidate's minute or day lets
    one more call (0: only a call ending frees one).
    """

    result: AcquireResult
    full_scope: str | None = None
    wait_s: float = 0.0
    delay_s: float = 0.0
    caller_id: str | None = None


class Keys:
    """Key names for one account. Every key carries the account's hash tag."""

    def __init__(self, account_id: int, prefix: str = "dialer") -> None:
        self.tag = f"{prefix}:{{a{account_id}}}"

    def account_pool(self) -> str:
        return f"{self.tag}:pool:account"

    def campaign_pool(self, campaign_id: int) -> str:
        return f"{self.tag}:pool:campaign:{campaign_id}"

    def caller_id_pool(self, e164: str) -> str:
        """Live calls presenting caller ID `e164` (keyed by the number, which every attempt
        records as `from_e164`)."""
        return f"{self.tag}:pool:caller_id:{e164}"

    def caller_id_dials(self, e164: str) -> str:
        """Caller ID `e164`'s admissions of the last day (its minute and day limits)."""
        return f"{self.tag}:dials:caller_id:{e164}"

    def campaign_waiting(self, campaign_id: int) -> str:
        """Why the pacer's last round could not dial the campaign's due contacts (its
        caller IDs spent), while it lasts."""
        return f"{self.tag}:waiting:campaign:{campaign_id}"

    def scopes(self) -> str:
        """A `SCAN MATCH` pattern for every pool scope of the account."""
        return f"{self.tag}:pool:*"

    def account_rate(self) -> str:
        return f"{self.tag}:gcra:account"

    def campaign_rate(self, campaign_id: int) -> str:
        return f"{self.tag}:gcra:campaign:{campaign_id}"

    def account_sends(self) -> str:
        return f"{self.tag}:sends:account"

    def campaign_sends(self, campaign_id: int) -> str:
        return f"{self.tag}:sends:campaign:{campaign_id}"

    def wake(self) -> str:
        return f"{self.tag}:wake"

    def pacer_lock(self) -> str:
        return f"{self.tag}:pacer:lock"

    def pacer_fence(self) -> str:
        return f"{self.tag}:pacer:fence"

    def generation(self) -> str:
        return f"{self.tag}:generation"


class ProviderKeys:
    """Key names of the provider account's scope and limiters, shared by every account."""

    def __init__(self, prefix: str = "dialer") -> None:
        self.tag = f"{prefix}:{{provider}}"

    def pool(self) -> str:
        return f"{self.tag}:pool"

    def rate(self) -> str:
        return f"{self.tag}:gcra"

    def sends(self) -> str:
        return f"{self.tag}:sends"

    def generation(self) -> str:
        return f"{self.tag}:generation"

    def waiters(self) -> str:
        """A set of the wake lists of pacers that found the provider's scope full: each
        release wakes one (`release.lua`), whichever account's lease it frees."""
        return f"{self.tag}:waiters"


class Pool:
    """Lease operations for one Redis. Scripts are loaded once and run by `EVALSHA`."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._send_slot = client.register_script(_SEND_SLOT)
        self._waiters = ProviderKeys().waiters()

    def acquire(
        self,
        member: str,
        lease_s: float,
        scopes: list[Scope],
        limits: list[RateLimit],
        horizon_s: float = 0.0,
        generation_keys: tuple[str, ...] = (),
        fence: Fence | None = None,
    ) -> Acquisition:
        """Take a lease of `lease_s` seconds for `member` in every scope (at least one), or
        in none, and book its CPS slot at most `horizon_s` seconds ahead (`acquire_many`
        with one request)."""
        request = LeaseRequest(member, lease_s, scopes, limits)
        return self.acquire_many([request], horizon_s, generation_keys, fence=fence)[0]

    def acquire_many(
        self,
        requests: list[LeaseRequest],
        horizon_s: float = 0.0,
        generation_keys: tuple[str, ...] = (),
        clock: DialClock = DialClock(),
        fence: Fence | None = None,
    ) -> list[Acquisition]:
        """Take a lease for each request in order, as `acquire` would one after the other,
        in one script run (one Redis round trip, each scope counted and each CPS limit read
        and written once).

        Returns one result per request handled, in order. The batch stops after a
        `RATE_LIMITED` result, and after a `FULL` one whose full scope is not the request's
        `own_scope` (no later request could be taken either); requests after the stop have
        no result. Re-acquiring a member that already holds a lease succeeds without a
        second slot. With `generation_keys`, nothing is taken while any of them is missing:
        the only result is `POOL_LOST`. A request with `caller_ids` is admitted presenting
        one of them that is under its concurrency cap and its minute's and day's limits
        by `clock`, else refused `CALLER_IDS_SPENT` and the batch goes on. With a `fence`,
        nothing is taken unless its lock holds its token: the only result is then `FENCED`.

        Cost: one script run per batch; per caller ID touched, a `ZCARD` of its live
        scope and a trim, `ZCARD` and `ZCOUNT` of its dial window (O(log n) each), once per
        batch however many requests name it, and one `ZADD` per window written.

        Raises:
            ValueError: a request with no scope.
        """
        scope_index: dict[str, int] = {}
        limit_index: dict[str, int] = {}
        caps: list[int] = []
        intervals: list[float] = []
        caller_index: dict[str, int] = {}
        callers: list[CallerIdSlot] = []
        encoded: list[str | int | float] = [len(requests)]
        for request in requests:
            if not request.scopes:
                raise ValueError(f"lease request {request.member} has no scope")
            for scope in request.scopes:
                if scope.key not in scope_index:
                    scope_index[scope.key] = len(caps) + 1
                    caps.append(scope.cap)
            for limit in request.limits:
                if limit.key not in limit_index:
                    limit_index[limit.key] = len(intervals) + 1
                    intervals.append(1_000_000.0 / limit.cps)
            for slot in request.caller_ids:
                if slot.e164 not in caller_index:
                    if slot.scope.key not in scope_index:
                        scope_index[slot.scope.key] = len(caps) + 1
                        caps.append(slot.scope.cap)
                    caller_index[slot.e164] = len(callers) + 1
                    callers.append(slot)
            own = scope_index.get(request.own_scope, 0) if request.own_scope else 0
            encoded += [request.member, int(request.lease_s * 1000), own, len(request.scopes)]
            encoded += [scope_index[s.key] for s in request.scopes]
            encoded.append(len(request.limits))
            encoded += [limit_index[r.key] for r in request.limits]
            encoded += [len(request.caller_ids), min(request.preferred, len(request.caller_ids))]
            encoded += [caller_index[c.e164] for c in request.caller_ids]
        encoded += [clock.now_ms or 0, clock.minute_ms, clock.day_ms, len(callers)]
        for slot in callers:
            encoded += [scope_index[slot.scope.key], slot.per_minute or 0, slot.per_day or 0]
        windows = [slot.window_key for slot in callers]
        keys = [*scope_index, *limit_index, *windows, *generation_keys]
        args: list[str | int | float] = [len(caps), len(intervals), int(horizon_s * 1_000_000)]
        args += caps
        args += intervals
        args += encoded
        if fence is not None:
            keys.append(fence.lock_key)
            args.append(fence.token)
        results = []
        for code, detail, *chosen in self._acquire(keys=keys, args=args):
            if code == 1:
                caller = callers[int(chosen[0]) - 1].e164 if chosen and chosen[0] else None
                results.append(
                    Acquisition(
                        AcquireResult.ACQUIRED,
                        delay_s=int(detail) / 1_000_000.0,
                        caller_id=caller,
                    )
                )
            elif code == 0:
                results.append(Acquisition(AcquireResult.FULL, full_scope=keys[int(detail) - 1]))
            elif code == -2:
                results.append(Acquisition(AcquireResult.POOL_LOST))
            elif code == -3:
                results.append(
                    Acquisition(AcquireResult.CALLER_IDS_SPENT, wait_s=int(detail) / 1_000_000.0)
                )
            elif code == -4:
                results.append(Acquisition(AcquireResult.FENCED))
            else:
                results.append(
                    Acquisition(AcquireResult.RATE_LIMITED, wait_s=int(detail) / 1_000_000.0)
                )
        return results

    def wait_for_send_slot(
        self, member: str, windows: list[SendWindow], deadline: float, hold_s: float
    ) -> SendSlot | None:
        """Block until every send window has room for one more create request, or until
        `deadline` (a `time.monotonic()` value). Returns the slot taken, or None when the
        deadline came first: the request must then not be sent.

        The slot counts for `hold_s` seconds, which must outlast the request's answer by
        the window's length (the send deadline, the provider timeout and the window);
        `sent` shortens it once the answer is in. The pacer books CPS slots when it takes
        leases, but Celery delivers dials with jitter and a request can take a while to
        reach the provider; this check, at the moment of sending, is what keeps every
        window at the provider within the limit. A full window's wait is computed from
        its slots, and slept (one Redis round trip per try, no polling).
        """
        keys = [w.key for w in windows]
        args: list[str | int] = [member, int(hold_s * 1_000_000)]
        args += [w.calls for w in windows]
        while True:
            asked_at = time.monotonic()
            code, detail = self._send_slot(keys=keys, args=args)
            if code == 1:
                return SendSlot(member, tuple(windows), int(detail), asked_at)
            wait_s = int(detail) / 1_000_000.0
            if time.monotonic() + wait_s > deadline:
                return None
            time.sleep(wait_s)

    def sent(self, slot: SendSlot) -> None:
        """The provider answered the slot's request: from now on the slot counts only for
        its window's length. (Its end is measured from the grant's Redis `TIME` plus the
        monotonic time since the grant was asked for, which overstates it a little, never
        understates it.) An ambiguous outcome (no answer) keeps the full hold."""
        elapsed_us = (time.monotonic() - slot.asked_at) * 1_000_000
        pipe = self.redis.pipeline(transaction=False)
        for window in slot.windows:
            until = slot.granted_us + elapsed_us + window.seconds * 1_000_000
            pipe.zadd(window.key, {slot.member: int(until)}, xx=True)
        pipe.execute()

    def hold(self, member: str, lease_s: float, scope_keys: list[str]) -> None:
        """Put `member`'s lease in every scope whatever their caps (a call that exists is
        counted, so the pool's count stays true: a late call that was adopted)."""
        seconds, micros = self.redis.time()
        expiry_ms = int(seconds * 1000 + micros // 1000 + lease_s * 1000)
        pipe = self.redis.pipeline(transaction=True)
        for key in scope_keys:
            pipe.zadd(key, {member: expiry_ms})
        pipe.execute()

    def release(self, member: str, scope_keys: list[str], wake_key: str) -> int:
        """Drop `member`'s lease from every scope; idempotent. Returns scopes that held it.
        A lease freed wakes the account's pacer (`wake_key`) and one pacer waiting for room
        in the provider account's scope (`wait_for_provider`)."""
        keys = [*scope_keys, wake_key, self._waiters]
        return int(self._release(keys=keys, args=[member]))

    def wait_for_provider(self, wake_key: str) -> None:
        """Have the next release of any account wake the pacer sleeping on `wake_key`: its
        round found the provider account's scope full."""
        self.redis.sadd(self._waiters, wake_key)

    def release_many(self, leases: list[tuple[str, list[str], str]]) -> None:
        """`release` for each (member, scope keys, wake key), in one round trip: a pipeline
        of the same script by its SHA (each release stays atomic on its own); when Redis
        has lost the script (a restart), one `release` at a time, which loads it again."""
        if not leases:
            return
        pipe = self.redis.pipeline(transaction=False)
        for member, scope_keys, wake_key in leases:
            keys = [*scope_keys, wake_key, self._waiters]
            pipe.evalsha(self._release.sha, len(keys), *keys, member)
        try:
            pipe.execute()
        except NoScriptError:
            for member, scope_keys, wake_key in leases:
                self.release(member, scope_keys, wake_key)

    def pool_epochs(self, generation_keys: tuple[str, ...]) -> tuple[str, tuple[str | None, ...]]:
        """This Redis's epoch and the values of `generation_keys`, in one round trip.

        The epoch is `<run_id>/<master_replid>` (`INFO server replication`, Redis 7.0+):
        the run id changes whenever the server restarts, the replication id whenever a
        replica is promoted (PSYNC2 keeps the old one as `master_replid2`, which is not
        read), so a generation key holding another epoch, or none, means the pool may miss
        writes its master acknowledged (`dialer.pool.reconcile`).
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.mget(generation_keys)
        pipe.info("server", "replication")
        values, info = pipe.execute()
        epoch = f"{info['run_id']}/{info['master_replid']}"
        return epoch, tuple(v.decode() if v is not None else None for v in values)

    def fill_send_windows(self, windows: list[SendWindow]) -> None:
        """Count every window as full for one window's length from now: after Redis lost
        writes, the slots of requests sent in the last window may be gone, and sending into
        the emptied windows could double the CPS the provider sees. A `refill` member whose
        score is that moment refuses every slot until then (`send_slot.lua`)."""
        seconds, micros = self.redis.time()
        now_us = seconds * 1_000_000 + micros
        pipe = self.redis.pipeline(transaction=True)
        for window in windows:
            pipe.zadd(window.key, {"refill": now_us + int(window.seconds * 1_000_000)})
        pipe.execute()

    def live(self, scope_key: str) -> int:
        """Leases currently held in a scope (lapsed ones included until the scope next
        looks full to `acquire`, which purges them)."""
        return int(self.redis.zcard(scope_key))
