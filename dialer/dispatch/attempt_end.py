"""The end of an attempt: what happens to the contact, and the lease freed after commit."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy.orm import Session

from dialer.calls import next_job_step, outcome_of
from dialer.pool import Keys
from dialer.pool.leases import release_keys
from dialer.runtime import Runtime
from models import (
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignStatus,
    JobStatus,
    Outcome,
    on_commit,
    utcnow,
)


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
