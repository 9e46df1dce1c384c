"""Small factory functions that build rows for tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.accounts import create_account, get_account, hash_api_key
from dialer.errors import NotFoundError
from dialer.pool.leases import lease_seconds
from dialer.windows import daytime_zone
from models import Account, ApiKey, AttemptStatus, CallAttempt, CallerId, CallJob, Campaign, utcnow


def make_account(session: Session, name: str = "acme", **fields: Any) -> Account:
    account = Account(name=name, **{"max_concurrency": 10, "cps": 1e6, **fields})
    session.add(account)
    session.flush()
    return account


def make_api_key(session: Session, account: Account, key: str, name: str = "test") -> ApiKey:
    """An API key `key` for the account (a fixed one, for tests that name it)."""
    row = ApiKey(account_id=account.id, name=name, key_hash=hash_api_key(key), prefix=key[:10])
    session.add(row)
    session.flush()
    return row


def make_caller_id(session: Session, account: Account, e164: str = "+15005550006") -> CallerId:
    """The account's caller ID `e164`, added if missing."""
    caller_id = session.scalars(
        select(CallerId).where(CallerId.account_id == account.id, CallerId.e164 == e164)
    ).one_or_none()
    if caller_id is None:
        caller_id = CallerId(account_id=account.id, e164=e164)
        session.add(caller_id)
        session.flush()
    return caller_id


def make_campaign(session: Session, account: Account, **fields: Any) -> Campaign:
    caller_id = fields.pop("caller_id", None) or make_caller_id(session, account)
    defaults: dict[str, Any] = {"name": "test campaign", "message": "Hello {first_name}."}
    campaign = Campaign(account_id=account.id, caller_id_id=caller_id.id, **{**defaults, **fields})
    session.add(campaign)
    session.flush()
    return campaign


def make_job(session: Session, campaign: Campaign, phone: str, **fields: Any) -> CallJob:
    """A pending contact of `campaign`; unless `zones` is given, it lives where it is now
    early afternoon (`daytime_zone`), so its calling window is open for hours."""
    fields.setdefault("zones", [daytime_zone(utcnow())])
    job = CallJob(
        campaign_id=campaign.id,
        account_id=campaign.account_id,
        line_no=fields.pop("line_no", 2),
        phone_e164=phone,
        variables=fields.pop("variables", {"first_name": "Ada"}),
        **fields,
    )
    session.add(job)
    session.flush()
    return job


def make_attempt(session: Session, job: CallJob, **fields: Any) -> CallAttempt:
    """An attempt at `job`'s contact from its campaign's caller ID: `dialing`, numbered after
    the job's `attempt_count`, its lease expiring one lease length from now (as the pacer
    leaves it). `fields` override any column (`status`, `call_sid`, `created_at`, ...)."""
    campaign = session.get_one(Campaign, job.campaign_id)
    defaults: dict[str, Any] = {
        "attempt_no": max(job.attempt_count, 1),
        "phone_e164": job.phone_e164,
        "from_e164": session.get_one(CallerId, campaign.caller_id_id).e164,
        "status": AttemptStatus.DIALING,
        "lease_expires_at": utcnow() + timedelta(seconds=lease_seconds(campaign)),
    }
    attempt = CallAttempt(
        job_id=job.id,
        campaign_id=job.campaign_id,
        account_id=job.account_id,
        **{**defaults, **fields},
    )
    session.add(attempt)
    session.flush()
    return attempt


def account_named(
    session: Session, name: str, *, max_concurrency: int = 10, cps: float = 1.0
) -> Account:
    """The account `name`, created with these caps and the simulator's caller ID if it is
    not there yet."""
    try:
        return get_account(session, name)
    except NotFoundError:
        return create_account(
            session, name, max_concurrency=max_concurrency, cps=cps, simulator=True
        )
