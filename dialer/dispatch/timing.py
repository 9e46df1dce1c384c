"""Whether a claimed contact may be dialled now: its calling window, its `call_before`, the
campaign's `end_at`, and the account's per-number frequency caps (`dialer.frequency`).

The pacer claims contacts by due time alone (one range scan: the due time already is the
contact's next opening, `dialer.windows`), then passes the claimed batch through `admit`:
a contact whose window closed meanwhile is moved to its next opening, one past its
`call_before` ends `expired`, one whose number is over a cap is due when every cap lets it
be called again (`dialer.frequency.free_at`; at the opening after that), and records that
moment as `CallJob.capped_until` (`dialer.calls.held_by_cap` reads it). `place_call` asks
`dial_refusal` again right before the request leaves. The caps are exact at the claim: the
account's one pacer (its lock) creates every attempt that counts, and counts those of its
own batch as it admits them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from dialer.calls import expired, move_job, reschedule
from dialer.frequency import Cap, free_at, recent_calls
from dialer.windows import CallingWindow, ContactSchedule, Place
from models import CallJob, Campaign


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


def admit(
    session: Session,
    jobs: list[CallJob],
    campaigns: dict[int, Campaign],
    account_id: int,
    caps: Sequence[Cap],
    now: datetime,
) -> Admission:
    """Sort a claimed (locked) batch into contacts to dial now and the rest, which are
    rescheduled or expired in place (through `dialer.calls`). `caps`: the account's
    frequency caps, read with one `recent_calls` statement for the whole batch."""
    out = Admission(dial=[])
    calls = recent_calls(session, account_id, [job.phone_e164 for job in jobs], now, caps)
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
        recent = calls.setdefault(job.phone_e164, [])
        if (held := free_at(caps, recent, now)) is not None:
            reschedule(job, schedule.next_due(held), capped_until=held)
            out.rescheduled += 1
            continue
        recent.insert(0, now)  # the same number twice in one batch
        out.dial.append(job)
    return out
