"""Number health: how each caller ID of a campaign fares over the last day, the flag on a
number whose answers fall far below the campaign's (a likely spam label), and the
automatic rest of flagged numbers (`Account.rest_flagged_numbers`).

A number labelled spam by the carriers' analytics still rings, but people stop answering
it: its answer rate falls while the campaign's other numbers keep theirs. Twilio's
"Maintaining a Positive Caller Reputation" asks to watch each number's answer rate and to
prune numbers that don't connect (issue 22). The flag's rule is ours: `FLAG_MIN_CALLS`
calls or more in the last day, and an answer rate under `FLAG_RATIO` of the campaign's over
the same day.

Cost: one aggregate over the campaign's attempts of the last day
(`ix_call_attempts_campaign_created`, one index range) and one read of its pool's numbers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Account, CallAttempt, CallerId, Campaign, CampaignStatus, transaction

log = structlog.get_logger(__name__)

HEALTH_PERIOD = timedelta(days=1)
"""The window number health is measured over."""
FLAG_MIN_CALLS = 20
"""Fewest calls of a number in the period before it may be flagged: fewer say too little
(at a campaign answer rate of 50%, 20 calls under 25% happen by chance about 2% of the
time, binomial)."""
FLAG_RATIO = 0.5
"""A number is flagged when its answer rate is under this fraction of its campaign's."""


class NumberHealth(BaseModel):
    """One caller ID of the campaign over the last day. Rates are 0..1 of its calls."""

    number: str
    """The caller ID, E.164."""
    calls: int
    """Calls it presented (attempts that became a provider call) in the last day."""
    answer_rate: float | None
    """Answered calls / calls (None: no call)."""
    human_rate: float | None
    """Calls AMD answered `AnsweredBy=human` / calls (None: no call ran AMD)."""
    flagged: bool
    """Its answer rate is under half the campaign's over at least 20 calls: a likely spam
    label (`campaigns.number_health`)."""
    rested_at: datetime | None
    """Since when caller-ID selection skips it (None: in use)."""
    rested_reason: str | None
    """Why it was rested."""


def number_health(session: Session, campaign: Campaign, now: datetime) -> list[NumberHealth]:
    """Per number of `campaign`'s pool, and any other number that presented its calls in
    the last day (before `now`), in the pool's order: calls, answer and human rates, the
    flag, and whether it is rested."""
    since = now - HEALTH_PERIOD
    called = CallAttempt.call_sid.is_not(None)
    rows = session.execute(
        select(
            CallAttempt.from_e164,
            func.count().filter(called),
            func.count().filter(called, CallAttempt.answered_at.is_not(None)),
            func.count().filter(called, CallAttempt.answered_by == "human"),
            func.count().filter(called, CallAttempt.answered_by.is_not(None)),
        )
        .where(CallAttempt.campaign_id == campaign.id, CallAttempt.created_at >= since)
        .group_by(CallAttempt.from_e164)
    ).all()
    figures = {
        number: (calls, answered, human, amd) for number, calls, answered, human, amd in rows
    }
    pool = [campaign.caller_id_id, *campaign.pool_caller_ids]
    numbers = {
        c.e164: c
        for c in session.scalars(
            select(CallerId).where(
                CallerId.account_id == campaign.account_id,
                CallerId.id.in_(pool) | CallerId.e164.in_(list(figures)),
            )
        )
    }
    position = {number_id: i for i, number_id in enumerate(pool)}
    order = sorted(
        set(figures) | set(numbers),
        key=lambda e: (position.get(numbers[e].id, len(pool)) if e in numbers else len(pool), e),
    )
    total_calls = sum(f[0] for f in figures.values())
    campaign_rate = sum(f[1] for f in figures.values()) / total_calls if total_calls else None
    out = []
    for e164 in order:
        calls, answered, human, amd = figures.get(e164, (0, 0, 0, 0))
        rate = answered / calls if calls else None
        number = numbers.get(e164)
        out.append(
            NumberHealth(
                number=e164,
                calls=calls,
                answer_rate=rate,
                human_rate=human / calls if amd else None,
                flagged=flagged(calls, rate, campaign_rate),
                rested_at=number.rested_at if number else None,
                rested_reason=number.rested_reason if number else None,
            )
        )
    return out


def flagged(calls: int, rate: float | None, campaign_rate: float | None) -> bool:
    """The flag's rule: at least `FLAG_MIN_CALLS` calls and an answer rate under
    `FLAG_RATIO` of the campaign's."""
    if rate is None or campaign_rate is None or calls < FLAG_MIN_CALLS:
        return False
    return rate < FLAG_RATIO * campaign_rate


def rest_flagged_numbers(session: Session, account_id: int, now: datetime) -> list[str]:
    """Rest the numbers flagged in any running or paused campaign of the account, when its
    operator asked for it (`Account.rest_flagged_numbers`); returns the numbers rested now.
    Each is rested once, with the figures that flagged it as the reason, until its operator
    un-rests it (`numbers add NUMBER --unrest`, `POST /v1/numbers` with `rested: false`);
    a campaign whose every number is rested waits (`caller_ids_rested`)."""
    account = session.get_one(Account, account_id)
    if not account.rest_flagged_numbers:
        return []
    campaigns = session.scalars(
        select(Campaign)
        .where(
            Campaign.account_id == account_id,
            Campaign.status.in_((CampaignStatus.RUNNING, CampaignStatus.PAUSED)),
        )
        .order_by(Campaign.id)
    ).all()
    rested = []
    for campaign in campaigns:
        for health in number_health(session, campaign, now):
            if not health.flagged or health.rested_at is not None:
                continue
            number = session.scalars(
                select(CallerId)
                .where(CallerId.account_id == account_id, CallerId.e164 == health.number)
                .with_for_update()
            ).one_or_none()
            if number is None or number.rested_at is not None:
                continue
            number.rested_at = now
            number.rested_reason = (
                f"flagged in campaign {campaign.id}: answer rate {health.answer_rate:.0%} over "
                f"{health.calls} calls in the last day, under half the campaign's"
            )
            rested.append(number.e164)
            log.warning("caller_id_rested", account_id=account_id, number=number.e164)
    session.flush()
    return rested


def rest_flagged_everywhere(database_url: str, now: datetime) -> int:
    """`rest_flagged_numbers` for every account that asked for it and has a running
    campaign, one transaction each: one account's failure is logged and the others go on.
    Returns how many numbers were rested."""
    with transaction(database_url) as session:
        accounts = _accounts_resting_flagged(session)
    rested = 0
    for account_id in accounts:
        try:
            with transaction(database_url) as session:
                rested += len(rest_flagged_numbers(session, account_id, now))
        except Exception:
            log.exception("rest_flagged_numbers_failed", account_id=account_id)
    return rested


def _accounts_resting_flagged(session: Session) -> list[int]:
    """Accounts that rest flagged numbers automatically and have a running campaign."""
    return list(
        session.scalars(
            select(Account.id)
            .where(
                Account.rest_flagged_numbers,
                select(Campaign.id)
                .where(
                    Campaign.account_id == Account.id,
                    Campaign.status == CampaignStatus.RUNNING,
                )
                .exists(),
            )
            .order_by(Account.id)
        )
    )
