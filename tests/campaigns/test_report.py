"""The campaign report: every figure against a campaign whose outcomes are known, built
through the real paths (the webhook's fast path `CallbackBatcher`, the ORM's
`finish_call` / `end_unplaced`, the bulk cancel), and the counters against a recount."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from rich.console import Console
from rich.live import Live
from sqlalchemy import select

from campaigns import counters, lifecycle
from campaigns.options import CampaignOptions
from campaigns.reports import campaign_report
from dialer.calls import CallEvent, JobStep, apply_event, cancel_pending_jobs, move_job
from dialer.campaign_state import BREAKER, CampaignAction, transition
from dialer.cli.render import outcome_rows, report_table
from dialer.dispatch.attempt_end import end_unplaced, finish_call
from dialer.dispatch.callbacks import CallbackBatcher, CallbackKind
from dialer.errors import NotFoundError
from dialer.pool import Keys
from dialer.runtime import Runtime
from models import (
    AttemptStatus,
    CallAttempt,
    CallJob,
    Campaign,
    CampaignCounter,
    CampaignStatus,
    EndReason,
    JobStatus,
    Outcome,
    engine_for,
    transaction,
    utcnow,
)
from models.asyncdb import async_pool
from tests.factories import make_account, make_attempt, make_campaign, make_job
from workers.tasks import fold_counters_task

T0 = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=10)
"""The minute the known campaign's calls start in."""
NOW = T0 + timedelta(minutes=5, seconds=30)
"""The report's clock."""


def _sid(n: int) -> str:
    return f"CA{n:032x}"


def callback(runtime: Runtime, attempt_id: int, kind: CallbackKind, **params: str) -> None:
    """One verified callback through the webhook's fast path (`CallbackBatcher`)."""

    async def go() -> None:
        pool = async_pool(runtime.settings.database_url, 2)
        try:
            await CallbackBatcher(pool, runtime).record(attempt_id, kind, params)
        finally:
            await pool.close()

    asyncio.run(go())


def status(
    runtime: Runtime,
    attempt_id: int,
    sid: str,
    call_status: str,
    at: datetime,
    seq: int,
    **more: str,
) -> None:
    callback(
        runtime,
        attempt_id,
        CallbackKind.STATUS,
        CallSid=sid,
        CallStatus=call_status,
        SequenceNumber=str(seq),
        Timestamp=format_datetime(at, usegmt=True),
        **more,
    )


@dataclass
class Known:
    """The campaign and the ids the checks need."""

    account_id: int
    campaign_id: int
    attempts: dict[str, int] = field(default_factory=dict)


def _placed(session: Any, job: CallJob, n: int, placed: datetime, delay_s: float) -> CallAttempt:
    """A call placed at `placed`, `delay_s` after its contact fell due (queued, sid known)."""
    return make_attempt(
        session,
        job,
        status=AttemptStatus.QUEUED,
        call_sid=_sid(n),
        placed_at=placed,
        due_at=placed - timedelta(seconds=delay_s),
    )


@pytest.fixture
def known(runtime: Runtime) -> Known:
    """A running campaign (max 2 attempts, busy retried) with one contact per case."""
    url = runtime.settings.database_url
    with transaction(url) as session:
        account = make_account(session, max_concurrency=7, cps=5.0)
        campaign = make_campaign(
            session,
            account,
            status=CampaignStatus.RUNNING,
            max_attempts=2,
            max_concurrency=4,
            cps=2.0,
            menu=CampaignOptions(name="r", message="Hi.", gather_dtmf=True).call_menu().stored(),  # type: ignore[union-attr]
            machine_detection=True,
            retry_policy={"busy": {"retry": True, "delay_s": 600}},
            ingest_summary={"rows": 18, "accepted": 16, "rejected": {"invalid": 2}},
        )
        ids = Known(account.id, campaign.id)

        def job(phone: str, **fields: Any) -> CallJob:
            return make_job(session, campaign, phone, **fields)

        in_progress = {"status": JobStatus.IN_PROGRESS, "attempt_count": 1}
        # Calls whose callbacks the webhook's fast path applies below. Delays from due to
        # dial: 0.5 s (bucket [0.5, 1)) for four, 3 s ([2, 5)) for four, 40 s ([30, 60)).
        cases = [
            ("human1", 0.5),
            ("human2", 0.5),
            ("human3", 0.5),
            ("machine", 0.5),
            ("busy", 3),
            ("no_answer", 3),
            ("ringing", 3),
        ]
        for n, (name, delay) in enumerate(cases):
            fields = dict(in_progress)
            if name == "no_answer":
                fields["attempt_count"] = 2  # its second and last attempt
            contact = job(f"+1212555{n:04d}", line_no=n + 2, **fields)
            ids.attempts[name] = _placed(session, contact, n, T0 + timedelta(seconds=n), delay).id
        # Ended through the ORM path (reaper, watchdog, place_call) below.
        failed = job("+12125550100", line_no=20, status=JobStatus.IN_PROGRESS, attempt_count=2)
        ids.attempts["failed"] = _placed(session, failed, 100, T0 + timedelta(minutes=1), 3).id
        held = job("+12125550101", line_no=21, **in_progress)
        ids.attempts["hold_cap"] = _placed(session, held, 101, T0 + timedelta(minutes=1), 40).id
        for name, phone in (("dnc", "+12125550102"), ("rejected", "+12125550103")):
            contact = job(phone, line_no=22, **in_progress)
            ids.attempts[name] = make_attempt(
                session, contact, status=AttemptStatus.PLACING, placed_at=T0
            ).id
        dialing = job("+12125550104", line_no=23, **in_progress)
        ids.attempts["dialing"] = make_attempt(session, dialing).id
        # Contacts never attempted: due, not yet due, expired, cancelled.
        job("+12125550105", line_no=24, next_due_at=T0 - timedelta(hours=1))
        job("+12125550106", line_no=25, next_due_at=NOW + timedelta(hours=2))
        expired = job("+12125550107", line_no=26)
        move_job(expired, JobStep(JobStatus.DONE, 0, 0, outcome=Outcome.EXPIRED))
        cancelled = job("+12125550108", line_no=27)
        move_job(cancelled, JobStep(JobStatus.CANCELED, 0, 0))
    keys = Keys(ids.account_id)
    for name in ("ringing", "dialing"):  # their leases, as the pacer took them
        scopes = [keys.account_pool(), keys.campaign_pool(ids.campaign_id)]
        runtime.pool.hold(str(ids.attempts[name]), 600, scopes)

    a = ids.attempts
    # The fast path: answered by people (DTMF 1, 2, none), a machine, busy, no answer.
    for name, talk, digits in (("human1", 125, "1"), ("human2", 30, "2"), ("human3", 61, None)):
        sid = _sid(list(a).index(name))
        start = T0 + timedelta(minutes=1)
        status(runtime, a[name], sid, "in-progress", start, 2)
        if digits:
            callback(runtime, a[name], CallbackKind.GATHER, CallSid=sid, Digits=digits)
        end = start + timedelta(seconds=talk)
        status(runtime, a[name], sid, "completed", end, 3, CallDuration=str(talk))
    machine_sid = _sid(3)
    status(runtime, a["machine"], machine_sid, "in-progress", T0 + timedelta(minutes=2), 2)
    callback(
        runtime, a["machine"], CallbackKind.AMD, CallSid=machine_sid, AnsweredBy="machine_start"
    )
    status(
        runtime,
        a["machine"],
        machine_sid,
        "completed",
        T0 + timedelta(minutes=2, seconds=20),
        3,
        CallDuration="20",
    )
    for name, call_status in (("busy", "busy"), ("no_answer", "no-answer")):
        sid = _sid(list(a).index(name))
        status(runtime, a[name], sid, call_status, T0 + timedelta(minutes=3), 3, CallDuration="0")
    status(runtime, a["ringing"], _sid(6), "ringing", T0 + timedelta(minutes=3), 1)
    # The ORM path: a failed call found by the reaper, a call hung up at the hold cap, a
    # DNC number and a refused one found by place_call.
    with transaction(url) as session:
        attempt = session.get_one(CallAttempt, a["failed"])
        apply_event(
            attempt,
            CallEvent(AttemptStatus.FAILED, 3, T0 + timedelta(minutes=4), _sid(100), None, 0),
        )
        attempt.error_code = 32009
        finish_call(session, runtime, attempt)
        attempt = session.get_one(CallAttempt, a["hold_cap"])
        apply_event(
            attempt, CallEvent(AttemptStatus.IN_PROGRESS, 2, T0 + timedelta(minutes=2), _sid(101))
        )
        attempt.end_reason = EndReason.HOLD_CAP
        apply_event(
            attempt,
            CallEvent(AttemptStatus.COMPLETED, 3, T0 + timedelta(minutes=5), _sid(101), None, 200),
        )
        finish_call(session, runtime, attempt)
        for name, outcome, code in (
            ("dnc", Outcome.DO_NOT_CALL, None),
            ("rejected", Outcome.REJECTED, 21211),
        ):
            attempt = session.get_one(CallAttempt, a[name])
            end_unplaced(session, runtime, attempt, outcome=outcome, error_code=code)
    return ids


def test_every_figure_of_a_campaign_whose_outcomes_are_known(
    runtime: Runtime, known: Known
) -> None:
    with transaction(runtime.settings.database_url) as session:
        report = campaign_report(
            session, runtime.pool, known.account_id, known.campaign_id, now=NOW, minutes=10
        ).model_dump(mode="json")
    assert report["contacts"] == {
        "total": 16,
        "pending": 1,
        "waiting_for_window": 1,
        "waiting_for_frequency_cap": 0,
        "frequency_cap_opens_at": None,
        "scheduled_retry": 1,  # busy, retried in 600 s
        "dialing": 1,
        "live": 1,  # ringing
        "done": 9,
        "expired": 1,
        "cancelled": 1,
        "rejected": {"invalid": 2},
    }
    assert report["outcomes"] == {
        "answered": 3,
        "machine": {"machine_start": 1},
        "busy": 0,
        "no-answer": 1,
        "failed": {"32009": 1},
        "hold_cap": 1,
        "do_not_call": 1,
        "expired": 1,
        "error": 0,
        "dial_error": 0,
        "rejected": 1,
        "canceled": 0,
    }
    # 9 calls placed (7 fast-path ones, failed, hold cap); answered: 3 people, a machine,
    # the held call (AMD unknown: a person).
    assert report["rates"] == {
        "answer_rate": 5 / 9,
        "human_rate": 4 / 9,
        "confirmation_rate": 1 / 4,
        "cancellation_rate": 1 / 4,
    }
    # Attempts that may have rung, per contact called: 2 for no-answer and failed, 1 for
    # eight others (dnc and rejected gave theirs back): 12 over 10 contacts.
    assert report["attempts"] == {
        "total": 12,
        "per_contact": 12 / 10,
        "calls_placed": 9,
        "late_calls_hung_up": 0,
        "opt_outs": 0,
        "voicemail_drops": 0,
    }
    # Talk: 125, 30, 61, 20 (machine), 200 (hold cap). p90: rank 4.5 of 5 falls in the
    # [180, 240) bucket holding the one 200 s call: 180 + 60 * 0.5.
    assert report["talk_time"] == {
        "total_s": 436,
        "mean_s": 436 / 5,
        "p90_s": 210.0,
        "billable_minutes": 1 + 1 + 2 + 3 + 4,
    }
    series = {point["minute"]: point for point in report["series"]}
    assert len(report["series"]) == 10
    assert report["series"][-1]["minute"] == _iso(NOW.replace(second=0))

    def point(minutes: int) -> dict[str, Any]:
        return series[_iso(T0 + timedelta(minutes=minutes))]

    # Dials: 7 at T0, 2 at T0+1. Answers (answered_at is the completed event's time less
    # CallDuration): the three people and the held call (T0+1:40) at T0+1, the machine at
    # T0+2. Ends: human2 T0+1:30; human3, machine T0+2; human1 (T0+3:05), busy, no-answer
    # T0+3; failed T0+4; hold cap T0+5. Live at each minute's end: the ringing call stays.
    assert [point(m)["dials"] for m in range(6)] == [7, 2, 0, 0, 0, 0]
    assert [point(m)["answers"] for m in range(6)] == [0, 4, 1, 0, 0, 0]
    assert [point(m)["live"] for m in range(-1, 6)] == [0, 7, 8, 6, 3, 2, 1]
    pacing = report["pacing"]
    assert pacing["leases"] == {
        "account": {"in_use": 2, "cap": 7},
        "campaign": {"in_use": 2, "cap": 4},
    }
    # Dials in the current minute (T0+5) and the previous one: none.
    assert pacing["cps"] == {"achieved": 0.0, "limit": 2.0}
    # 9 delays: four of 0.5 s in [0.5, 1), four of 3 s in [2, 5), one of 40 s in [30, 60).
    # p50: rank 4.5 -> the [2, 5) bucket, 0.5 of its 4 -> 2 + 3 * 0.5 / 4.
    # p95: rank 8.55 -> the [30, 60) bucket, 0.55 of its 1 -> 30 + 30 * 0.55.
    assert pacing["due_to_dial_s"]["p50"] == pytest.approx(2 + 3 * 0.5 / 4)
    assert pacing["due_to_dial_s"]["p95"] == pytest.approx(30 + 30 * 0.55)
    assert report["breaker"] == {"state": "closed", "reason": None, "trips": 0}
    eta = report["eta"]
    assert eta["remaining"] == 5  # pending, waiting, retry, dialing, live
    # 5 contacts x 1.2 calls, at min(2 CPS, 4 slots / mean hold), the mean hold of the 8
    # ended calls, placed to ended (s): 185, 89, 119, 137, 176, 175, 180, 240.
    hold = (185 + 89 + 119 + 137 + 176 + 175 + 180 + 240) / 8
    rate = min(2.0, 4 / hold)
    # Not before the waiting contact, due in 2 hours, has had its 1.2 calls.
    expected = max(
        NOW + timedelta(seconds=5 * 1.2 / rate), NOW + timedelta(hours=2, seconds=1.2 / rate)
    )
    assert abs(datetime.fromisoformat(eta["finish_at"]) - expected) < timedelta(seconds=1)
    assert report["finished"] is False
    assert report["generated_at"] == _iso(NOW)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def test_counters_agree_with_a_recount(runtime: Runtime, known: Known) -> None:
    with transaction(runtime.settings.database_url) as session:
        since = T0 - timedelta(days=1)
        kept, kept_minutes = counters.read(session, known.campaign_id, since)
        recounted, recounted_minutes = counters.recount(session, known.campaign_id)
        assert kept == recounted
        assert kept_minutes == {m: v for m, v in recounted_minutes.items() if m >= since}
        # A bulk cancel of the pending contacts keeps them in step too; folding the
        # stripes of gone backends changes no sum.
        cancel_pending_jobs(session, known.campaign_id)
        session.flush()
        after, _ = counters.recount(session, known.campaign_id)
        assert counters.read(session, known.campaign_id, since)[0] == after
        assert after["contacts.canceled"] == 1 + 3  # pending, waiting, busy retry
    # The beat task that folds them (called as a plain function), after the backends that
    # wrote this test's stripes are gone.
    engine_for(runtime.settings.database_url).dispose()
    assert fold_counters_task() > 0
    with transaction(runtime.settings.database_url) as session:
        assert counters.read(session, known.campaign_id, since)[0] == after
        stripes = session.scalars(
            select(CampaignCounter.stripe)
            .where(CampaignCounter.campaign_id == known.campaign_id)
            .distinct()
        ).all()
    assert 0 in stripes


def test_a_report_of_another_accounts_campaign_is_not_found(runtime: Runtime, known: Known) -> None:
    with transaction(runtime.settings.database_url) as session:
        other = make_account(session, name="other")
        with pytest.raises(NotFoundError) as raised:
            campaign_report(session, runtime.pool, other.id, known.campaign_id)
    assert raised.value.code == "campaign_not_found"


def test_the_breaker_and_a_finished_campaign(runtime: Runtime, known: Known) -> None:
    with transaction(runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, known.campaign_id)
        reason = "provider account error 20003: Authenticate"
        transition(campaign, CampaignAction.TRIP_BREAKER, actor=BREAKER, reason=reason)
        campaign.breaker_trips = 1
    with transaction(runtime.settings.database_url) as session:
        report = campaign_report(session, runtime.pool, known.account_id, known.campaign_id)
    assert report.breaker.model_dump() == {
        "state": "open",
        "reason": "provider account error 20003: Authenticate",
        "trips": 1,
    }
    assert report.eta.finish_at is None  # paused: no estimate
    assert report.finished is False
    with transaction(runtime.settings.database_url) as session:
        cancel_pending_jobs(session, known.campaign_id)
        for job in session.scalars(
            select(CallJob).where(
                CallJob.campaign_id == known.campaign_id,
                CallJob.status == JobStatus.IN_PROGRESS,
            )
        ):
            move_job(job, JobStep(JobStatus.CANCELED, job.attempt_count, 0))
        campaign = session.get_one(Campaign, known.campaign_id)
        campaign.status = CampaignStatus.CANCELED
        campaign.finished_at = NOW
    with transaction(runtime.settings.database_url) as session:
        report = campaign_report(session, runtime.pool, known.account_id, known.campaign_id)
    assert report.finished is True
    assert (report.eta.remaining, report.eta.finish_at) == (0, NOW)
    assert report.contacts.cancelled == 1 + 5
    assert report.series[-1].minute == NOW.replace(second=0)  # the series ends at the finish


def test_an_operator_pause_does_not_read_as_the_breaker_open(
    runtime: Runtime, known: Known
) -> None:
    url = runtime.settings.database_url
    with transaction(url) as session:
        lifecycle.pause(session, known.account_id, known.campaign_id, actor="api:acme")
    with transaction(url) as session:
        report = campaign_report(session, runtime.pool, known.account_id, known.campaign_id)
    assert (report.status, report.status_reason) == ("paused", "paused by operator")
    assert report.breaker.model_dump() == {"state": "closed", "reason": None, "trips": 0}
    # A trip, then the operator's resume and pause: the breaker is closed again.
    with transaction(url) as session:
        lifecycle.resume(session, known.account_id, known.campaign_id, actor="api:acme")
        campaign = session.get_one(Campaign, known.campaign_id)
        transition(campaign, CampaignAction.TRIP_BREAKER, actor=BREAKER, reason="error 20003")
        campaign.breaker_trips = 1
    with transaction(url) as session:
        report = campaign_report(session, runtime.pool, known.account_id, known.campaign_id)
    assert report.breaker.model_dump() == {"state": "open", "reason": "error 20003", "trips": 1}
    with transaction(url) as session:
        lifecycle.resume(session, known.account_id, known.campaign_id, actor="api:acme")
        lifecycle.pause(session, known.account_id, known.campaign_id, actor="api:acme")
    with transaction(url) as session:
        report = campaign_report(session, runtime.pool, known.account_id, known.campaign_id)
    assert report.breaker.model_dump() == {"state": "closed", "reason": None, "trips": 1}


def test_the_report_names_outcomes_as_the_call_api_and_the_export_do(
    runtime: Runtime, known: Known
) -> None:
    with transaction(runtime.settings.database_url) as session:
        report = campaign_report(
            session, runtime.pool, known.account_id, known.campaign_id, now=NOW
        ).model_dump(mode="json")
    assert set(report["outcomes"]) == {outcome.value for outcome in Outcome}
    rows = dict(outcome_rows({**report["outcomes"], "failed": {"none": 2, "32009": 1}}))
    assert (rows["answered"], rows["no-answer"], rows["machine (machine_start)"]) == (3, 1, 1)
    assert (rows["failed"], rows["failed (32009)"]) == (2, 1)  # no error code: plain failed
    assert "busy" not in rows  # nothing to show


def test_watch_keeps_pacing_and_the_estimated_finish_on_a_24_line_terminal(
    runtime: Runtime, known: Known
) -> None:
    with transaction(runtime.settings.database_url) as session:
        report = campaign_report(
            session, runtime.pool, known.account_id, known.campaign_id, now=NOW
        ).model_dump(mode="json")
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80, height=24)
    # As `campaigns watch` redraws it: rich Live cuts what does not fit the terminal.
    with Live(console=terminal, auto_refresh=False) as live:
        live.update(report_table(report, progress_first=True), refresh=True)
        first_frame = screen.getvalue()
    for figure in ("estimated finish", "remaining contacts", "calls per second", "leases"):
        assert figure in first_frame, figure
    # Every figure is still in the table; the cut ones are the outcomes' and rates'.
    tall = Console(file=io.StringIO(), width=80, height=200, record=True)
    tall.print(report_table(report, progress_first=True))
    assert "outcome: answered" in tall.export_text()
    assert "outcome: answered" not in first_frame
