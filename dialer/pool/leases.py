"""Leases: which pool scopes and CPS limits a call of a campaign holds, and for how long."""

from __future__ import annotations

import math

from dialer.pool import Keys, RateLimit, Scope
from models import (
    Account,
    CallerId,
    CallJob,
    Campaign,
)

LEASE_MARGIN_S = 30
"""Seconds a lease outlives the longest possible call, for callbacks still in flight."""

CPS_HEADROOM = 0.96
"""Fraction of a CPS limit the limiters pace at. The rest is burst allowance at send time:
a create that Celery delivered late may be followed at once by the next, so late calls are
made up without any one-second window going over the limit."""


def lease_seconds(campaign: Campaign, job: CallJob | None = None) -> float:
    """Lease length: ring timeout + time limit + margin, in seconds (the contact's own
    ring timeout and time limit when it has them, else the campaign's)."""
    ring = (job.ring_timeout_s if job else None) or campaign.ring_timeout_s
    limit = (job.time_limit_s if job else None) or campaign.time_limit_s
    return float(ring + limit + LEASE_MARGIN_S)


def acquire_scopes(account: Account, campaign: Campaign, caller_id: CallerId) -> list[Scope]:
    """The concurrency scopes one call of `campaign` occupies, with their caps."""
    keys = Keys(account.id)
    scopes = [
        Scope(keys.account_pool(), account.max_concurrency),
        Scope(keys.campaign_pool(campaign.id), campaign.max_concurrency),
    ]
    if caller_id.max_concurrency is not None:
        scopes.append(Scope(keys.caller_id_pool(caller_id.id), caller_id.max_concurrency))
    return scopes


def paced(key: str, cps: float, *, burst: bool) -> RateLimit:
    """A limiter for a CPS limit of `cps` calls/s: paced at `CPS_HEADROOM` of it, with (when
    `burst`) the burst that keeps every one-second window below `cps` calls by one
    (ceil(rate) + burst <= floor(cps) - 1)."""
    rate = cps * CPS_HEADROOM
    # One call of the window is kept back for the jitter between the send-time check and
    # the provider receiving the request.
    allowance = max(0, math.floor(cps) - math.ceil(rate) - 1) if burst else 0
    return RateLimit(key, rate, allowance)


def rate_limits(account: Account, campaign: Campaign) -> list[RateLimit]:
    """The CPS limits the pacer books slots against (account, and campaign when set)."""
    keys = Keys(account.id)
    limits = [paced(keys.account_rate(), account.cps, burst=False)]
    if campaign.cps is not None:
        limits.append(paced(keys.campaign_rate(campaign.id), campaign.cps, burst=False))
    return limits


def send_limits(account: Account, campaign: Campaign) -> list[RateLimit]:
    """The CPS limits checked again at the moment a create request leaves (`place_call`)."""
    keys = Keys(account.id)
    limits = [paced(keys.account_send_rate(), account.cps, burst=True)]
    if campaign.cps is not None:
        limits.append(paced(keys.campaign_send_rate(campaign.id), campaign.cps, burst=True))
    return limits


def release_keys(account_id: int, campaign_id: int, caller_id_id: int) -> list[str]:
    """Every scope key an attempt of this campaign may hold a lease in."""
    keys = Keys(account_id)
    return [
        keys.account_pool(),
        keys.campaign_pool(campaign_id),
        keys.caller_id_pool(caller_id_id),
    ]
