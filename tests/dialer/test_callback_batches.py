"""Callbacks applied in batches (`record_callbacks`, `CallbackBatcher`): one transaction for
many callbacks must give each the answer it would have had alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pytest
from sqlalchemy import func, select, text
from structlog.testing import capture_logs

from campaigns import counters
from dialer.dispatch import callbacks
from dialer.dispatch.callbacks import (
    Callback,
    CallbackBatcher,
    CallbackKind,
    CallbackResult,
    MalformedCallbackError,
    record_callbacks,
)
from dialer.errors import NotFoundError
from dialer.metrics import CALLBACK_APPLY_FAILURES, CALLBACK_BATCH_SIZE
from dialer.pool import Keys
from dialer.runtime import Runtime
from models import (
    AttemptStatus,
    CallAttempt,
    CallJob,
    CampaignStatus,
    JobStatus,
    Outcome,
    ProviderEvent,
    transaction,
)
from models.asyncdb import AsyncPool, async_pool
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.support import POISONED_POLICY, hold_lease, poison_retry_reader

T = TypeVar("T")


def _sid(n: int) -> str:
    return f"CA{n:032x}"


def _status(attempt_id: int, sid: str, call_status: str, seq: int, **more: str) -> Callback:
    params = {
        "CallSid": sid,
        "CallStatus": call_status,
        "SequenceNumber": str(seq),
        "Timestamp": f"Sat, 21 Nov 2026 12:00:{10 * seq:02d} +0000",
        **more,
    }
    return Callback.parse(attempt_id, CallbackKind.STATUS, params)


def _live_attempts(runtime: Runtime, count: int, *, sids: bool = True) -> list[int]:
    """`count` queued attempts (call sids `_sid(i)` unless `sids` is False) of one running
    campaign, each holding its lease."""
    with transaction(runtime.settings.database_url) as session:
        campaign = make_campaign(
            session,
            make_account(session, max_concurrency=50),
            status=CampaignStatus.RUNNING,
            max_concurrency=50,
        )
        ids = []
        for i in range(count):
            job = make_job(
                session,
                campaign,
                f"+1212555{i:04d}",
                status=JobStatus.IN_PROGRESS,
                attempt_count=1,
            )
            status = AttemptStatus.QUEUED if sids else AttemptStatus.PLACING
            ids.append(
                make_attempt(session, job, status=status, call_sid=_sid(i) if sids else None).id
            )
    for attempt_id in ids:
        hold_lease(runtime, attempt_id)
    return ids


def _run(runtime: Runtime, work: Callable[[AsyncPool], Awaitable[T]]) -> T:
    async def go() -> T:
        pool = async_pool(runtime.settings.database_url, 2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


def _attempt(runtime: Runtime, attempt_id: int) -> tuple[CallAttempt, CallJob, int]:
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        job = session.get_one(CallJob, attempt.job_id)
        events = session.scalar(
            select(func.count())
            .select_from(ProviderEvent)
            .where(ProviderEvent.attempt_id == attempt_id)
        )
        session.expunge_all()
        return attempt, job, events or 0


def _counters_agree(runtime: Runtime, campaign_id: int) -> bool:
    with transaction(runtime.settings.database_url) as session:
        kept, _ = counters.read(session, campaign_id, datetime.now(UTC))
        return kept == counters.recount(session, campaign_id)[0]


def test_a_batch_applies_each_call_in_order_and_answers_each_callback(runtime: Runtime) -> None:
    whole, ringing_only, late_ringing = _live_attempts(runtime, 3)
    batch = [
        _status(whole, _sid(0), "initiated", 0),
        _status(ringing_only, _sid(1), "ringing", 1),
        _status(whole, _sid(0), "ringing", 1),
        _status(whole, _sid(0), "ringing", 1),  # a duplicate inside the batch
        _status(999_999, _sid(9), "ringing", 1),  # no such attempt
        _status(whole, _sid(0), "in-progress", 2),
        _status(late_ringing, _sid(2), "completed", 3, CallDuration="12"),
        _status(whole, _sid(0), "completed", 3, CallDuration="30"),
        _status(late_ringing, _sid(2), "ringing", 1),  # stale: its call already ended
    ]
    results = _run(runtime, lambda pool: record_callbacks(pool, runtime, batch))

    assert [type(r) for r in results] == [CallbackResult] * 4 + [NotFoundError] + [
        CallbackResult
    ] * 4
    stored = [r.stored for r in results if isinstance(r, CallbackResult)]
    assert stored == [True, True, True, False, True, True, True, True]
    ended = [r.ended for r in results if isinstance(r, CallbackResult)]
    assert ended == [False, False, False, False, False, True, True, False]

    attempt, job, events = _attempt(runtime, whole)
    assert attempt.status is AttemptStatus.COMPLETED and attempt.duration_s == 30
    assert attempt.last_sequence == 3 and events == 4
    assert job.status is JobStatus.DONE and job.outcome is Outcome.ANSWERED
    attempt, job, events = _attempt(runtime, ringing_only)
    assert attempt.status is AttemptStatus.RINGING and events == 1
    assert job.status is JobStatus.IN_PROGRESS
    attempt, job, events = _attempt(runtime, late_ringing)
    assert attempt.status is AttemptStatus.COMPLETED and events == 2
    assert job.status is JobStatus.DONE
    # Each ended call's lease was released once, the live one's kept.
    pool_key = Keys(attempt.account_id).account_pool()
    assert runtime.redis.zrange(pool_key, 0, -1) == [str(ringing_only).encode()]
    assert _counters_agree(runtime, attempt.campaign_id)


def test_a_call_sid_is_given_to_one_attempt_only(runtime: Runtime) -> None:
    """A callback carrying another attempt's call sid (in the database or earlier in the
    same batch) is stored and not applied: the sid stays unique, the batch goes through."""
    owner, first, second = _live_attempts(runtime, 3, sids=False)
    taken = _sid(7)
    _run(
        runtime,
        lambda pool: record_callbacks(pool, runtime, [_status(owner, taken, "ringing", 1)]),
    )
    batch = [
        _status(first, taken, "in-progress", 2),  # the sid is the owner's in the database
        _status(second, _sid(8), "ringing", 1),
        _status(first, _sid(8), "in-progress", 2),  # the sid is second's, earlier in the batch
    ]
    results = _run(runtime, lambda pool: record_callbacks(pool, runtime, batch))

    assert all(isinstance(r, CallbackResult) and r.stored for r in results)
    assert _attempt(runtime, owner)[0].call_sid == taken
    assert _attempt(runtime, second)[0].call_sid == _sid(8)
    attempt, _, events = _attempt(runtime, first)
    assert attempt.call_sid is None and attempt.status is AttemptStatus.PLACING
    assert events == 2


def test_an_event_the_database_refuses_fails_only_its_own_callback(runtime: Runtime) -> None:
    good, refused, other = _live_attempts(runtime, 3)
    with transaction(runtime.settings.database_url) as session:
        # A rule of the database that only this attempt's change breaks.
        session.execute(
            text(
                "ALTER TABLE call_attempts ADD CONSTRAINT test_refused"
                f" CHECK (id <> {refused} OR status <> 'ringing') NOT VALID"
            )
        )
    try:
        batch = [
            _status(good, _sid(0), "ringing", 1),
            _status(refused, _sid(1), "ringing", 1),
            _status(other, _sid(2), "in-progress", 2),
        ]
        results = _run(runtime, lambda pool: record_callbacks(pool, runtime, batch))
    finally:
        with transaction(runtime.settings.database_url) as session:
            session.execute(text("ALTER TABLE call_attempts DROP CONSTRAINT test_refused"))

    assert isinstance(results[0], CallbackResult) and results[0].stored
    assert isinstance(results[1], psycopg.errors.CheckViolation)
    assert isinstance(results[2], CallbackResult) and results[2].stored
    assert _attempt(runtime, good)[0].status is AttemptStatus.RINGING
    attempt, _, events = _attempt(runtime, refused)
    assert attempt.status is AttemptStatus.QUEUED and events == 0  # nothing half-written
    assert _attempt(runtime, other)[0].status is AttemptStatus.IN_PROGRESS


def _batch_sizes() -> tuple[float, float]:
    samples = {s.name: s.value for s in CALLBACK_BATCH_SIZE.collect()[0].samples}
    return (
        samples["dialer_provider_callback_batch_size_sum"],
        samples["dialer_provider_callback_batch_size_count"],
    )


def test_the_batcher_groups_callbacks_that_arrive_together(runtime: Runtime) -> None:
    attempts = _live_attempts(runtime, 12)
    sum_before, count_before = _batch_sizes()

    async def work(pool: AsyncPool) -> list[Any]:
        batcher = CallbackBatcher(pool, runtime)

        async def one_call(i: int, attempt_id: int) -> list[CallbackResult]:
            return [
                await batcher.record(attempt_id, CallbackKind.STATUS, c.params)
                for c in (
                    _status(attempt_id, _sid(i), "ringing", 1),
                    _status(attempt_id, _sid(i), "in-progress", 2),
                    _status(attempt_id, _sid(i), "completed", 3, CallDuration="20"),
                )
            ]

        calls = [one_call(i, attempt_id) for i, attempt_id in enumerate(attempts)]
        malformed = batcher.record(attempts[0], CallbackKind.STATUS, {"CallSid": "nope"})
        missing = batcher.record(
            999_999, CallbackKind.STATUS, _status(1, _sid(1), "busy", 1).params
        )
        return await asyncio.gather(*calls, malformed, missing, return_exceptions=True)

    *calls, malformed, missing = _run(runtime, work)

    assert isinstance(malformed, MalformedCallbackError)
    assert isinstance(missing, NotFoundError)
    for results in calls:
        assert [(r.stored, r.ended) for r in results] == [
            (True, False),
            (True, False),
            (True, True),
        ]
    for attempt_id in attempts:
        attempt, job, events = _attempt(runtime, attempt_id)
        assert attempt.status is AttemptStatus.COMPLETED and events == 3
        assert job.status is JobStatus.DONE
    sum_after, count_after = _batch_sizes()
    applied = 12 * 3 + 1  # the callback for no attempt was in a batch too
    assert sum_after - sum_before == applied
    assert count_after - count_before < applied  # grouped: fewer transactions than callbacks


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("SequenceNumber", str(2**31)),
        ("CallDuration", "-5"),
        ("CallDuration", str(2**40)),
        ("AnsweredBy", "m" * 33),
        ("CallStatus", "ringing\x00"),
        ("Digits", "1\x00"),
    ],
)
def test_values_the_columns_cannot_hold_are_malformed(field: str, value: str) -> None:
    params = {"CallSid": _sid(1), "CallStatus": "completed", field: value}
    with pytest.raises(MalformedCallbackError):
        Callback.parse(1, CallbackKind.STATUS, params)


@pytest.mark.parametrize("in_flight", [1, 2])
def test_callbacks_one_after_another_are_each_answered(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, in_flight: int
) -> None:
    """A callback that arrives just as the last batch ends (its drainer done, not yet
    forgotten) starts a batch of its own: none waits forever."""
    monkeypatch.setattr(callbacks, "BATCHES_IN_FLIGHT", in_flight)
    attempts = _live_attempts(runtime, 2)

    async def work(pool: AsyncPool) -> None:
        batcher = CallbackBatcher(pool, runtime)

        async def one_call(i: int, attempt_id: int) -> None:
            for call_status, seq in (("ringing", 1), ("in-progress", 2), ("completed", 3)):
                params = _status(attempt_id, _sid(i), call_status, seq, CallDuration="9").params
                await batcher.record(attempt_id, CallbackKind.STATUS, params)

        calls = (one_call(i, attempt_id) for i, attempt_id in enumerate(attempts))
        await asyncio.wait_for(asyncio.gather(*calls), timeout=20)

    _run(runtime, work)
    for attempt_id in attempts:
        assert _attempt(runtime, attempt_id)[0].status is AttemptStatus.COMPLETED


def _apply_failures() -> float:
    return CALLBACK_APPLY_FAILURES.collect()[0].samples[0].value


def test_a_callback_that_fails_to_apply_does_not_fail_another_accounts_in_its_batch(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Account A's campaign holds a retry policy written before any check (old data): its
    busy callback makes the state machine raise. Account B's callback in the same batch is
    applied and answered; A's is stored once, answered, logged and counted, and its attempt
    is left as it was for the reaper to apply later."""
    poison_retry_reader(monkeypatch)
    with transaction(runtime.settings.database_url) as session:
        attempts = []
        for name, policy in (("a", POISONED_POLICY), ("b", {})):
            campaign = make_campaign(
                session,
                make_account(session, name),
                status=CampaignStatus.RUNNING,
                retry_policy=policy,
            )
            job = make_job(
                session, campaign, "+12125550100", status=JobStatus.IN_PROGRESS, attempt_count=1
            )
            attempts.append(
                make_attempt(
                    session, job, status=AttemptStatus.QUEUED, call_sid=_sid(len(attempts))
                ).id
            )
    poisoned, other = attempts
    for attempt_id in attempts:
        hold_lease(runtime, attempt_id)
    failures = _apply_failures()
    batch = [
        _status(poisoned, _sid(0), "busy", 1),
        _status(other, _sid(1), "completed", 1, CallDuration="20"),
    ]
    with capture_logs() as logs:
        results = _run(runtime, lambda pool: record_callbacks(pool, runtime, batch))

    assert results == [
        CallbackResult(stored=True, apply_failed=True),
        CallbackResult(stored=True, ended=True),
    ]
    attempt, job, events = _attempt(runtime, other)
    assert attempt.status is AttemptStatus.COMPLETED and job.status is JobStatus.DONE
    attempt, job, events = _attempt(runtime, poisoned)
    assert (attempt.status, job.status, events) == (
        AttemptStatus.QUEUED,
        JobStatus.IN_PROGRESS,
        1,  # its raw event is stored once: nothing is lost
    )
    assert _apply_failures() == failures + 1
    [logged] = [e for e in logs if e["event"] == "callback_apply_failed"]
    assert logged["attempt_id"] == poisoned and logged["exc_info"] is True
    # Only the ended call's lease was released.
    assert runtime.redis.zrange(Keys(attempt.account_id).account_pool(), 0, -1) == [
        str(poisoned).encode()
    ]
    # Twilio's retry of the same event finds it stored and changes nothing.
    again = _run(runtime, lambda pool: record_callbacks(pool, runtime, batch[:1]))
    assert again == [CallbackResult(stored=False)]
