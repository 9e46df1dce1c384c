"""The end of an attempt: what happens to its contact, and which lease is freed.

`decide` is the one place that decides it, over plain values (`EndedAttempt`), so the
ORM path (`finish_call`, `end_unplaced`: place_call, the reaper, the watchdog) and the
status webhook's raw-SQL fast path (`dialer.dispatch.callbacks`) only persist what it
returns. The lease is released, and the pacer woken, after the transaction commits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from dialer.calls import JobStep, mark_not_placed, move_job, outcome_of, retry_delay
from dialer.dispatch.timing import schedule_of
from dialer.pool import Keys
from dialer.pool.leases import release_keys
from dialer.runtime import Runtime
from dialer.webhooks.outbox import record_attempt_end
from dialer.windows import ContactSchedule
from models import (
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignStatus,
    EndReason,
    JobStatus,
    Outcome,
    on_commit,
    utcnow,
)


@dataclass(frozen=True, slots=True)
class EndedAttempt:
    """Everything `decide` reads: the attempt that just ended, its contact, its campaign.

    Attributes:
        attempt_id, account_id, campaign_id, from_e164: whose lease to free.
        status: the attempt's terminal status (`not-placed` when no call was made).
        answered_by: Twilio `AnsweredBy`, if AMD ran.
        end_reason: why the dialer ended the call itself, if it did.
        attempt_count: the contact's attempts that may have rung it, this one included.
        dial_error_count: the contact's failed create requests before this attempt.
        campaign_status, max_attempts, dial_retries, retry_policy: the campaign's policy.
        unplaced_outcome: for a `not-placed` attempt, the contact's final outcome (a
            refused number, DNC), or None to try the create again later.
        counts_as_dial_error: a `not-placed` attempt that spends one of `dial_retries`
            (an account-level refusal, a pause, does not).
        retry_after_s: the least delay before the contact's next create (seconds), e.g. the
            wait after an ambiguous create; None: the usual backoff.
    """

    attempt_id: int
    account_id: int
    campaign_id: int
    from_e164: str
    status: AttemptStatus
    answered_by: str | None
    end_reason: EndReason | None
    attempt_count: int
    dial_error_count: int
    campaign_status: CampaignStatus
    max_attempts: int
    dial_retries: int
    retry_policy: dict[str, dict[str, Any]] | None
    unplaced_outcome: Outcome | None = None
    counts_as_dial_error: bool = True
    retry_after_s: float | None = None
    schedule: ContactSchedule | None = None
    """The contact's calling window, place and `call_before`: a retry due outside the
    window is due at its next opening instead. None: due times as computed."""


@dataclass(frozen=True, slots=True)
class LeaseRelease:
    """The lease to free: its member (the attempt id), every scope key, the wake list."""

    member: str
    scope_keys: list[str]
    wake_key: str


@dataclass(frozen=True, slots=True)
class EndDecision:
    """What an ended attempt leads to: the contact's next step and the lease to free."""

    step: JobStep
    release: LeaseRelease


def decide(ended: EndedAttempt, now: datetime, time_scale: float = 1.0) -> EndDecision:
    """The consequences of an ended attempt (pure).

    An attempt that may have rung the contact: canceled with its outcome when the call
    itself was cancelled (`end_reason` `call_canceled`), else done (answered, not
    retryable, or `max_attempts` reached, per the campaign's outcome matrix), canceled with
    its campaign, or pending again after the matrix's delay. An attempt that never became a call
    (`not-placed`) does not count against `max_attempts`: the contact is done with
    `unplaced_outcome` when one is given, with `dial_error` once `dial_retries` are spent,
    else pending again after an exponential backoff with full jitter (AWS Architecture
    Blog, "Exponential Backoff and Jitter", 2015). A contact pending again is due at the
    next opening of its calling window at or after that delay (`ended.schedule`).

    `time_scale` (`Settings.dev_time_scale`, 1 but in development) multiplies the matrix's
    delay and the backoff; `retry_after_s` comes already scaled.
    """
    release = LeaseRelease(
        str(ended.attempt_id),
        release_keys(ended.account_id, ended.campaign_id, ended.from_e164),
        Keys(ended.account_id).wake(),
    )
    call_canceled = ended.end_reason is EndReason.CALL_CANCELED
    canceled = ended.campaign_status is CampaignStatus.CANCELED or call_canceled
    if ended.status is not AttemptStatus.NOT_PLACED:
        outcome = outcome_of(ended.status, ended.answered_by, ended.end_reason)
        counts = (ended.attempt_count, ended.dial_error_count)
        delay = retry_delay(ended.retry_policy, ended.max_attempts, outcome, ended.attempt_count)
        if call_canceled:
            step = JobStep(JobStatus.CANCELED, *counts, outcome=outcome)
        elif delay is None:
            step = JobStep(JobStatus.DONE, *counts, outcome=outcome)
        elif canceled:
            step = JobStep(JobStatus.CANCELED, *counts, outcome=outcome)
        else:
            due = _in_window(ended, now + timedelta(seconds=delay * time_scale))
            step = JobStep(JobStatus.PENDING, *counts, outcome=outcome, next_due_at=due)
        return EndDecision(step, release)
    attempts = ended.attempt_count - 1  # it never rang: it does not use up an attempt
    errors = ended.dial_error_count
    outcome_now = ended.unplaced_outcome
    if outcome_now is None and ended.counts_as_dial_error:
        errors += 1
        if errors > ended.dial_retries:
            outcome_now = Outcome.DIAL_ERROR
    if outcome_now is not None:
        step = JobStep(JobStatus.DONE, attempts, errors, outcome=outcome_now)
    elif canceled:
        step = JobStep(JobStatus.CANCELED, attempts, errors)
    else:
        wait = max(dial_backoff_s(max(errors, 1)) * time_scale, ended.retry_after_s or 0.0)
        due = _in_window(ended, now + timedelta(seconds=wait))
        step = JobStep(JobStatus.PENDING, attempts, errors, next_due_at=due)
    return EndDecision(step, release)


def _in_window(ended: EndedAttempt, due: datetime) -> datetime:
    return due if ended.schedule is None else ended.schedule.next_due(due)


def dial_backoff_s(tries: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Full-jitter exponential backoff before create try `tries` (1-based), in seconds."""
    return random.uniform(0, min(cap_s, base_s * 2 ** (tries - 1)))


def _ended(attempt: CallAttempt, job: CallJob, campaign: Campaign, **unplaced: Any) -> EndedAttempt:
    return EndedAttempt(
        attempt_id=attempt.id,
        account_id=attempt.account_id,
        campaign_id=attempt.campaign_id,
        from_e164=attempt.from_e164,
        status=attempt.status,
        answered_by=attempt.answered_by,
        end_reason=attempt.end_reason,
        attempt_count=job.attempt_count,
        dial_error_count=job.dial_error_count,
        campaign_status=campaign.status,
        max_attempts=campaign.max_attempts,
        dial_retries=campaign.dial_retries,
        retry_policy=campaign.retry_policy,
        schedule=schedule_of(campaign, job),
        **unplaced,
    )


def _persist(session: Session, runtime: Runtime, job: CallJob, decision: EndDecision) -> None:
    # The attempt's final state reaches the database before its contact's: the counters
    # (migration 0009) read a done contact's `AnsweredBy` and error code from it.
    session.flush()
    move_job(job, decision.step)
    release = decision.release
    on_commit(
        session, lambda: runtime.pool.release(release.member, release.scope_keys, release.wake_key)
    )


def finish_call(session: Session, runtime: Runtime, attempt: CallAttempt) -> Outcome | None:
    """A terminal attempt that may have rung the contact: persist `decide`'s step for its
    contact and free the lease after commit. Returns the outcome when the contact is done."""
    job = session.get_one(CallJob, attempt.job_id, with_for_update=True)
    campaign = session.get_one(Campaign, attempt.campaign_id)
    ended = _ended(attempt, job, campaign)
    decision = decide(ended, runtime.clock(), runtime.settings.dev_time_scale)
    _persist(session, runtime, job, decision)
    record_attempt_end(session, attempt, job, decision.step, utcnow())
    return decision.step.outcome


def end_unplaced(
    session: Session,
    runtime: Runtime,
    attempt: CallAttempt,
    *,
    outcome: Outcome | None,
    error_code: int | None = None,
    error_message: str | None = None,
    counts_as_dial_error: bool = True,
    retry_after_s: float | None = None,
) -> None:
    """End an attempt that never became a call (`not-placed`) and free its lease.

    With `outcome` set the contact is done with it (a permanent contact error, DNC); with
    None the contact returns to the pacer (see `decide`).

    Raises:
        ConflictError: `invalid_state`, the attempt is past `placing`.
    """
    job = session.get_one(CallJob, attempt.job_id, with_for_update=True)
    campaign = session.get_one(Campaign, attempt.campaign_id)
    mark_not_placed(attempt, utcnow(), error_code, error_message)
    ended = _ended(
        attempt,
        job,
        campaign,
        unplaced_outcome=outcome,
        counts_as_dial_error=counts_as_dial_error,
        retry_after_s=retry_after_s,
    )
    decision = decide(ended, runtime.clock(), runtime.settings.dev_time_scale)
    _persist(session, runtime, job, decision)
    record_attempt_end(session, attempt, job, decision.step, utcnow())
