"""The call state machine and the outcome policy.

Pure functions over `CallAttempt` rows: every change of an attempt's status goes through
`apply_event`. Provider events arrive duplicated and out of order (Twilio does not promise
order; `SequenceNumber` only numbers them), so an event moves an attempt only forward in
the order below, and a terminal status is never left. The end state is therefore the same
whatever order a call's events arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from models import AttemptStatus, CallAttempt, Campaign, CampaignStatus, JobStatus, Outcome
from models.enums import TERMINAL_ATTEMPT_STATUSES

_RANK = {
    AttemptStatus.DIALING: 0,
    AttemptStatus.PLACING: 1,
    AttemptStatus.QUEUED: 2,
    AttemptStatus.INITIATED: 3,
    AttemptStatus.RINGING: 4,
    AttemptStatus.IN_PROGRESS: 5,
}
_TERMINAL_RANK = 6

MACHINE_ANSWERS = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)
"""Twilio AMD `AnsweredBy` values meaning no person took the call."""

DEFAULT_RETRY_POLICY: dict[str, dict[str, Any]] = {
    Outcome.BUSY: {"retry": True, "delay_s": 600},
    Outcome.NO_ANSWER: {"retry": True, "delay_s": 3600},
    Outcome.FAILED: {"retry": True, "delay_s": 600},
    Outcome.MACHINE: {"retry": False, "delay_s": 3600},
}
"""Per-outcome retry matrix used where a campaign sets nothing: outcome -> retry, delay (s)."""


def rank(status: AttemptStatus) -> int:
    """Position of `status` in the call's life; all terminal statuses share the last rank."""
    return _TERMINAL_RANK if status in TERMINAL_ATTEMPT_STATUSES else _RANK[status]


def is_terminal(status: AttemptStatus) -> bool:
    return status in TERMINAL_ATTEMPT_STATUSES


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One provider event, parsed.

    Attributes:
        status: Twilio `CallStatus`, or None for an AMD-only callback.
        sequence: Twilio `SequenceNumber` (-1 when absent).
        timestamp: when the provider says it happened (UTC).
        call_sid: Twilio `CallSid`.
        answered_by: Twilio `AnsweredBy`, when present.
        duration_s: Twilio `CallDuration`, seconds, on the completed event.
    """

    status: AttemptStatus | None
    sequence: int
    timestamp: datetime
    call_sid: str
    answered_by: str | None = None
    duration_s: int | None = None


def apply_event(attempt: CallAttempt, event: CallEvent) -> bool:
    """Apply `event` to `attempt` in place. Returns True if the attempt became terminal now.

    Facts that do not depend on order (the call sid, `AnsweredBy`) are recorded from any
    event; the status only moves forward, and terminal statuses are final.
    """
    if attempt.call_sid is None:
        attempt.call_sid = event.call_sid
    if event.answered_by and attempt.answered_by is None:
        attempt.answered_by = event.answered_by
    if event.status is None or rank(event.status) <= rank(attempt.status):
        return False
    attempt.status = event.status
    attempt.last_sequence = max(attempt.last_sequence, event.sequence)
    if event.status is AttemptStatus.IN_PROGRESS:
        attempt.answered_at = event.timestamp
    if not is_terminal(event.status):
        return False
    attempt.ended_at = event.timestamp
    if event.duration_s is not None:
        attempt.duration_s = event.duration_s
        # Derived the same way whichever event came first, so the end state is order-free.
        if event.status is AttemptStatus.COMPLETED and event.duration_s > 0:
            attempt.answered_at = event.timestamp - timedelta(seconds=event.duration_s)
    return True


def outcome_of(attempt: CallAttempt) -> Outcome:
    """The contact-level outcome of a terminal attempt."""
    if attempt.end_reason == "hold_cap":
        return Outcome.HOLD_CAP
    match attempt.status:
        case AttemptStatus.COMPLETED:
            return Outcome.MACHINE if attempt.answered_by in MACHINE_ANSWERS else Outcome.ANSWERED
        case AttemptStatus.BUSY:
            return Outcome.BUSY
        case AttemptStatus.NO_ANSWER:
            return Outcome.NO_ANSWER
        case AttemptStatus.CANCELED:
            return Outcome.CANCELED
        case _:
            return Outcome.FAILED


def retry_delay(campaign: Campaign, outcome: Outcome, attempts_made: int) -> float | None:
    """Seconds until the next attempt for a contact whose attempt ended with `outcome`, or
    None when the contact is done (answered, not retryable, or `max_attempts` reached)."""
    if attempts_made >= campaign.max_attempts:
        return None
    rule = (campaign.retry_policy or {}).get(outcome) or DEFAULT_RETRY_POLICY.get(outcome)
    if not rule or not rule.get("retry"):
        return None
    return float(rule.get("delay_s", 0))


@dataclass(frozen=True, slots=True)
class JobStep:
    """A contact's next step after an attempt ended: its job's outcome, status, and when it
    is next due (None: unchanged)."""

    outcome: Outcome
    status: JobStatus
    next_due_at: datetime | None = None


def next_job_step(
    campaign: Campaign, outcome: Outcome, attempts_made: int, now: datetime
) -> JobStep:
    """The contact's next step once an attempt that may have rung it ended with `outcome`:
    done, canceled with its campaign, or pending again after the outcome matrix's delay.

    Reads only `campaign.status`, `max_attempts` and `retry_policy`, so the webhook's fast
    path can call it with a transient `Campaign` built from plain values.
    """
    delay = retry_delay(campaign, outcome, attempts_made)
    if delay is None:
        return JobStep(outcome, JobStatus.DONE)
    if campaign.status is CampaignStatus.CANCELED:
        return JobStep(outcome, JobStatus.CANCELED)
    return JobStep(outcome, JobStatus.PENDING, now + timedelta(seconds=delay))
