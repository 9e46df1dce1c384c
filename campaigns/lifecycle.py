"""Campaign lifecycle: create (with ingest), and the operator's start, pause, resume and
cancel, each through the transition table in `dialer.campaign_state`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.accounts import caller_id_for
from campaigns.ingest import IngestSummary, ingest_contacts
from dialer.calls import DEFAULT_RETRY_POLICY, cancel_pending_jobs
from dialer.campaign_state import CampaignAction, transition
from dialer.errors import DialerError, NotFoundError
from dialer.providers.twiml import TemplateError, template_placeholders
from models import (
    Account,
    Campaign,
    CampaignStatus,
    MachineAction,
    transaction,
)

DEFAULT_MESSAGE = (
    "Hello {first_name}, this is a reminder of your appointment on {appointment_time}."
)


@dataclass
class CampaignOptions:
    """Everything a campaign is created with. Durations in seconds, rates in calls/second."""

    name: str
    message: str = DEFAULT_MESSAGE
    from_number: str | None = None
    default_region: str = "US"
    phone_column: str | None = None
    max_concurrency: int = 10
    cps: float | None = None
    max_attempts: int = 3
    dial_retries: int = 3
    ring_timeout_s: int = 30
    time_limit_s: int = 600
    max_hold_s: int | None = None
    machine_detection: bool = False
    machine_action: MachineAction = MachineAction.HANG_UP
    gather_dtmf: bool = False
    priority: int = 0
    allow_premium: bool = False
    allowed_countries: list[str] | None = None
    start_at: datetime | None = None
    retry_policy: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_RETRY_POLICY.items()}
    )

    def validate(self) -> None:
        """Raises `DialerError` (`invalid_option`, `invalid_template`) on a bad setting."""
        checks = [
            (bool(self.name.strip()), "name must not be empty"),
            (self.max_concurrency > 0, "max_concurrency must be positive"),
            (self.cps is None or self.cps > 0, "cps must be positive"),
            (self.max_attempts > 0, "max_attempts must be positive"),
            (self.dial_retries >= 0, "dial_retries must not be negative"),
            (5 <= self.ring_timeout_s <= 600, "ring_timeout_s must be 5-600 (Twilio Timeout)"),
            (0 < self.time_limit_s <= 14400, "time_limit_s must be 1-14400 (Twilio TimeLimit)"),
            (self.max_hold_s is None or self.max_hold_s > 0, "max_hold_s must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise DialerError("invalid_option", message)
        try:
            template_placeholders(self.message)
        except TemplateError as error:
            raise DialerError("invalid_template", str(error)) from error


def create_campaign(
    session: Session,
    account: Account,
    options: CampaignOptions,
    source: BinaryIO,
    *,
    rejected_sink: TextIO | None = None,
    progress: Any = None,
) -> tuple[Campaign, IngestSummary]:
    """Create a draft campaign and ingest its contacts in the session's transaction.

    A file-level ingest error propagates (`campaigns.ingest.IngestError`) and the caller's
    rollback leaves no campaign and no contact behind.
    """
    options.validate()
    caller_id = caller_id_for(session, account, options.from_number)
    campaign = Campaign(
        account_id=account.id,
        caller_id_id=caller_id.id,
        name=options.name,
        message=options.message,
        default_region=options.default_region.upper(),
        max_concurrency=options.max_concurrency,
        cps=options.cps,
        max_attempts=options.max_attempts,
        dial_retries=options.dial_retries,
        ring_timeout_s=options.ring_timeout_s,
        time_limit_s=options.time_limit_s,
        max_hold_s=options.max_hold_s,
        machine_detection=options.machine_detection,
        machine_action=options.machine_action,
        gather_dtmf=options.gather_dtmf,
        priority=options.priority,
        allow_premium=options.allow_premium,
        allowed_countries=options.allowed_countries,
        start_at=options.start_at,
        retry_policy=options.retry_policy,
        status=CampaignStatus.DRAFT,
    )
    session.add(campaign)
    session.flush()
    summary = ingest_contacts(
        session,
        campaign,
        source,
        phone_column=options.phone_column,
        required_variables=frozenset(template_placeholders(options.message)),
        rejected_sink=rejected_sink,
        progress=progress,
    )
    campaign.ingest_summary = summary.to_json()
    return campaign, summary


def get_campaign(
    session: Session, account_id: int, campaign_id: int, *, lock: bool = False
) -> Campaign:
    """The account's campaign. Raises `NotFoundError` (`campaign_not_found`)."""
    query = select(Campaign).where(Campaign.id == campaign_id, Campaign.account_id == account_id)
    campaign = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if campaign is None:
        raise NotFoundError("campaign_not_found", f"no campaign {campaign_id}")
    return campaign


def start(session: Session, account_id: int, campaign_id: int) -> Campaign:
    """draft -> running.

    Raises:
        NotFoundError: `campaign_not_found`.
        ConflictError: `invalid_state` from any other status.
    """
    campaign = get_campaign(session, account_id, campaign_id, lock=True)
    return transition(campaign, CampaignAction.START)


def pause(session: Session, account_id: int, campaign_id: int) -> Campaign:
    """running -> paused: no new calls; calls already live finish. Raises as `start`."""
    campaign = get_campaign(session, account_id, campaign_id, lock=True)
    return transition(campaign, CampaignAction.PAUSE, reason="paused by operator")


def resume(session: Session, account_id: int, campaign_id: int) -> Campaign:
    """paused -> running (also after the circuit breaker, once the cause is fixed).
    Raises as `start`."""
    campaign = get_campaign(session, account_id, campaign_id, lock=True)
    return transition(campaign, CampaignAction.RESUME)


def cancel(session: Session, account_id: int, campaign_id: int) -> Campaign:
    """-> canceled: pending contacts are cancelled; live calls finish and are reported.
    Raises as `start`."""
    campaign = get_campaign(session, account_id, campaign_id, lock=True)
    transition(campaign, CampaignAction.CANCEL)
    cancel_pending_jobs(session, campaign.id)
    return campaign


@dataclass(frozen=True)
class ImportedCampaign:
    """A committed campaign and what ingest made of its CSV."""

    campaign_id: int
    summary: IngestSummary
    rejected_csv: Path | None
    """The rejected-rows CSV (line, reason, original fields), or None when none were."""

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            **self.summary.to_json(),
            "rejected_csv": str(self.rejected_csv) if self.rejected_csv else None,
        }


def import_campaign(
    database_url: str,
    data_dir: Path,
    account_id: int,
    options: CampaignOptions,
    source: BinaryIO,
    *,
    progress: Any = None,
) -> ImportedCampaign:
    """Create a campaign from a CSV in one transaction; keep the rejected rows as a CSV
    under `data_dir/rejected/`.

    Raises:
        campaigns.ingest.IngestError: a file-level problem; nothing is written.
        DialerError: a bad option.
    """
    folder = data_dir / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{secrets.token_hex(8)}.partial"
    with partial.open("w", newline="", encoding="utf-8") as sink:
        try:
            with transaction(database_url) as session:
                account = session.get_one(Account, account_id)
                campaign, summary = create_campaign(
                    session, account, options, source, rejected_sink=sink, progress=progress
                )
                campaign_id = campaign.id
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if summary.accepted == summary.rows:
        partial.unlink()
        return ImportedCampaign(campaign_id, summary, None)
    final = folder / f"campaign-{campaign_id}-rejected.csv"
    partial.replace(final)
    return ImportedCampaign(campaign_id, summary, final.resolve())
