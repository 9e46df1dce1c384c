"""The call state machine, the contact (job) transitions and the outcome policy.

Pure functions: nothing here reads or writes the database. Every change of an attempt's
status goes through this module: `mark_placing` and `mark_not_placed` for our own two
states, `apply_event` for the provider's. Provider events arrive duplicated and out of
order (Twilio does not promise order; `SequenceNumber` only numbers them), so an event
moves an attempt only forward in the order below, and a terminal status is never left. The
end state is therefore the same whatever order a call's events arrive in.

```
dialing ─▶ placing ─▶ queued ─▶ initiated ─▶ ringing ─▶ in-progress ─▶ completed
   │          │          └──────────┴───────────┴────────────┴──────▶ busy | no-answer
   │          │                                                        | failed | canceled
   └──────────┴─▶ not-placed (no call was made) ─▶ queued (a late call, adopted: `revive`)
```

A contact's status changes only in `move_job` (one `JobStep` at a time), or in bulk in
`cancel_pending_jobs` and `expire_pending_jobs`; a pending contact's due time moves in
`reschedule`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session

from dialer.errors import ConflictError
from models import (
    TERMINAL_ATTEMPT_STATUSES,
    AttemptStatus,
    CallJob,
    EndReason,
    JobStatus,
    Outcome,
)

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

RETRY_DELAY_MIN_S = 60
RETRY_DELAY_MAX_S = 7 * 86400
"""Bounds of a retry delay an operator sets, seconds (`campaigns.options.RetryRule`)."""

DEFAULT_RETRY_POLICY: dict[str, dict[str, Any]] = {
    Outcome.BUSY: {"retry": True, "delay_s": 600},
    Outcome.NO_ANSWER: {"retry": True, "delay_s": 3600},
    Outcome.FAILED: {"retry": True, "delay_s": 600},
    Outcome.MACHINE: {"retry": False, "delay_s": 3600},
}
"""Per-outcome retry matrix used where a campaign sets nothing: outcome -> retry, delay (s).
Its keys are the outcomes that may retry: an answered call, a rejected number, a hold cap,
never."""


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


class AttemptState(Protocol):
    """What the state machine reads and writes of an attempt: a `models.CallAttempt` row,
    or the webhook fast path's plain `AttemptRow`."""

    status: AttemptStatus
    call_sid: str | None
    answered_by: str | None
    last_sequence: int
    placed_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    duration_s: int | None
    error_code: int | None
    error_message: str | None


def _require(attempt: AttemptState, allowed: frozenset[AttemptStatus], to: str) -> None:
    if attempt.status not in allowed:
        raise ConflictError("invalid_state", f"attempt in {attempt.status} cannot become {to}")


def mark_placing(attempt: AttemptState, now: datetime) -> None:
    """dialing -> placing: the create request may leave from now on.

    Raises:
        ConflictError: `invalid_state`, the attempt is not `dialing`.
    """
    _require(attempt, frozenset({AttemptStatus.DIALING}), AttemptStatus.PLACING)
    attempt.status = AttemptStatus.PLACING
    attempt.placed_at = now


def mark_not_placed(
    attempt: AttemptState,
    now: datetime,
    error_code: int | None = None,
    error_message: str | None = None,
) -> None:
    """dialing | placing -> not-placed: no call was made for this attempt, for good.

    Raises:
        ConflictError: `invalid_state`, the attempt is past `placing`.
    """
    _require(
        attempt,
        frozenset({AttemptStatus.DIALING, AttemptStatus.PLACING}),
        AttemptStatus.NOT_PLACED,
    )
    attempt.status = AttemptStatus.NOT_PLACED
    attempt.ended_at = now
    attempt.error_code = error_code
    attempt.error_message = error_message


def revive(attempt: AttemptState, call_sid: str) -> None:
    """not-placed -> queued: a call turned up late for an attempt given up without one,
    and is adopted (`dialer.dispatch.dialing.resolve_late_call`). Its later statuses come
    from callbacks.

    Raises:
        ConflictError: `invalid_state`, the attempt is not `not-placed`, or has a call.
    """
    if attempt.call_sid is not None:
        raise ConflictError("invalid_state", f"attempt already has call {attempt.call_sid}")
    _require(attempt, frozenset({AttemptStatus.NOT_PLACED}), AttemptStatus.QUEUED)
    attempt.status = AttemptStatus.QUEUED
    attempt.call_sid = call_sid
    attempt.ended_at = None


def apply_event(attempt: AttemptState, event: CallEvent) -> bool:
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
        attempt.answered_at = _after_placing(attempt, event.timestamp)
    if not is_terminal(event.status):
        return False
    attempt.ended_at = _after_placing(attempt, event.timestamp)
    if event.duration_s is not None:
        attempt.duration_s = event.duration_s
        # Derived the same way whichever event came first, so the end state is order-free.
        if event.status is AttemptStatus.COMPLETED and event.duration_s > 0:
            answered = event.timestamp - timedelta(seconds=event.duration_s)
            attempt.answered_at = _after_placing(attempt, answered)
    return True


@dataclass(slots=True)
class _Placing:
    """An attempt in `placing` with no call yet, as far as `call_answered` needs one."""

    status: AttemptStatus = AttemptStatus.PLACING
    call_sid: str | None = None
    answered_by: str | None = None
    last_sequence: int = -1
    placed_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: int | None = None
    error_code: int | None = None
    error_message: str | None = None


PLACING_WITHOUT_CALL = {"status": AttemptStatus.PLACING, "call_sid": None}
"""The state `call_answered`'s move starts from: what a guarded write asserts."""


def call_answered(call_sid: str, at: datetime) -> dict[str, object]:
    """The columns `apply_event` changes when the create request of an attempt in
    `placing` with no call yet (`PLACING_WITHOUT_CALL`) is answered with `call_sid`: the
    move a single guarded UPDATE applies (`... WHERE status = 'placing' AND call_sid IS
    NULL`, `dialer.dispatch.dialing`), so the state machine decides it there too. Columns
    it leaves as they are (`last_sequence`, `placed_at`, ...) are not in the result.
    """
    attempt = _Placing()
    before = {name: getattr(attempt, name) for name in _Placing.__slots__}
    apply_event(attempt, CallEvent(AttemptStatus.QUEUED, -1, at, call_sid))
    return {
        name: getattr(attempt, name)
        for name in _Placing.__slots__
        if getattr(attempt, name) != before[name]
    }


def _after_placing(attempt: AttemptState, at: datetime) -> datetime:
    """A provider's time `at`, no earlier than the attempt's `placed_at` (our clock), so an
    attempt's times stay in order: created, placed, answered, ended. The provider's clock
    is not ours, its `Timestamp` is in whole seconds, and the simulator under a time scale
    reports durations (`CallDuration`) in simulated seconds against wall-clock times: an
    answer worked back from the end (end - duration) can fall before the call was placed."""
    return at if attempt.placed_at is None else max(at, attempt.placed_at)


def outcome_of(
    status: AttemptStatus, answered_by: str | None, end_reason: EndReason | None
) -> Outcome:
    """The contact-level outcome of an attempt that ended in `status` (terminal)."""
    if end_reason is EndReason.HOLD_CAP:
        return Outcome.HOLD_CAP
    match status:
        case AttemptStatus.COMPLETED:
            return Outcome.MACHINE if answered_by in MACHINE_ANSWERS else Outcome.ANSWERED
        case AttemptStatus.BUSY:
            return Outcome.BUSY
        case AttemptStatus.NO_ANSWER:
            return Outcome.NO_ANSWER
        case AttemptStatus.CANCELED:
            return Outcome.CANCELED
        case _:
            return Outcome.FAILED


def retry_delay(
    retry_policy: Mapping[str, Any] | None,
    max_attempts: int,
    outcome: Outcome,
    attempts_made: int,
) -> float | None:
    """Seconds until the next attempt for a contact whose attempt ended with `outcome`, or
    None when the contact is done (answered, not retryable, or `max_attempts` reached).

    `retry_policy` is the campaign's stored matrix (`campaigns.retry_policy`); it is read
    typed, rule by rule: an outcome outside `DEFAULT_RETRY_POLICY` never retries whatever
    is stored, and a rule that is not `{"retry": bool, "delay_s": finite seconds >= 0}`
    (stored before the operator schema checked it) counts as absent: the default applies.
    So no stored value can make this raise inside a callback batch."""
    if attempts_made >= max_attempts or outcome not in DEFAULT_RETRY_POLICY:
        return None
    retry, delay_s = _rule(retry_policy, outcome)
    return delay_s if retry else None


def _rule(retry_policy: Mapping[str, Any] | None, outcome: Outcome) -> tuple[bool, float]:
    default = DEFAULT_RETRY_POLICY[outcome]
    rule = (retry_policy or {}).get(outcome) if isinstance(retry_policy, Mapping) else None
    if isinstance(rule, Mapping):
        retry, delay_s = rule.get("retry"), rule.get("delay_s")
        if (
            isinstance(retry, bool)
            and isinstance(delay_s, int | float)
            and not isinstance(delay_s, bool)
            and math.isfinite(delay_s)
            and 0 <= delay_s <= RETRY_DELAY_MAX_S
        ):
            return retry, float(delay_s)
    return bool(default["retry"]), float(default["delay_s"])


@dataclass(frozen=True, slots=True)
class JobStep:
    """A contact's next state: status, final outcome (when done), when it is next due
    (None: unchanged), and its two counters' new values."""

    status: JobStatus
    attempt_count: int
    dial_error_count: int
    outcome: Outcome | None = None
    next_due_at: datetime | None = None


_JOB_MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.IN_PROGRESS, JobStatus.DONE, JobStatus.CANCELED}),
    JobStatus.IN_PROGRESS: frozenset({JobStatus.PENDING, JobStatus.DONE, JobStatus.CANCELED}),
}
"""Which contact statuses may follow which; `done` and `canceled` are final."""


def move_job(job: CallJob, step: JobStep) -> None:
    """Apply `step` to `job`: the one place a contact's status changes (row by row).

    Raises:
        ConflictError: `invalid_state`, the job is final or the move is not allowed.
    """
    if step.status not in _JOB_MOVES.get(job.status, frozenset()):
        raise ConflictError("invalid_state", f"contact in {job.status} cannot become {step.status}")
    job.status = step.status
    if step.status is not JobStatus.PENDING:
        job.capped_until = None
    job.attempt_count = step.attempt_count
    job.dial_error_count = step.dial_error_count
    if step.outcome is not None:
        job.outcome = step.outcome
    if step.next_due_at is not None:
        job.next_due_at = step.next_due_at


def claimed(job: CallJob) -> JobStep:
    """pending -> in progress: the pacer took a lease and created an attempt for it."""
    return JobStep(JobStatus.IN_PROGRESS, job.attempt_count + 1, job.dial_error_count)


def canceled(job: CallJob) -> JobStep:
    """pending -> canceled: the call itself was cancelled before it was dialled."""
    return JobStep(JobStatus.CANCELED, job.attempt_count, job.dial_error_count)


def expired(job: CallJob) -> JobStep:
    """pending -> done, outcome `expired`: not dialled before its `call_before`."""
    return JobStep(JobStatus.DONE, job.attempt_count, job.dial_error_count, Outcome.EXPIRED)


def reschedule(job: CallJob, due: datetime, *, capped_until: datetime | None = None) -> None:
    """A pending contact the pacer claimed but may not dial now (its calling window has
    closed, its number is over a frequency cap): due again at `due`, status unchanged.
    `capped_until`: when the number leaves the frequency cap, if the cap is why (else the
    hold is cleared: `held_by_cap`).

    Raises:
        ConflictError: `invalid_state`, the job is not pending.
    """
    if job.status is not JobStatus.PENDING:
        raise ConflictError("invalid_state", f"contact in {job.status} cannot be rescheduled")
    job.next_due_at = due
    job.capped_until = capped_until


def held_by_cap(job: CallJob, now: datetime) -> datetime | None:
    """When a contact held by the account's per-number frequency caps
    (`Account.frequency_caps`, `dialer.frequency`) may be dialled again (its due time: the
    first opening of its window once every cap allows the number), or None if no cap holds
    it at `now` (not pending, never capped, or due already)."""
    if job.status is not JobStatus.PENDING or job.capped_until is None:
        return None
    return job.next_due_at if job.next_due_at > now else None


def expire_pending_jobs(session: Session, campaign_id: int) -> list[int]:
    """pending -> done, outcome `expired`, for every pending contact of a campaign past its
    `end_at`, in one statement (the bulk form of `move_job`). Returns their ids."""
    result = session.execute(
        update(CallJob)
        .where(CallJob.campaign_id == campaign_id, CallJob.status == JobStatus.PENDING)
        .values(status=JobStatus.DONE, outcome=Outcome.EXPIRED)
        .returning(CallJob.id)
    )
    return list(result.scalars())


def cancel_pending_jobs(session: Session, campaign_id: int) -> list[int]:
    """pending -> canceled for every contact of a cancelled campaign, in one statement
    (the bulk form of `move_job`; contacts in progress end with their attempt). Returns
    their ids."""
    result = session.execute(
        update(CallJob)
        .where(CallJob.campaign_id == campaign_id, CallJob.status == JobStatus.PENDING)
        .values(status=JobStatus.CANCELED)
        .returning(CallJob.id)
    )
    return list(result.scalars())
