"""Delivering outbox events to the customer's webhook: claim, sign, POST, record.

A try is claimed first (`attempts + 1`, `next_attempt_at` pushed past the try's longest
run), in its own short transaction, with `FOR UPDATE SKIP LOCKED`, so the first-try task
and the sweep never send one event twice at once, and a try whose worker died is picked up
again by the sweep once its claim lapses. The POST runs outside any transaction; its
result is recorded only if the claim is still this try's (`attempts` unchanged).

- 2xx: `delivered`. 410 Gone: `failed`, never tried again. Anything else (another status,
  a 3xx: redirects are not followed, a timeout of `WEBHOOK_TIMEOUT_S`, a refused
  connection, an address the SSRF rule refuses): retried after an exponential backoff with
  full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter", 2015) for up to
  `WEBHOOK_MAX_ATTEMPTS` tries within `WEBHOOK_RETRY_WINDOW_S` of the event, then `dead`.
- SSRF: the host is resolved at delivery, every address must be public
  (`dialer.webhook_url`; not checked with `WEBHOOK_ALLOW_PRIVATE_NETWORKS`), and the
  connection goes to the address that was checked (the URL's host becomes that address;
  `Host` and, for https, the TLS server name and certificate check keep the name), so a
  name that resolves elsewhere a moment later cannot send the request inside.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import httpx
import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from dialer.errors import DialerError
from dialer.metrics import WEBHOOK_DELIVERIES
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.webhook_url import address_allowed, check_webhook_url, resolve_addresses
from dialer.webhooks.keys import signing_secrets
from dialer.webhooks.signing import HEADER, signature_header
from models import WebhookStatus, transaction, utcnow

log = structlog.get_logger(__name__)

USER_AGENT = "campaign-dialer-webhooks/1"


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
    ORDER BY next_attempt_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
) due
WHERE e.id = due.id
RETURNING e.id, e.event_id, e.account_id, e.url, e.body, e.attempts, e.created_at
"""


def claim_lease_s(settings: Settings) -> float:
    """How long a claim holds an event: past the longest a try can run (connect and answer
    timeouts), with a margin."""
    return 3 * settings.webhook_timeout_s + 30


def claim(
    session: Session, settings: Settings, now: datetime, *, event_id: str | None, limit: int
) -> list[Claimed]:
    """Claim up to `limit` due pending events (only `event_id`, when given) for one try."""
    only = "AND event_id = :event_id" if event_id is not None else ""
    until = now + timedelta(seconds=claim_lease_s(settings))
    rows = session.execute(
        text(_CLAIM.format(only=only)),
        {"now": now, "until": until, "limit": limit, "event_id": event_id},
    ).all()
    return [Claimed(*row) for row in rows]


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


@lru_cache(maxsize=4)
def _client(timeout_s: float) -> httpx.Client:
    # No proxies from the environment (the connection must go to the checked address) and
    # no redirects (a 3xx is a failed try, never a second request elsewhere).
    return httpx.Client(
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        headers={"User-Agent": USER_AGENT},
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
    """
    check_webhook_url(url, allow_private=allow_private, resolve=False)
    target = httpx.URL(url)
    addresses = resolve_addresses(target.host, target.port)
    refused = [address for address in addresses if not address_allowed(address)]
    if refused and not allow_private:
        raise DialerError(
            "webhook_url_not_allowed",
            f"webhook host {target.host} resolves to a non-public address {refused[0]}",
        )
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    pinned = target.copy_with(host=addresses[0])
    return pinned, {"Host": target.netloc.decode("ascii")}, extensions


def post(claimed: Claimed, secrets: list[str], settings: Settings) -> TryResult:
    """POST the event's body, signed with `secrets`, to its URL (one try, no redirects)."""
    try:
        url, headers, extensions = pinned_request(
            claimed.url, settings.webhook_allow_private_networks
        )
    except DialerError as error:
        return TryResult(None, f"{error.code}: {error.message}")
    except httpx.InvalidURL as error:
        return TryResult(None, f"webhook_url_not_allowed: {error}")
    headers |= {
        "Content-Type": "application/json",
        HEADER: signature_header(secrets, int(time.time()), claimed.body),
        "Dialer-Event-Id": claimed.event_id,
    }
    client = _client(settings.webhook_timeout_s)
    request = client.build_request(
        "POST", url, content=claimed.body.encode(), headers=headers, extensions=extensions
    )
    try:
        response = client.send(request)  # the body is not read: the status is the answer
        response.close()
    except httpx.TimeoutException:
        return TryResult(None, f"timeout after {settings.webhook_timeout_s:g} s")
    except httpx.HTTPError as error:
        return TryResult(None, f"{type(error).__name__}: {error}"[:500])
    if 300 <= response.status_code < 400:
        where = response.headers.get("location", "")[:200]
        return TryResult(response.status_code, f"redirect to {where!r} not followed")
    if not response.is_success:
        return TryResult(response.status_code, f"HTTP {response.status_code}")
    return TryResult(response.status_code)


def _try(claimed: Claimed, settings: Settings, now: Callable[[], datetime]) -> WebhookStatus:
    with transaction(settings.database_url) as session:
        secrets = signing_secrets(session, claimed.account_id, now())
    result = post(claimed, secrets, settings)
    with transaction(settings.database_url) as session:
        return record(session, claimed, result, settings, now())


def deliver(
    settings: Settings, event_id: str, now: Callable[[], datetime] = utcnow
) -> WebhookStatus | None:
    """One try of event `event_id` if it is pending and due (its first, sent right after
    the commit that wrote it); None when it is not (the sweep or another try has it)."""
    with transaction(settings.database_url) as session:
        claimed = claim(session, settings, now(), event_id=event_id, limit=1)
    if not claimed:
        return None
    return _try(claimed[0], settings, now)


SWEEP_BUDGET_S = 20.0
"""Seconds one sweep keeps claiming due events; it then finishes the tries it started."""
SWEEP_LOCK_KEY = "dialer:webhooks:sweep"


def sweep(runtime: Runtime, now: Callable[[], datetime] = utcnow) -> int | None:
    """Try due pending events (beat: retries, and first tries whose task was lost), at most
    `WEBHOOK_CONCURRENCY` at once: a slot freed by one try is filled by the next due event,
    so a slow receiver holds one slot, not the batch. Claims for `SWEEP_BUDGET_S`, then
    finishes. One sweep at a time (a Redis lock): a backlog never fills every worker
    process. Returns the number tried, None when another sweep runs."""
    settings = runtime.settings
    token = uuid.uuid4().hex
    ttl_ms = int((SWEEP_BUDGET_S + claim_lease_s(settings)) * 1000)
    if not runtime.redis.set(SWEEP_LOCK_KEY, token, nx=True, px=ttl_ms):
        return None
    try:
        return _sweep(settings, now)
    finally:
        if runtime.redis.get(SWEEP_LOCK_KEY) == token.encode():
            runtime.redis.delete(SWEEP_LOCK_KEY)


def _sweep(settings: Settings, now: Callable[[], datetime]) -> int:
    slots = settings.webhook_concurrency
    deadline = time.monotonic() + SWEEP_BUDGET_S
    tried = 0
    more = True
    running: set[Future[WebhookStatus]] = set()
    with ThreadPoolExecutor(max_workers=slots) as pool:
        while True:
            free = slots - len(running)
            if more and free and time.monotonic() < deadline:
                with transaction(settings.database_url) as session:
                    batch = claim(session, settings, now(), event_id=None, limit=free)
                more = len(batch) == free
                running |= {pool.submit(_try, claimed, settings, now) for claimed in batch}
                tried += len(batch)
            if not running:
                return tried
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                if error := future.exception():  # its claim lapses: a later sweep retries
                    log.error("webhook_try_failed", error=repr(error))
