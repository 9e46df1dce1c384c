"""The call state machine: forward-only, terminal is final, order does not matter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.calls import (
    CallEvent,
    JobStep,
    apply_event,
    call_answered,
    claimed,
    mark_not_placed,
    mark_placing,
    move_job,
    outcome_of,
    retry_delay,
)
from dialer.errors import ConflictError
from models import AttemptStatus, CallAttempt, CallJob, EndReason, JobStatus, Outcome

SID = "CA" + "a" * 32
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def attempt() -> CallAttempt:
    return CallAttempt(
        status=AttemptStatus.PLACING, last_sequence=-1, call_sid=None, answered_by=None
    )


def event(status: AttemptStatus | None, seq: int, **kw: object) -> CallEvent:
    return CallEvent(
        status=status,
        sequence=seq,
        timestamp=T0 + timedelta(seconds=seq),
        call_sid=SID,
        **kw,  # type: ignore[arg-type]
    )


ANSWERED_LIFE = [
    event(AttemptStatus.INITIATED, 0),
    event(AttemptStatus.RINGING, 1),
    event(AttemptStatus.IN_PROGRESS, 2, answered_by="human"),
    event(None, 3, answered_by="human"),
    event(AttemptStatus.COMPLETED, 4, duration_s=42, answered_by="human"),
]


def test_a_ringing_after_completed_changes_nothing() -> None:
    a = attempt()
    assert apply_event(a, ANSWERED_LIFE[-1]) is True
    before = (a.status, a.ended_at, a.duration_s, a.answered_at)
    assert apply_event(a, ANSWERED_LIFE[1]) is False
    assert (a.status, a.ended_at, a.duration_s, a.answered_at) == before
    assert a.status is AttemptStatus.COMPLETED


def test_duplicates_change_nothing() -> None:
    a = attempt()
    apply_event(a, ANSWERED_LIFE[0])
    assert apply_event(a, ANSWERED_LIFE[0]) is False
    assert a.status is AttemptStatus.INITIATED


@given(st.permutations(ANSWERED_LIFE), st.integers(min_value=0, max_value=4))
def test_end_state_does_not_depend_on_order(events: list[CallEvent], dup: int) -> None:
    a = attempt()
    ended = [apply_event(a, e) for e in [*events, events[dup]]]
    assert ended.count(True) == 1
    assert a.status is AttemptStatus.COMPLETED
    assert a.duration_s == 42
    assert a.answered_by == "human"
    assert a.answered_at == T0 + timedelta(seconds=4) - timedelta(seconds=42)
    assert a.ended_at == T0 + timedelta(seconds=4)
    assert outcome_of(a.status, a.answered_by, a.end_reason) is Outcome.ANSWERED


def test_outcomes() -> None:
    a = attempt()
    apply_event(a, event(AttemptStatus.COMPLETED, 3, duration_s=20, answered_by="machine_end_beep"))
    assert outcome_of(a.status, a.answered_by, a.end_reason) is Outcome.MACHINE
    b = attempt()
    apply_event(b, event(AttemptStatus.NO_ANSWER, 2))
    assert outcome_of(b.status, b.answered_by, b.end_reason) is Outcome.NO_ANSWER
    c = attempt()
    c.end_reason = EndReason.HOLD_CAP
    apply_event(c, event(AttemptStatus.COMPLETED, 2, duration_s=900))
    assert outcome_of(c.status, c.answered_by, c.end_reason) is Outcome.HOLD_CAP


def test_retry_matrix() -> None:
    policy = {"machine": {"retry": True, "delay_s": 5}}
    assert retry_delay(policy, 3, Outcome.BUSY, 1) == 600
    assert retry_delay(policy, 3, Outcome.NO_ANSWER, 2) == 3600
    assert retry_delay(policy, 3, Outcome.NO_ANSWER, 3) is None
    assert retry_delay(policy, 3, Outcome.ANSWERED, 1) is None
    assert retry_delay(policy, 3, Outcome.MACHINE, 1) == 5
    assert retry_delay({}, 3, Outcome.MACHINE, 1) is None


@pytest.mark.parametrize(
    "stored",
    [
        {"answered": {"retry": True, "delay_s": 60}},
        {"answered": {"retry": True, "delay_s": "x"}},
        {"busy": {"retry": True, "delay_s": "x"}},
        {"busy": {"retry": "yes", "delay_s": 60}},
        {"busy": {"retry": True, "delay_s": float("nan")}},
        {"busy": {"retry": True, "delay_s": -5}},
        {"busy": "often"},
        ["busy"],
    ],
)
def test_a_stored_retry_matrix_is_read_typed_and_never_raises(stored: object) -> None:
    """Matrices stored before the operator schema typed them: an answered call never
    retries, and a malformed rule is the default one, never an exception inside a batch."""
    assert retry_delay(stored, 3, Outcome.ANSWERED, 1) is None  # type: ignore[arg-type]
    assert retry_delay(stored, 3, Outcome.BUSY, 1) == 600  # type: ignore[arg-type]


def test_our_own_two_states_check_their_source() -> None:
    a = CallAttempt(status=AttemptStatus.DIALING)
    mark_placing(a, T0)
    assert (a.status, a.placed_at) == (AttemptStatus.PLACING, T0)
    with pytest.raises(ConflictError) as refused:
        mark_placing(a, T0)
    assert refused.value.code == "invalid_state"
    mark_not_placed(a, T0, 20429, "Too Many Requests")
    assert (a.status, a.ended_at, a.error_code) == (AttemptStatus.NOT_PLACED, T0, 20429)
    live = attempt()
    apply_event(live, event(AttemptStatus.RINGING, 1))
    with pytest.raises(ConflictError):
        mark_not_placed(live, T0)
    assert live.status is AttemptStatus.RINGING


def test_contacts_move_only_along_the_job_table() -> None:
    job = CallJob(status=JobStatus.PENDING, attempt_count=0, dial_error_count=0)
    move_job(job, claimed(job))
    assert (job.status, job.attempt_count) == (JobStatus.IN_PROGRESS, 1)
    move_job(job, JobStep(JobStatus.DONE, 1, 0, outcome=Outcome.ANSWERED))
    assert (job.status, job.outcome) == (JobStatus.DONE, Outcome.ANSWERED)
    with pytest.raises(ConflictError):
        move_job(job, JobStep(JobStatus.PENDING, 1, 0))
    assert job.status is JobStatus.DONE


def test_a_providers_times_never_come_before_the_attempt_was_placed() -> None:
    # The provider's clock is in whole seconds and the simulator's durations are simulated
    # seconds: the end minus 42 s of talk lies before the placing.
    a = attempt()
    a.placed_at = T0 + timedelta(seconds=3, milliseconds=500)
    for e in ANSWERED_LIFE:
        apply_event(a, e)
    assert a.answered_at == a.placed_at
    assert a.ended_at == T0 + timedelta(seconds=4)
    early = attempt()
    early.placed_at = T0 + timedelta(seconds=9)
    apply_event(early, ANSWERED_LIFE[-1])
    assert early.answered_at == early.ended_at == early.placed_at


def test_call_answered_is_the_move_apply_event_makes_from_placing_without_a_call() -> None:
    # What the guarded one-statement write of `place_call` sets is the state machine's move.
    placing = attempt()
    placing.placed_at = T0
    placing.last_sequence = 4
    apply_event(placing, CallEvent(AttemptStatus.QUEUED, -1, T0, SID))
    assert call_answered(SID, T0) == {"status": AttemptStatus.QUEUED, "call_sid": SID}
    assert (placing.status, placing.call_sid) == (AttemptStatus.QUEUED, SID)
    assert placing.last_sequence == 4 and placing.placed_at == T0  # left as they were
