"""Whether a claimed contact may be dialled now: its calling window, its `call_before`, the
campaign's `end_at`, and the account's per-number daily cap.

The pacer claims contacts by due time alone (one range scan: the due time already is the
contact's next opening, `dialer.windows`), then passes the claimed batch through `admit`:
a contact whose window closed meanwhile is moved to its next opening, one past its
`call_before` ends `expired`, one whose number is over the cap is due when the oldest
counted call leaves the last 24 hours (at the opening after that), and records that moment
as `CallJob.capped_until` (`dialer.calls.held_by_cap` reads it). `place_call` asks
`dial_refusal` again right before the request leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.calls import expired, move_job, reschedule
from dialer.windows import CallingWindow, ContactSchedule, Place
from models import AttemptStatus, CallAttempt, CallJob, Campaign

CAP_PERIOD = timedelta(days=1)
"""The frequency cap counts calls to a number in this trailing period (the "day" of
`Account.max_calls_per_number_per_day`)."""


def schedule_of(campaign: Campaign, job: CallJob) -> ContactSchedule:
    """The contact's window, place and `call_before`, from its rows."""
    return ContactSchedule(
        CallingWindow.of(campaign),
        Place(tuple(job.zones), job.region, job.subdivision),
        job.call_before,
    )


def callable_until(campaign: Campaign, job: CallJob, now: datetime) -> datetime:
    """When a contact callable at `now` stops being so: its window closes, its
    `call_before` or its campaign's `end_at`, whichever is first."""
    until = schedule_of(campaign, job).open_until(now)
    return min(until, campaign.end_at) if campaign.end_at is not None else until


def dial_refusal(campaign: Campaign, job: CallJob, now: datetime) -> str | None:
    """Why the contact may not be dialled at `now`, or None: `campaign_ended` (past its
    `end_at`), `call_before_passed`, `window_closed`."""
    if campaign.end_at is not None and now >= campaign.end_at:
        return "campaign_ended"
    schedule = schedule_of(campaign, job)
    if schedule.call_before is not None and now >= schedule.call_before:
        return "call_before_passed"
    if not schedule.callable_at(now):
        return "window_closed"
    return None


@dataclass
class Admission:
    """What `admit` made of a claimed batch: the contacts to dial now (in claim order),
    and how many were moved to a later due time or ended `expired`."""

    dial: list[CallJob]
    rescheduled: int = 0
    expired: list[int] = field(default_factory=list)
    """Ids of the contacts ended `expired` (past their `call_before`)."""


def calls_today(
    session: Session, account_id: int, phones: Sequence[str], now: datetime
) -> dict[str, tuple[int, datetime]]:
    """Per number: attempts that may have rung it (not `not-placed`) across the account's
    campaigns in the `CAP_PERIOD` before `now`, and the oldest one's creation time. One
    query on `ix_call_attempts_number`."""
    if not phones:
        return {}
    rows = session.execute(
        select(CallAttempt.phone_e164, func.count(), func.min(CallAttempt.created_at))
        .where(
            CallAttempt.account_id == account_id,
            CallAttempt.phone_e164.in_(set(phones)),
            CallAttempt.created_at > now - CAP_PERIOD,
            CallAttempt.created_at <= now,
            CallAttempt.status != AttemptStatus.NOT_PLACED,
        )
        .group_by(CallAttempt.phone_e164)
    )
    return {phone: (count, oldest) for phone, count, oldest in rows}


def admit(
    session: Session,
    jobs: list[CallJob],
    campaigns: dict[int, Campaign],
    account_id: int,
    max_per_number: int,
    now: datetime,
) -> Admission:
    """Sort a claimed (locked) batch into contacts to dial now and the rest, which are
    rescheduled or expired in place (through `dialer.calls`)."""
    out = Admission(dial=[])
    counts = calls_today(session, account_id, [job.phone_e164 for job in jobs], now)
    for job in jobs:
        schedule = schedule_of(campaigns[job.campaign_id], job)
        if schedule.call_before is not None and now >= schedule.call_before:
            move_job(job, expired(job))
            out.expired.append(job.id)
            continue
        if not schedule.callable_at(now):
            reschedule(job, schedule.next_due(now))
            out.rescheduled += 1
            continue
        count, oldest = counts.get(job.phone_e164, (0, now))
        if count >= max_per_number:
            free_at = max(now, oldest + CAP_PERIOD)
            reschedule(job, schedule.next_due(free_at), capped_until=free_at)
            out.rescheduled += 1
            continue
        counts[job.phone_e164] = (count + 1, oldest)  # the same number twice in one batch
        out.dial.append(job)
    return out
