"""Process-wide handles: settings, the Redis client and pool, the telephony provider.

Built once per process (a Celery worker child, the API, the CLI) on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache

import redis

from dialer.pool import Pool
from dialer.providers.base import TelephonyProvider
from dialer.settings import Settings, get_settings
from models import utcnow


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
        return redis.Redis.from_url(self.settings.redis_url, health_check_interval=30)

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
