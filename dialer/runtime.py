"""Process-wide handles: settings, the Redis client and pool, the telephony provider.

Built once per process (a Celery worker child, the API, the CLI) on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any, TypeVar

import redis
import structlog
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from dialer.metrics import REDIS_RETRIES
from dialer.pool import Pool
from dialer.providers.base import TelephonyProvider
from dialer.settings import Settings, get_settings
from models import utcnow

log = structlog.get_logger(__name__)

T = TypeVar("T")

RETRY_BASE_S = 0.1
"""First backoff of a Redis retry, in seconds (doubled each try, full jitter)."""
RETRY_CAP_S = 2.0
"""Longest backoff between two tries of one Redis command, in seconds."""
RETRIED_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    MasterNotFoundError,
)
"""What a Redis command is tried again on: the link broke or timed out, the server turned
replica (`READONLY`: a failover demoted it), or no Sentinel knows a master (a failover is
under way). A reply error (wrong type, a script's error) is not retried."""


class CountedRetry(Retry):
    """redis-py's `Retry` that logs (`redis_retry`) and counts
    (`dialer_redis_retries_total`) each failed try, so no retry and no give-up is silent.

    A retried command may have run once already (the reply was lost, not the request):
    every command the dialer sends is safe to repeat (a lease is a sorted-set member keyed
    by its attempt, releases and unlocks are idempotent, a fence's `INCR` only grows, a
    repeated CPS booking makes the limiter stricter, never looser).
    """

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def counted(error: Exception, failures: int) -> Any:
            retried = failures <= self.get_retries()
            REDIS_RETRIES.labels(type(error).__name__, "retried" if retried else "gave_up").inc()
            log.warning(
                "redis_retry" if retried else "redis_gave_up",
                error=f"{type(error).__name__}: {error}",
                failures=failures,
            )
            return fail(error, failures) if with_failure_count else fail(error)

        return super().call_with_retry(do, counted, is_retryable, with_failure_count=True)


def redis_client(settings: Settings) -> redis.Redis:
    """The dialer's Redis client: `REDIS_URL`'s server, or the master the Sentinels of
    `REDIS_SENTINELS` name (`REDIS_SENTINEL_MASTER`, with `REDIS_URL`'s db, user, password
    and TLS), followed through failovers.

    Every connection has `redis_socket_timeout_s` and `redis_connect_timeout_s`; a command
    that fails with one of `RETRIED_ERRORS` is tried again `redis_retries` times on a new
    connection (a Sentinel-managed one asks the Sentinels for the master again), with
    exponential backoff and full jitter (`RETRY_BASE_S` doubled, at most `RETRY_CAP_S`).
    """
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": CountedRetry(
            ExponentialWithJitterBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S),
            settings.redis_retries,
            supported_errors=RETRIED_ERRORS,
        ),
        "retry_on_error": list(RETRIED_ERRORS),
    }
    if not settings.sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    parsed: dict[str, Any] = redis.connection.parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    for key in ("db", "username", "password"):
        if key in parsed:
            options[key] = parsed[key]
    if settings.redis_url.startswith("rediss://"):
        options["ssl"] = True
    sentinel_password = settings.redis_sentinel_password
    sentinel = Sentinel(
        settings.sentinels,
        sentinel_kwargs={
            "socket_timeout": settings.redis_connect_timeout_s,
            "socket_connect_timeout": settings.redis_connect_timeout_s,
            "password": sentinel_password.get_secret_value() if sentinel_password else None,
        },
        **options,
    )
    client: redis.Redis = sentinel.master_for(
        settings.redis_sentinel_master, redis_class=redis.Redis
    )
    return client


@dataclass
class Runtime:
    """The handles one process shares across tasks and requests."""

    settings: Settings = field(default_factory=get_settings)
    clock: Callable[[], datetime] = utcnow
    """The time calling windows, due times, `start_at`/`end_at`/`call_before` and the
    frequency cap are judged by (aware UTC); tests replace it. Leases, send deadlines and
    provider timeouts keep real time."""

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings)

    @cached_property
    def pool(self) -> Pool:
        return Pool(self.redis)

    @cached_property
    def provider(self) -> TelephonyProvider:
        from dialer.providers.twilio import provider_from_settings

        return provider_from_settings(self.settings)


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """This process's runtime (logging is the entry points': `dialer.logs`)."""
    return Runtime()
