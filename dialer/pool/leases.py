"""Leases: which pool scopes and CPS limits a call of a campaign holds, and for how long."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from dialer.pool import CallerIdSlot, DialClock, Keys, ProviderKeys, RateLimit, Scope, SendWindow
from dialer.settings import Settings
from models import (
    Account,
    CallerId,
    CallJob,
    Campaign,
)

LEASE_MARGIN_S = 30
"""Seconds a lease outlives the longest possible call, for callbacks still in flight."""

CPS_HEADROOM = 0.96
"""Fraction of a CPS limit the pacer books calls at. The limit itself is held at send time,
as the provider counts it (`send_windows`); booking a little under it leaves room in the
window for requests that reach the provider late, so the next ones rarely wait."""


UNBOUNDED = 2**31 - 1
"""The provider scope's cap when the provider granted none (`PROVIDER_MAX_CONCURRENCY`
unset): its leases are still counted, so a cap set later starts from the true count."""


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """What the provider granted the one provider account every tenant shares: most live
    calls (None: not bounded) and calls per second (None: not bounded). Source:
    `Settings.provider_max_concurrency`, `Settings.provider_max_cps`."""

    max_concurrency: int | None = None
    cps: float | None = None

    @classmethod
    def of(cls, settings: Settings) -> ProviderLimits:
        return cls(settings.provider_max_concurrency, settings.provider_max_cps)


def lease_seconds(campaign: Campaign, job: CallJob | None = None) -> float:
    """Lease length: ring timeout + time limit + margin, in seconds (the contact's own
    ring timeout and time limit when it has them, else the campaign's)."""
    ring = (job.ring_timeout_s if job else None) or campaign.ring_timeout_s
    limit = (job.time_limit_s if job else None) or campaign.time_limit_s
    return float(ring + limit + LEASE_MARGIN_S)


def acquire_scopes(account: Account, campaign: Campaign, provider: ProviderLimits) -> list[Scope]:
    """The concurrency scopes one call of `campaign` occupies whichever number it presents,
    with their caps: the account's (first), the provider account's, the campaign's. The
    caller ID's scope is its `caller_id_slot`'s."""
    keys = Keys(account.id)
    return [
        Scope(keys.account_pool(), account.max_concurrency),
        Scope(ProviderKeys().pool(), provider.max_concurrency or UNBOUNDED),
        Scope(keys.campaign_pool(campaign.id), campaign.max_concurrency),
    ]


def caller_id_slot(caller_id: CallerId) -> CallerIdSlot:
    """Caller ID `caller_id` as the pool admits calls presenting it: its live calls under
    its concurrency cap (unbounded when it has none: they are still counted, for the
    least-used choice), and its minute's and day's limits."""
    keys = Keys(caller_id.account_id)
    return CallerIdSlot(
        caller_id.e164,
        Scope(keys.caller_id_pool(caller_id.e164), caller_id.max_concurrency or UNBOUNDED),
        keys.caller_id_dials(caller_id.e164),
        caller_id.max_calls_per_minute,
        caller_id.max_calls_per_day,
    )


def dial_clock(now: datetime, time_scale: float = 1.0) -> DialClock:
    """The clock caller IDs' minute and day limits are held by: `now` (the runtime's clock,
    which tests control), a minute and a day times `time_scale` (`Settings.dev_time_scale`,
    1 but in development)."""
    return DialClock(
        int(now.timestamp() * 1000), int(60_000 * time_scale), int(86_400_000 * time_scale)
    )


def rate_limits(account: Account, campaign: Campaign, provider: ProviderLimits) -> list[RateLimit]:
    """The paces the pacer books slots against (account; the provider account and the
    campaign when set), at `CPS_HEADROOM` of their CPS limits."""
    keys = Keys(account.id)
    limits = [RateLimit(keys.account_rate(), account.cps * CPS_HEADROOM)]
    if provider.cps is not None:
        limits.append(RateLimit(ProviderKeys().rate(), provider.cps * CPS_HEADROOM))
    if campaign.cps is not None:
        limits.append(RateLimit(keys.campaign_rate(campaign.id), campaign.cps * CPS_HEADROOM))
    return limits


def send_window(key: str, cps: float) -> SendWindow:
    """The window that holds a CPS limit of `cps` calls/s: `floor(cps)` requests in any
    second, or under one call a second, one request in any `1 / cps` seconds."""
    calls = max(1, math.floor(cps))
    return SendWindow(key, calls, max(1.0, calls / cps))


def send_windows(
    account: Account, campaign: Campaign, provider: ProviderLimits
) -> list[SendWindow]:
    """The CPS limits held at the moment a create request leaves (`place_call`): the
    account's, and the provider account's and the campaign's when set."""
    keys = Keys(account.id)
    windows = [send_window(keys.account_sends(), account.cps)]
    if provider.cps is not None:
        windows.append(send_window(ProviderKeys().sends(), provider.cps))
    if campaign.cps is not None:
        windows.append(send_window(keys.campaign_sends(campaign.id), campaign.cps))
    return windows


def release_keys(account_id: int, campaign_id: int, from_e164: str) -> list[str]:
    """Every scope key an attempt of this campaign presenting `from_e164` holds a lease in."""
    keys = Keys(account_id)
    return [
        keys.account_pool(),
        ProviderKeys().pool(),
        keys.campaign_pool(campaign_id),
        keys.caller_id_pool(from_e164),
    ]
