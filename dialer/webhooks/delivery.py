"""Delivering outbox events to the customer's webhook: claim, sign, POST, record.

A try is claimed first (`attempts + 1`, `next_attempt_at` pushed past the try's longest
run), in its own short transaction, with `FOR UPDATE SKIP LOCKED`, so the first-try task
and the sweep never send one event twice at once, and a try whose worker died is picked up
again by the sweep once its claim lapses. The POST runs outside any transaction; its
result is recorded only if the claim is still this try's (`attempts` unchanged).

- 2xx: `delivered`. 410 Gone: `failed`, never tried again. Anything else (another status,
  a 3xx: redirects are not followed, a try past its deadline, a refused connection, an
  address the SSRF rule refuses, an event the try cannot even send): retried after an
  exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and
  Jitter", 2015) for up to `WEBHOOK_MAX_ATTEMPTS` tries within `WEBHOOK_RETRY_WINDOW_S` of
  the event, then `dead`. One event's failure is that event's, recorded on it: the sweep
  goes on with the others.
- Bounded: one try (connect, TLS, sending, the answer's headers and the read of its body)
  has `WEBHOOK_TIMEOUT_S` in all, enforced at every socket operation
  (`_DeadlineBackend`), so a receiver that drips a byte every few seconds is cut off. Of the
  answer at most `ANSWER_MAX_BYTES` raw bytes are read, never decompressed (`Accept-Encoding:
  identity`, and httpcore does not decode): the status is the answer, so a gzip bomb costs
  nothing.
- Per account, at most `WEBHOOK_ACCOUNT_CONCURRENCY` tries are in flight across every
  worker (a Redis semaphore whose entries lapse with the claim): a try of an account at its
  cap is deferred by `DEFER_S` (not counted as a try), so one slow receiver never holds
  every webhook worker and other accounts' events go on.
- SSRF: the host is resolved at delivery, every address must be public
  (`dialer.webhook_url`; not checked with `WEBHOOK_ALLOW_PRIVATE_NETWORKS`), and the
  connection goes to the address that was checked (the URL's host becomes that address;
  `Host` and, for https, the TLS server name and certificate check keep the name), so a
  name that resolves elsewhere a moment later cannot send the request inside.
"""

from __future__ import annotations

import random
import ssl
import time
import typing
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import httpcore
import httpx
import redis
import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from dialer.errors import DialerError
from dialer.metrics import WEBHOOK_DELIVERIES
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.webhook_url import allowed_addresses, check_webhook_url
from dialer.webhooks.keys import signing_secrets
from dialer.webhooks.signing import HEADER, signature_header
from models import WebhookStatus, transaction, utcnow

log = structlog.get_logger(__name__)

USER_AGENT = "campaign-dialer-webhooks/1"
ANSWER_MAX_BYTES = 4096
"""Raw bytes of a receiver's answer after which reading stops (the status is the answer;
reading a short body to its end lets the connection be reused). One network read takes at
most 64 KiB (httpcore's), so that is the most a try holds of any answer."""
DEFER_S = 2.0
"""Seconds a try of an account with all its delivery slots taken waits before it is due
again (about one beat sweep)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed try: the event row's id, what to send, and the claim's fence."""

    id: int
    event_id: str
    account_id: int
    url: str
    body: str
    attempts: int
    """Tries including this one; the result is recorded only while it is unchanged."""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TryResult:
    """What one POST got: the status code (None: no response) and the error, if any."""

    status_code: int | None
    error: str | None = None


_CLAIM = """
UPDATE webhook_events e
SET attempts = e.attempts + 1, next_attempt_at = :until
FROM (
    SELECT id FROM webhook_events
    WHERE status = 'pending' AND next_attempt_at <= :now {only}
      AND NOT account_id = ANY(CAST(:skip AS bigint[]))
    ORDER BY next_attempt_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
) due
WHERE e.id = due.id
RETURNING e.id, e.event_id, e.account_id, e.url, e.body, e.attempts, e.created_at
"""


def try_time_limit_s(settings: Settings) -> float:
    """Seconds one try may run in all: the POST's deadline (`WEBHOOK_TIMEOUT_S`) plus 15 s
    for DNS resolution (the resolver's own timeouts) and its two short transactions. The
    delivery task's soft time limit (`workers.tasks`)."""
    return settings.webhook_timeout_s + 15


def claim_lease_s(settings: Settings) -> float:
    """How long a claim (and the account's delivery slot) holds an event: past the longest a
    try can run, with a margin, so a second try never overlaps a first one still running."""
    return 3 * settings.webhook_timeout_s + 30


def claim(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    event_id: str | None,
    limit: int,
    skip_accounts: Iterable[int] = (),
) -> list[Claimed]:
    """Claim up to `limit` due pending events (only `event_id`, when given; none of the
    accounts `skip_accounts`) for one try."""
    only = "AND event_id = :event_id" if event_id is not None else ""
    until = now + timedelta(seconds=claim_lease_s(settings))
    rows = session.execute(
        text(_CLAIM.format(only=only)),
        {
            "now": now,
            "until": until,
            "limit": limit,
            "event_id": event_id,
            "skip": list(skip_accounts),
        },
    ).all()
    return [Claimed(*row) for row in rows]


_DEFER = """
UPDATE webhook_events SET attempts = attempts - 1, next_attempt_at = :due
WHERE id = :id AND status = 'pending' AND attempts = :attempts
"""


def defer(session: Session, claimed: Claimed, now: datetime) -> None:
    """Give a claimed try back, uncounted, due again in `DEFER_S` (its account's delivery
    slots are all taken)."""
    due = now + timedelta(seconds=DEFER_S)
    session.execute(text(_DEFER), {"due": due, "id": claimed.id, "attempts": claimed.attempts})
    WEBHOOK_DELIVERIES.labels("deferred").inc()
    log.info("webhook_deferred", event_id=claimed.event_id, account_id=claimed.account_id)


_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
"""KEYS[1]: the account's slots (a sorted set, score = expiry in ms of Redis `TIME`);
ARGV: the try's token, the cap, the lease in ms. 1: taken; 0: all taken."""


def _slots_key(account_id: int) -> str:
    return f"dialer:webhooks:inflight:{account_id}"


def _slot_token(claimed: Claimed) -> str:
    return f"{claimed.id}:{claimed.attempts}"


def take_slot(client: redis.Redis, claimed: Claimed, settings: Settings) -> bool:
    """Take one of the account's `WEBHOOK_ACCOUNT_CONCURRENCY` delivery slots for this try
    (it lapses with the claim: `claim_lease_s`); False when all are taken."""
    lease_ms = int(claim_lease_s(settings) * 1000)
    token = _slot_token(claimed)
    cap = settings.webhook_account_concurrency
    taken = client.eval(_TAKE_SLOT, 1, _slots_key(claimed.account_id), token, cap, lease_ms)
    return bool(taken)


def release_slot(client: redis.Redis, claimed: Claimed) -> None:
    """Give the try's delivery slot back (idempotent)."""
    client.zrem(_slots_key(claimed.account_id), _slot_token(claimed))


def retry_delay_s(tries: int, settings: Settings) -> float:
    """Full-jitter delay after failed try `tries` (1-based), seconds."""
    ceiling = min(settings.webhook_retry_cap_s, settings.webhook_retry_base_s * 2 ** (tries - 1))
    return random.uniform(0, ceiling)


def next_status(
    claimed: Claimed, result: TryResult, settings: Settings, now: datetime
) -> tuple[WebhookStatus, datetime | None]:
    """The event's status after this try, and when a pending one is next due."""
    code = result.status_code
    if code is not None and 200 <= code < 300:
        return WebhookStatus.DELIVERED, None
    if code == 410:
        return WebhookStatus.FAILED, None
    due = now + timedelta(seconds=retry_delay_s(claimed.attempts, settings))
    window_end = claimed.created_at + timedelta(seconds=settings.webhook_retry_window_s)
    if claimed.attempts >= settings.webhook_max_attempts or due > window_end:
        return WebhookStatus.DEAD, None
    return WebhookStatus.PENDING, due


_RECORD = """
UPDATE webhook_events
SET status = CAST(:status AS webhook_status),
    next_attempt_at = coalesce(:due, next_attempt_at),
    last_status_code = :code, last_error = :error,
    delivered_at = CASE WHEN :delivered THEN :now ELSE delivered_at END
WHERE id = :id AND status = 'pending' AND attempts = :attempts
"""


def record(
    session: Session, claimed: Claimed, result: TryResult, settings: Settings, now: datetime
) -> WebhookStatus:
    """Store the try's result (if the claim is still this try's) and return the status."""
    status, due = next_status(claimed, result, settings, now)
    session.execute(
        text(_RECORD),
        {
            "status": status.value,
            "delivered": status is WebhookStatus.DELIVERED,
            "due": due,
            "code": result.status_code,
            "error": result.error,
            "now": now,
            "id": claimed.id,
            "attempts": claimed.attempts,
        },
    )
    WEBHOOK_DELIVERIES.labels("retry" if status is WebhookStatus.PENDING else status.value).inc()
    log.info(
        "webhook_try",
        event_id=claimed.event_id,
        attempt=claimed.attempts,
        status=status.value,
        code=result.status_code,
        error=result.error,
    )
    return status


_DEADLINE: ContextVar[float | None] = ContextVar("webhook_try_deadline", default=None)
"""`time.monotonic()` by which the current try must be over (None: no try runs here)."""


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` cut to what is left of the try's deadline; `error` once nothing is left."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the try's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the try's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, its connections bounded by the try's deadline (a receiver
    that answers a byte at a time never outlasts it)."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


@lru_cache(maxsize=1)
def _pool() -> httpcore.ConnectionPool:
    # httpcore, not httpx: no proxies from the environment (the connection must go to the
    # checked address), no redirects (a 3xx is a failed try, never a second request
    # elsewhere) and no content decoding (the body is read raw, never un-gzipped).
    return httpcore.ConnectionPool(
        max_connections=64, max_keepalive_connections=16, network_backend=_DeadlineBackend()
    )


def pinned_request(
    url: str, allow_private: bool
) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """Where to connect for `url`: the URL with its host replaced by the address it resolves
    to now (checked unless `allow_private`), the `Host` header that keeps the name, and the
    request extensions (for https the TLS server name, which the certificate is checked
    against).

    Raises:
        DialerError: `webhook_url_not_allowed`, the URL is refused, its host does not
            resolve, or an address it resolves to is not public (see `dialer.webhook_url`).
        httpx.InvalidURL: the URL cannot be parsed.
    """
    check_webhook_url(url, allow_private=allow_private, resolve=False)
    target = httpx.URL(url)
    addresses = allowed_addresses(target.host, target.port, allow_private=allow_private)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    pinned = target.copy_with(host=addresses[0])
    return pinned, {"Host": target.netloc.decode("ascii")}, extensions


def post(claimed: Claimed, secrets: list[str], settings: Settings) -> TryResult:
    """POST the event's body, signed with `secrets`, to its URL: one try, no redirects, at
    most `WEBHOOK_TIMEOUT_S` from connect to the end of the bounded read of the answer."""
    timeout_s = settings.webhook_timeout_s
    try:
        url, headers, extensions = pinned_request(
            claimed.url, settings.webhook_allow_private_networks
        )
    except DialerError as error:
        return TryResult(None, f"{error.code}: {error.message}")
    except httpx.InvalidURL as error:
        return TryResult(None, f"webhook_url_not_allowed: {error}")
    headers |= {
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
        "Content-Type": "application/json",
        HEADER: signature_header(secrets, int(time.time()), claimed.body),
        "Dialer-Event-Id": claimed.event_id,
    }
    timeouts = dict.fromkeys(("connect", "read", "write", "pool"), timeout_s)
    token = _DEADLINE.set(time.monotonic() + timeout_s)
    try:
        with _pool().stream(
            "POST",
            httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=list(headers.items()),
            content=claimed.body.encode(),
            extensions={"timeout": timeouts, **extensions},
        ) as response:
            _read_bounded(response.iter_stream())
    except httpcore.TimeoutException:
        return TryResult(None, f"timeout after {timeout_s:g} s")
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
        return TryResult(None, f"{type(error).__name__}: {error}"[:500])
    finally:
        _DEADLINE.reset(token)
    code = response.status
    if 300 <= code < 400:
        location = dict(response.headers).get(b"location", b"")  # names are lower-case
        where = location.decode("latin-1")[:200]
        return TryResult(code, f"redirect to {where!r} not followed")
    if not 200 <= code < 300:
        return TryResult(code, f"HTTP {code}")
    return TryResult(code)


def _read_bounded(chunks: Iterable[bytes]) -> None:
    """Read raw answer bytes until the body ends (the connection can then be reused) or
    `ANSWER_MAX_BYTES` were read (it is then closed)."""
    read = 0
    for chunk in chunks:
        read += len(chunk)
        if read >= ANSWER_MAX_BYTES:
            return


def _try(claimed: Claimed, runtime: Runtime, now: Callable[[], datetime]) -> WebhookStatus | None:
    """One try of a claimed event, recorded on it; None: deferred (its account's slots are
    all taken). Whatever goes wrong sending this event is this event's failed try."""
    settings = runtime.settings
    if not take_slot(runtime.redis, claimed, settings):
        with transaction(settings.database_url) as session:
            defer(session, claimed, now())
        return None
    try:
        try:
            with transaction(settings.database_url) as session:
                secrets = signing_secrets(session, claimed.account_id, now())
            result = post(claimed, secrets, settings)
        except Exception as error:  # one event's fault is recorded on it, retried, dead-lettered
            log.exception("webhook_try_raised", event_id=claimed.event_id)
            result = TryResult(None, f"{type(error).__name__}: {error}"[:500])
        with transaction(settings.database_url) as session:
            return record(session, claimed, result, settings, now())
    finally:
        release_slot(runtime.redis, claimed)


def deliver(
    runtime: Runtime, event_id: str, now: Callable[[], datetime] = utcnow
) -> WebhookStatus | None:
    """One try of event `event_id` if it is pending and due (its first, sent right after
    the commit that wrote it); None when it is not (the sweep or another try has it) or its
    account's delivery slots are all taken (deferred: the sweep tries it)."""
    with transaction(runtime.settings.database_url) as session:
        claimed = claim(session, runtime.settings, now(), event_id=event_id, limit=1)
    if not claimed:
        return None
    return _try(claimed[0], runtime, now)


SWEEP_BUDGET_S = 20.0
"""Seconds one sweep keeps claiming due events; it then finishes the tries it started."""
SWEEP_LOCK_KEY = "dialer:webhooks:sweep"


def sweep_time_limit_s(settings: Settings) -> float:
    """Seconds one sweep may run in all: its claiming budget, then its last tries. The sweep
    task's soft time limit (`workers.tasks`)."""
    return SWEEP_BUDGET_S + try_time_limit_s(settings)


def sweep(runtime: Runtime, now: Callable[[], datetime] = utcnow) -> int | None:
    """Try due pending events (beat: retries, and first tries whose task was lost), at most
    `WEBHOOK_CONCURRENCY` at once: a slot freed by one try is filled by the next due event,
    so a slow receiver holds one slot, not the batch. Claims for `SWEEP_BUDGET_S`, then
    finishes. One sweep at a time (a Redis lock): a backlog never fills every worker
    process. Returns the number tried (deferred ones aside), None when another sweep runs."""
    settings = runtime.settings
    token = uuid.uuid4().hex
    ttl_ms = int((SWEEP_BUDGET_S + claim_lease_s(settings)) * 1000)
    if not runtime.redis.set(SWEEP_LOCK_KEY, token, nx=True, px=ttl_ms):
        return None
    try:
        return _sweep(runtime, now)
    finally:
        if runtime.redis.get(SWEEP_LOCK_KEY) == token.encode():
            runtime.redis.delete(SWEEP_LOCK_KEY)


def _sweep(runtime: Runtime, now: Callable[[], datetime]) -> int:
    settings = runtime.settings
    slots = settings.webhook_concurrency
    deadline = time.monotonic() + SWEEP_BUDGET_S
    tried = 0
    more = True
    running: dict[Future[WebhookStatus | None], Claimed] = {}
    full: set[int] = set()
    """Accounts whose tries were deferred in this sweep: not claimed again until one of its
    tries here ends, so a backlog behind a slow receiver is not claimed over and over."""
    with ThreadPoolExecutor(max_workers=slots) as pool:
        while True:
            free = slots - len(running)
            if more and free and time.monotonic() < deadline:
                with transaction(settings.database_url) as session:
                    batch = claim(
                        session, settings, now(), event_id=None, limit=free, skip_accounts=full
                    )
                more = len(batch) == free
                for claimed in batch:
                    running[pool.submit(_try, claimed, runtime, now)] = claimed
            if not running:
                return tried
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                claimed = running.pop(future)
                error = future.exception()
                if error is None and future.result() is None:  # deferred
                    full.add(claimed.account_id)
                    continue
                full.discard(claimed.account_id)
                tried += 1
                if error is not None:  # not recorded: its claim lapses, a later sweep retries
                    log.error("webhook_try_failed", event_id=claimed.event_id, error=repr(error))
