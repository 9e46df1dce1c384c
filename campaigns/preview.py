"""A campaign's preview before (or while) it runs: who is callable now, who waits for their
calling window (by zone), who has expired, and when it should finish at its caps, CPS and
windows.

The estimate is a model, not a promise: every pending contact takes one call (retries
are not modelled) no earlier than its due time (a retry delay or the per-number frequency
cap, `dialer.calls.held_by_cap`, hold it until then: the contacts of a group not due now
are released together at the first of their due times); calls go out at the campaign's dial rate
(`dial_rate_cps`: the smallest of the account's and the campaign's CPS and of each
concurrency cap divided by `hold_s`, the seconds one call holds a slot: the mean of the
campaign's ended attempts, else its ring timeout); a group of contacts sharing a place
(zones, country, state) is dialled only while its window is open (`dialer.windows`);
nothing before `start_at`; at `end_at` whatever is left is counted in `unreached`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.lifecycle import get_campaign
from dialer.windows import CallingWindow, ContactSchedule, Place, is_open, next_opening
from models import Account, CallAttempt, CallJob, Campaign, JobStatus, Outcome

ESTIMATE_HORIZON = timedelta(days=366)
"""The estimate gives up (finish unknown) past this far ahead."""


class WaitingGroup(BaseModel):
    """Pending contacts of one place that may not be dialled now."""

    zones: list[str] = Field(description="IANA zones: all must be inside the window.")
    region: str | None = Field(description="ISO 3166-1 region of the numbers.")
    subdivision: str | None = Field(description='State with stricter legal hours ("FL").')
    contacts: int
    opens_at: datetime | None = Field(
        description="When the first of them may be dialled (UTC): the next opening of"
        " their window, not before the first one's due time (a retry delay, the frequency"
        " cap)."
    )
    frequency_capped: int = Field(
        description="Of `contacts`, held by the account's per-number frequency caps"
        " (`frequency_caps`)."
    )


class CampaignPreview(BaseModel):
    """What a campaign would do from `now`. Rates in calls per second, times in UTC."""

    campaign_id: int
    status: str
    now: datetime
    pending: int = Field(description="Contacts not yet final nor in progress.")
    callable_now: int = Field(description="Pending, due and inside their window now.")
    waiting: int = Field(description="Pending but not callable now.")
    waiting_by_zone: list[WaitingGroup]
    waiting_for_frequency_cap: int = Field(
        description="Of `waiting`, held by the account's per-number frequency caps"
        " (`frequency_caps`)."
    )
    frequency_cap_opens_at: datetime | None = Field(
        description="When the first contact held by the frequency cap is due again (UTC)."
    )
    first_call_at: datetime | None = Field(
        description="When the first pending contact may be dialled (UTC): `now` when one is"
        " callable now, else the first `opens_at` of `waiting_by_zone` (never before"
        " `start_at`); null when none is pending or no window of theirs opens."
    )
    in_progress: int
    expired: int = Field(description="Contacts ended `expired` (end_at, call_before).")
    done: int = Field(description="Contacts final with any other outcome, or cancelled.")
    dial_rate_cps: float = Field(description="The dial rate the estimate assumes.")
    hold_s: float = Field(description="Seconds one call is assumed to hold its slot.")
    estimated_finish_at: datetime | None = Field(
        description="When the last pending contact should be dialled; null: not within a year."
    )
    unreached: int = Field(description="Contacts the estimate leaves undialled at end_at.")


@dataclass
class _Group:
    place: Place
    pending: int
    due_now: int
    held: int = 0
    """Pending, not due now, held by the frequency cap."""
    next_due: datetime | None = None
    """The first due time among the pending contacts not due now."""
    held_due: datetime | None = None
    """The first due time among the `held` ones."""
    left: float = 0.0
    release: datetime | None = None
    """The estimate's: not dialled before this (None: no earlier limit than the window)."""


def campaign_preview(
    session: Session, account_id: int, campaign_id: int, now: datetime
) -> CampaignPreview:
    """The preview of one campaign at `now` (aware). One grouped query over its pending
    contacts. Raises `NotFoundError` (`campaign_not_found`)."""
    campaign = get_campaign(session, account_id, campaign_id)
    account = session.get_one(Account, account_id)
    window = CallingWindow.of(campaign)
    due_now = (CallJob.next_due_at <= now) & (
        CallJob.call_before.is_(None) | (CallJob.call_before > now)
    )
    later = CallJob.next_due_at > now
    held = later & CallJob.capped_until.is_not(None)
    rows = session.execute(
        select(
            CallJob.zones,
            CallJob.region,
            CallJob.subdivision,
            func.count(),
            func.count().filter(due_now),
            func.count().filter(held),
            func.min(CallJob.next_due_at).filter(later),
            func.min(CallJob.next_due_at).filter(held),
        )
        .where(CallJob.campaign_id == campaign_id, CallJob.status == JobStatus.PENDING)
        .group_by(CallJob.zones, CallJob.region, CallJob.subdivision)
    ).all()
    groups = [
        _Group(Place(tuple(zones), region, subdivision), pending, due, held, next_due, held_due)
        for zones, region, subdivision, pending, due, held, next_due, held_due in rows
    ]
    begin = max(now, campaign.start_at or now)
    callable_now = 0
    waiting: list[WaitingGroup] = []
    for group in groups:
        open_now = begin == now and is_open(window, group.place, now)
        callable_now += group.due_now if open_now else 0
        stuck = group.pending - (group.due_now if open_now else 0)
        if stuck:
            # Those due now wait for the window only if it is shut; the others for their due time.
            first = begin if group.due_now and not open_now else max(begin, group.next_due or begin)
            waiting.append(
                WaitingGroup(
                    zones=list(group.place.zones),
                    region=group.place.country,
                    subdivision=group.place.subdivision,
                    contacts=stuck,
                    opens_at=next_opening(window, group.place, first),
                    frequency_capped=group.held,
                )
            )
    statuses: dict[JobStatus, int] = dict(
        session.execute(
            select(CallJob.status, func.count())
            .where(CallJob.campaign_id == campaign_id)
            .group_by(CallJob.status)
        ).all()
    )
    expired = session.scalar(
        select(func.count()).where(
            CallJob.campaign_id == campaign_id, CallJob.outcome == Outcome.EXPIRED
        )
    )
    hold_s = _hold_seconds(session, campaign)
    rate = dial_rate(account, campaign, hold_s)
    pending = sum(g.pending for g in groups)
    finish, unreached = estimate_finish(window, campaign, _released(groups), rate, now)
    held_dues = [g.held_due for g in groups if g.held_due is not None]
    waiting.sort(key=lambda w: (w.opens_at is None, w.opens_at, w.zones))
    first_call_at = now if callable_now else waiting[0].opens_at if waiting else None
    final = statuses.get(JobStatus.DONE, 0) + statuses.get(JobStatus.CANCELED, 0)
    return CampaignPreview(
        campaign_id=campaign.id,
        status=campaign.status.value,
        now=now,
        pending=pending,
        callable_now=callable_now,
        waiting=pending - callable_now,
        waiting_by_zone=waiting,
        waiting_for_frequency_cap=sum(g.held for g in groups),
        frequency_cap_opens_at=min(held_dues, default=None),
        first_call_at=first_call_at,
        in_progress=statuses.get(JobStatus.IN_PROGRESS, 0),
        expired=expired or 0,
        done=final - (expired or 0),
        dial_rate_cps=rate,
        hold_s=hold_s,
        estimated_finish_at=finish,
        unreached=unreached,
    )


def _released(groups: list[_Group]) -> list[_Group]:
    """Each group split for the estimate: its contacts due now (or shut out by the window
    alone), and those not due yet, released at the first of their due times."""
    out: list[_Group] = []
    for group in groups:
        later = group.pending - group.due_now
        if group.due_now:
            out.append(_Group(group.place, group.due_now, group.due_now))
        if later:
            out.append(_Group(group.place, later, 0, release=group.next_due))
    return out


def _hold_seconds(session: Session, campaign: Campaign) -> float:
    """Mean seconds the campaign's ended attempts held their slot, else its ring timeout."""
    mean = session.scalar(
        select(
            func.avg(func.extract("epoch", CallAttempt.ended_at - CallAttempt.created_at))
        ).where(CallAttempt.campaign_id == campaign.id, CallAttempt.ended_at.is_not(None))
    )
    return float(mean) if mean else float(campaign.ring_timeout_s)


def dial_rate(account: Account, campaign: Campaign, hold_s: float) -> float:
    """Calls per second the campaign can sustain: its and its account's CPS, and each
    concurrency cap over `hold_s` (Little's law: calls live = rate x hold time)."""
    rates = [account.cps, account.max_concurrency / hold_s, campaign.max_concurrency / hold_s]
    if campaign.cps is not None:
        rates.append(campaign.cps)
    return min(rates)


def estimate_finish(
    window: CallingWindow,
    campaign: Campaign,
    groups: list[_Group],
    rate: float,
    now: datetime,
) -> tuple[datetime | None, int]:
    """When the groups' pending contacts are all dialled at `rate` calls per second, each
    only while its window is open and not before its `release` (event by event:
    releases, openings, closings, `end_at`), and how many are left undialled at `end_at`."""
    for group in groups:
        group.left = float(group.pending)
    t = max(now, campaign.start_at or now)
    end = campaign.end_at
    limit = t + ESTIMATE_HORIZON
    finish: datetime | None = t if not groups else None
    while any(g.left > 0 for g in groups):
        if end is not None and t >= end:
            return end, round(sum(g.left for g in groups))
        if t > limit:
            return None, 0
        active = [g for g in groups if g.left > 0]
        open_now = [
            g
            for g in active
            if (g.release is None or g.release <= t) and is_open(window, g.place, t)
        ]
        shut = [g for g in active if all(g is not o for o in open_now)]
        openings = [
            o
            for g in shut
            if (o := next_opening(window, g.place, max(t, g.release or t))) is not None
        ]
        if not open_now:
            if not openings:
                return None, 0
            t = min(openings)
            continue
        horizon = min(ContactSchedule(window, g.place).open_until(t) for g in open_now)
        horizon = min([horizon, *openings, *([end] if end else [])])
        capacity = rate * (horizon - t).total_seconds()
        need = sum(g.left for g in open_now)
        if need <= capacity:
            for g in open_now:
                g.left = 0
            t += timedelta(seconds=need / rate)
            finish = t
            continue
        for g in open_now:  # shared in proportion to what each group has left
            g.left -= capacity * g.left / need
        t = horizon
    return finish, 0
