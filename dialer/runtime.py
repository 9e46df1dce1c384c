"""Process-wide handles: settings, the Redis client and pool, the telephony provider.

Built once per process (a Celery worker child, the API, the CLI) on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import redis

from dialer.pool import Pool
from dialer.providers.base import TelephonyProvider
from dialer.settings import Settings, get_settings


@dataclass
class Runtime:
    """The handles one process shares across tasks and requests."""

    settings: Settings = field(default_factory=get_settings)

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
