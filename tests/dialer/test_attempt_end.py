"""`attempt_end.decide`: an ended attempt's consequences, over plain values."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from dialer.dispatch.attempt_end import EndedAttempt, decide
from dialer.pool import Keys, ProviderKeys
from models import AttemptStatus, CampaignStatus, EndReason, JobStatus, Outcome

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
RANG = EndedAttempt(
    attempt_id=41,
    account_id=3,
    campaign_id=5,
    from_e164="+15005550006",
    status=AttemptStatus.NO_ANSWER,
    answered_by=None,
    end_reason=None,
    attempt_count=1,
    dial_error_count=0,
    campaign_status=CampaignStatus.RUNNING,
    max_attempts=3,
    dial_retries=2,
    retry_policy={"no-answer": {"retry": True, "delay_s": 60}},
)


def test_a_retryable_outcome_is_due_after_its_delay_and_frees_every_scope() -> None:
    decision = decide(RANG, NOW)
    assert decision.step.status is JobStatus.PENDING
    assert decision.step.outcome is Outcome.NO_ANSWER
    assert decision.step.next_due_at == NOW + timedelta(seconds=60)
    assert decision.release.member == "41"
    keys = Keys(3)
    assert decision.release.scope_keys == [
        keys.account_pool(),
        ProviderKeys().pool(),
        keys.campaign_pool(5),
        keys.caller_id_pool("+15005550006"),
    ]
    assert decision.release.wake_key == keys.wake()


def test_done_when_answered_or_attempts_spent_and_canceled_with_its_campaign() -> None:
    answered = decide(replace(RANG, status=AttemptStatus.COMPLETED, answered_by="human"), NOW)
    assert (answered.step.status, answered.step.outcome) == (JobStatus.DONE, Outcome.ANSWERED)
    spent = decide(replace(RANG, attempt_count=3), NOW)
    assert (spent.step.status, spent.step.outcome) == (JobStatus.DONE, Outcome.NO_ANSWER)
    canceled = decide(replace(RANG, campaign_status=CampaignStatus.CANCELED), NOW)
    assert canceled.step.status is JobStatus.CANCELED
    held = decide(replace(RANG, status=AttemptStatus.COMPLETED, end_reason=EndReason.HOLD_CAP), NOW)
    assert held.step.outcome is Outcome.HOLD_CAP


def test_a_call_never_made_gives_its_attempt_back_and_spends_a_dial_retry() -> None:
    lost = replace(RANG, status=AttemptStatus.NOT_PLACED)
    again = decide(lost, NOW)
    assert (again.step.status, again.step.attempt_count) == (JobStatus.PENDING, 0)
    assert again.step.dial_error_count == 1
    assert again.step.next_due_at is not None and again.step.next_due_at <= NOW + timedelta(
        seconds=1
    )
    waits = decide(replace(lost, retry_after_s=60.0), NOW)
    assert waits.step.next_due_at is not None
    assert waits.step.next_due_at >= NOW + timedelta(seconds=60)
    spent = decide(replace(lost, dial_error_count=2), NOW)
    assert (spent.step.status, spent.step.outcome) == (JobStatus.DONE, Outcome.DIAL_ERROR)
    refused = decide(replace(lost, unplaced_outcome=Outcome.REJECTED), NOW)
    assert (refused.step.status, refused.step.outcome) == (JobStatus.DONE, Outcome.REJECTED)
    breaker = decide(replace(lost, counts_as_dial_error=False), NOW)
    assert (breaker.step.status, breaker.step.dial_error_count) == (JobStatus.PENDING, 0)
