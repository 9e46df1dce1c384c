"""Process-wide handles: settings, the Redis client and pool, the telephony provider.

Built once per process (a Celery worker child, the API, the CLI) on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache

import redis
import structlog

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


def configure_logging(settings: Settings) -> None:
    """structlog for the whole process, at `LOG_LEVEL` (DEBUG, INFO, WARNING, ERROR)."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    logging.basicConfig(level=level)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """This process's runtime (logging configured on first use)."""
    runtime = Runtime()
    configure_logging(runtime.settings)
    return runtime
