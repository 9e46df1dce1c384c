"""Leases and the end of an attempt: which pool scopes a call holds, how long, and what
happens to the contact when the attempt ends."""

from __future__ import annotations

import math
import random
from datetime import timedelta

from sqlalchemy.orm import Session

from dialer.calls import next_job_step, outcome_of
from dialer.pool import Keys, RateLimit, Scope
from dialer.runtime import Runtime
from models import (
    Account,
    AttemptStatus,
    CallAttempt,
    CallerId,
    CallJob,
    Campaign,
    CampaignStatus,
    JobStatus,
    Outcome,
    on_commit,
    utcnow,
)

LEASE_MARGIN_S = 30
"""Seconds a lease outlives the longest possible call, for callbacks still in flight."""

CPS_HEADROOM = 0.96
"""Fraction of a CPS limit the limiters pace at. The rest is burst allowance at send time:
a create that Celery delivered late may be followed at once by the next, so late calls are
made up without any one-second window going over the limit."""


def lease_seconds(campaign: Campaign) -> float:
    """Lease length: ring timeout + time limit + margin, in seconds."""
    return float(campaign.ring_timeout_s + campaign.time_limit_s + LEASE_MARGIN_S)


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


def release_after_commit(session: Session, runtime: Runtime, attempt: CallAttempt) -> None:
    """Free the attempt's lease (and wake the pacer) once the session's transaction commits."""
    campaign = session.get_one(Campaign, attempt.campaign_id)
    scope_keys = release_keys(attempt.account_id, attempt.campaign_id, campaign.caller_id_id)
    wake = Keys(attempt.account_id).wake()
    member = str(attempt.id)
    on_commit(session, lambda: runtime.pool.release(member, scope_keys, wake))


def finish_call(session: Session, runtime: Runtime, attempt: CallAttempt) -> Outcome:
    """A terminal attempt that may have rung the contact: decide the contact's next step
    (done, or a retry per the campaign's outcome matrix) and free the lease after commit."""
    job = session.get_one(CallJob, attempt.job_id, with_for_update=True)
    campaign = session.get_one(Campaign, attempt.campaign_id)
    step = next_job_step(campaign, outcome_of(attempt), job.attempt_count, utcnow())
    job.outcome, job.status = step.outcome, step.status
    if step.next_due_at is not None:
        job.next_due_at = step.next_due_at
    release_after_commit(session, runtime, attempt)
    return step.outcome


def end_unplaced(
    session: Session,
    runtime: Runtime,
    attempt: CallAttempt,
    *,
    outcome: Outcome | None,
    error_code: int | None = None,
    error_message: str | None = None,
    counts_as_dial_error: bool = True,
) -> None:
    """End an attempt that never became a call (`not-placed`) and free its lease.

    With `outcome` set the contact is done with it (a permanent contact error, DNC). With
    None the create request is tried again: the contact returns to the pacer after an
    exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and
    Jitter", 2015), unless the campaign's `dial_retries` are spent. An account-level refusal
    (`counts_as_dial_error=False`) is not the contact's fault and spends none of them.
    """
    job = session.get_one(CallJob, attempt.job_id, with_for_update=True)
    campaign = session.get_one(Campaign, attempt.campaign_id)
    attempt.status = AttemptStatus.NOT_PLACED
    attempt.ended_at = utcnow()
    attempt.error_code = error_code
    attempt.error_message = error_message
    job.attempt_count -= 1  # it never rang: it does not use up one of max_attempts
    if outcome is None and counts_as_dial_error:
        job.dial_error_count += 1
        if job.dial_error_count > campaign.dial_retries:
            outcome = Outcome.DIAL_ERROR
    if outcome is not None:
        job.status = JobStatus.DONE
        job.outcome = outcome
    elif campaign.status is CampaignStatus.CANCELED:
        job.status = JobStatus.CANCELED
    else:
        job.status = JobStatus.PENDING
        job.next_due_at = utcnow() + timedelta(seconds=dial_backoff_s(job.dial_error_count))
    release_after_commit(session, runtime, attempt)


def dial_backoff_s(tries: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Full-jitter exponential backoff before create try `tries` (1-based), in seconds."""
    return random.uniform(0, min(cap_s, base_s * 2 ** (tries - 1)))
