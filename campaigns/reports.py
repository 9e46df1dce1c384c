"""Per-campaign reporting, computed from the call jobs and attempts (the record)."""

from __future__ import annotations

import csv
from typing import IO, Any

from pydantic import BaseModel
from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from campaigns.ingest import escape_formula
from campaigns.lifecycle import get_campaign
from models import AttemptStatus, CallAttempt, CallJob, Campaign, EndReason, JobStatus


class CampaignReport(BaseModel):
    """A campaign's figures. Durations in seconds."""

    campaign_id: int
    name: str
    status: str
    status_reason: str | None
    contacts: int
    ingest: dict[str, Any]
    jobs: dict[str, int]
    """Contacts by status: pending, in_progress, done, canceled."""
    outcomes: dict[str, int]
    """Finished contacts by outcome (answered, machine, busy, ...)."""
    attempts: dict[str, int]
    """Attempts by provider status, `not-placed` included."""
    calls_placed: int
    """Attempts that reached the provider as a call."""
    late_calls_hung_up: int
    """Calls made after their attempt had been given up, for a contact already dialled
    again, and hung up at once (end reason `late_create`): not in `calls_placed`."""
    breaker_trips: int
    """Times the account's circuit breaker paused this campaign."""
    answered_by: dict[str, int]
    digits: dict[str, int]
    """DTMF replies: "1" confirmed, "2" cancelled."""
    talk_seconds: int
    finished: bool


def campaign_report(session: Session, account_id: int, campaign_id: int) -> CampaignReport:
    """The report of one campaign. Raises `NotFoundError` (`campaign_not_found`)."""
    campaign: Campaign = get_campaign(session, account_id, campaign_id)
    jobs: dict[JobStatus, int] = dict(
        session.execute(
            select(CallJob.status, func.count())
            .where(CallJob.campaign_id == campaign_id)
            .group_by(CallJob.status)
        ).all()
    )
    outcomes = dict(
        session.execute(
            select(CallJob.outcome, func.count())
            .where(CallJob.campaign_id == campaign_id, CallJob.status == JobStatus.DONE)
            .group_by(CallJob.outcome)
        ).all()
    )
    attempts = dict(
        session.execute(
            select(CallAttempt.status, func.count())
            .where(CallAttempt.campaign_id == campaign_id)
            .group_by(CallAttempt.status)
        ).all()
    )
    answered_by = dict(
        session.execute(
            select(CallAttempt.answered_by, func.count())
            .where(CallAttempt.campaign_id == campaign_id, CallAttempt.answered_by.is_not(None))
            .group_by(CallAttempt.answered_by)
        ).all()
    )
    digits = dict(
        session.execute(
            select(CallAttempt.digits, func.count())
            .where(CallAttempt.campaign_id == campaign_id, CallAttempt.digits.is_not(None))
            .group_by(CallAttempt.digits)
        ).all()
    )
    talk = session.scalar(
        select(func.coalesce(func.sum(CallAttempt.duration_s), 0)).where(
            CallAttempt.campaign_id == campaign_id
        )
    )
    placed = sum(n for s, n in attempts.items() if s is not AttemptStatus.NOT_PLACED)
    late = session.scalar(
        select(func.count()).where(
            CallAttempt.campaign_id == campaign_id,
            CallAttempt.end_reason == EndReason.LATE_CREATE,
        )
    )
    open_jobs = jobs.get(JobStatus.PENDING, 0) + jobs.get(JobStatus.IN_PROGRESS, 0)
    return CampaignReport(
        campaign_id=campaign.id,
        name=campaign.name,
        status=campaign.status.value,
        status_reason=campaign.status_reason,
        contacts=sum(jobs.values()),
        ingest=campaign.ingest_summary,
        jobs={s.value: jobs.get(s, 0) for s in JobStatus},
        outcomes={o.value: n for o, n in outcomes.items() if o is not None},
        attempts={s.value: n for s, n in attempts.items()},
        calls_placed=placed,
        late_calls_hung_up=late or 0,
        breaker_trips=campaign.breaker_trips,
        answered_by={str(k): n for k, n in answered_by.items()},
        digits={str(k): n for k, n in digits.items()},
        talk_seconds=int(talk or 0),
        finished=open_jobs == 0 and campaign.status.value in ("completed", "canceled"),
    )


EXPORT_COLUMNS = (
    "line",
    "phone",
    "status",
    "outcome",
    "attempts",
    "answered_by",
    "digits",
    "talk_seconds",
)


def export_results(session: Session, account_id: int, campaign_id: int, sink: IO[str]) -> int:
    """Write one CSV row per contact to `sink` (opened with newline=""): the columns of
    `EXPORT_COLUMNS` from the contact's last attempt, then the contact's own CSV columns.
    Every value is escaped against formula injection (`escape_formula`; the database keeps
    them as given). Streams in batches; returns the rows written.

    Raises:
        NotFoundError: `campaign_not_found`.
    """
    get_campaign(session, account_id, campaign_id)
    last = (
        select(CallAttempt)
        .where(CallAttempt.job_id == CallJob.id)
        .order_by(CallAttempt.attempt_no.desc(), CallAttempt.id.desc())
        .limit(1)
        .lateral()
    )
    rows = session.execute(
        select(CallJob, last.c.answered_by, last.c.digits, last.c.duration_s)
        .outerjoin(last, true())
        .where(CallJob.campaign_id == campaign_id)
        .order_by(CallJob.line_no)
        .execution_options(yield_per=1000)
    )
    writer = csv.writer(sink)
    variables: list[str] | None = None
    written = 0
    for job, answered_by, digits, duration_s in rows:
        if variables is None:
            variables = list(job.variables)
            writer.writerow([escape_formula(c) for c in (*EXPORT_COLUMNS, *variables)])
        values = [
            job.line_no,
            job.phone_e164,
            job.status.value,
            job.outcome.value if job.outcome else "",
            job.attempt_count,
            answered_by or "",
            digits or "",
            duration_s if duration_s is not None else "",
            *(job.variables.get(name, "") for name in variables),
        ]
        writer.writerow([escape_formula(str(value)) for value in values])
        written += 1
    if variables is None:
        writer.writerow(EXPORT_COLUMNS)
    return written
