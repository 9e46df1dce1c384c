"""The call state machine: forward-only, terminal is final, order does not matter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dialer.calls import CallEvent, apply_event, outcome_of, retry_delay
from models import AttemptStatus, CallAttempt, Campaign, Outcome

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
    assert outcome_of(a) is Outcome.ANSWERED


def test_outcomes() -> None:
    a = attempt()
    apply_event(a, event(AttemptStatus.COMPLETED, 3, duration_s=20, answered_by="machine_end_beep"))
    assert outcome_of(a) is Outcome.MACHINE
    b = attempt()
    apply_event(b, event(AttemptStatus.NO_ANSWER, 2))
    assert outcome_of(b) is Outcome.NO_ANSWER
    c = attempt()
    c.end_reason = "hold_cap"
    apply_event(c, event(AttemptStatus.COMPLETED, 2, duration_s=900))
    assert outcome_of(c) is Outcome.HOLD_CAP


def test_retry_matrix() -> None:
    campaign = Campaign(max_attempts=3, retry_policy={"machine": {"retry": True, "delay_s": 5}})
    assert retry_delay(campaign, Outcome.BUSY, 1) == 600
    assert retry_delay(campaign, Outcome.NO_ANSWER, 2) == 3600
    assert retry_delay(campaign, Outcome.NO_ANSWER, 3) is None
    assert retry_delay(campaign, Outcome.ANSWERED, 1) is None
    assert retry_delay(campaign, Outcome.MACHINE, 1) == 5
    assert retry_delay(Campaign(max_attempts=3, retry_policy={}), Outcome.MACHINE, 1) is None
