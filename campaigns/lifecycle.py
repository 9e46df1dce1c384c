"""Campaign lifecycle: create (with ingest), and the operator's start, pause, resume and
cancel, each through the transition table in `dialer.campaign_state`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns.accounts import outbound_number, outbound_pool, require_outbound
from campaigns.ingest import IngestSummary, ingest_contacts
from campaigns.options import CampaignOptions as CampaignOptions  # re-exported for callers
from campaigns.paging import Page, keyset_page
from dialer.calls import cancel_pending_jobs
from dialer.campaign_state import CampaignAction, transition
from dialer.errors import InvalidOptionError, NotFoundError
from dialer.providers.twiml import template_placeholders
from dialer.webhooks.outbox import record_contacts_ended
from models import (
    LIVE_ATTEMPT_STATUSES,
    Account,
    AttemptStatus,
    CallAttempt,
    Campaign,
    CampaignStatus,
    EndReason,
    transaction,
    utcnow,
)


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

    A file-level ingest error propagates (`campaigns.csvsource.IngestError`) and the
    caller's rollback leaves no campaign and no contact behind.
    """
    campaign = new_campaign(session, account, options)
    summary = ingest_contacts(
        session,
        campaign,
        source,
        phone_column=options.phone_column,
        column_map=options.columns(),
        required_variables=frozenset(template_placeholders(options.message)),
        rejected_sink=rejected_sink,
        progress=progress,
    )
    campaign.ingest_summary = summary.to_json()
    return campaign, summary


def new_campaign(session: Session, account: Account, options: CampaignOptions) -> Campaign:
    """A draft campaign with `options`, flushed (it has an id), with no contacts yet.

    A campaign is never capped above its account: a `max_concurrency` or `cps` above the
    account's is refused, except the default `max_concurrency` (`CampaignOptions`), which
    is lowered to the account's (entry points pass every field, so a default cannot be told
    from the same value given).

    Raises:
        DialerError: `invalid_phone_format`, `from_number_not_found`, `no_outbound_number`
            (see `campaigns.accounts.outbound_number`, `outbound_pool`).
        InvalidOptionError: `invalid_option`, a cap above the account's; a caller-ID pool
            with a number given twice.
    """
    above = [
        {"field": field, "message": f"at most {limit:g}, the account's"}
        for field, value, limit in (
            ("max_concurrency", options.max_concurrency, account.max_concurrency),
            ("cps", options.cps, account.cps),
        )
        if value is not None
        and value > limit
        and value != CampaignOptions.model_fields[field].default
    ]
    if above:
        raise InvalidOptionError("; ".join(f"{p['field']}: {p['message']}" for p in above), above)
    if options.caller_id_pool is not None:
        pool = outbound_pool(session, account.id, options.caller_id_pool)
    else:
        pool = [outbound_number(session, account.id, options.from_number)]
    window = options.calling_window()
    campaign = Campaign(
        account_id=account.id,
        caller_id_id=pool[0].id,
        pool_caller_ids=[c.id for c in pool[1:]],
        name=options.name,
        message=options.message,
        default_region=options.default_region.upper(),
        max_concurrency=min(options.max_concurrency, account.max_concurrency),
        cps=options.cps,
        max_attempts=options.max_attempts,
        dial_retries=options.dial_retries,
        ring_timeout_s=options.ring_timeout_s,
        time_limit_s=options.time_limit_s,
        max_hold_s=options.max_hold_s,
        machine_detection=options.machine_detection,
        machine_action=options.machine_action,
        menu=menu.stored() if (menu := options.call_menu()) else None,
        voicemail_message=options.voicemail_message,
        record=options.record,
        recording_disclosure=options.recording_disclosure or None,
        priority=options.priority,
        allow_premium=options.allow_premium,
        allowed_countries=options.allowed_countries,
        start_at=options.start_at,
        end_at=options.end_at,
        timezone=options.timezone,
        window_start=window.start,
        window_end=window.end,
        window_days=sorted(window.days),
        holidays=sorted(window.holidays),
        skip_public_holidays=window.skip_public_holidays,
        retry_policy=options.retry_matrix(),
        status=CampaignStatus.DRAFT,
    )
    session.add(campaign)
    session.flush()
    return campaign


def get_campaign(
    session: Session, account_id: int, campaign_id: int, *, lock: bool = False
) -> Campaign:
    """The account's campaign. Raises `NotFoundError` (`campaign_not_found`)."""
    query = select(Campaign).where(Campaign.id == campaign_id, Campaign.account_id == account_id)
    campaign = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if campaign is None:
        raise NotFoundError("campaign_not_found", f"no campaign {campaign_id}")
    return campaign


def list_campaigns(
    session: Session, account_id: int, *, limit: int | None = None, cursor: str | None = None
) -> Page[Campaign]:
    """The account's campaigns, oldest first, a page at a time
    (`campaigns.paging.keyset_page`: raises `invalid_cursor`)."""
    query = select(Campaign).where(Campaign.account_id == account_id)
    return keyset_page(session, query, "campaigns", [Campaign.id], limit=limit, cursor=cursor)


def start(session: Session, account_id: int, campaign_id: int, *, actor: str) -> Campaign:
    """draft -> running, recorded as done by `actor` (see `dialer.campaign_state.transition`).

    Raises:
        NotFoundError: `campaign_not_found`.
        ConflictError: `invalid_state` from any other status; `caller_id_not_outbound`,
            its caller ID is disabled for outbound calls.
    """
    campaign = get_campaign(session, account_id, campaign_id, lock=True)
    require_outbound(session, campaign)
    return transition(campaign, CampaignAction.START, actor=actor)


def pause(session: Session, account_id: int, campaign_id: int, *, actor: str) -> Campaign:
    """running -> paused: no new calls; calls already live finish. Raises as `start`."""
    campaign = get_campaign(session, account_id, campaign_id, lock=True)
    return transition(campaign, CampaignAction.PAUSE, actor=actor, reason="paused by operator")


def resume(session: Session, account_id: int, campaign_id: int, *, actor: str) -> Campaign:
    """paused -> running (also after the circuit breaker, once the cause is fixed).
    Raises as `start`."""
    campaign = get_campaign(session, account_id, campaign_id, lock=True)
    require_outbound(session, campaign)
    return transition(campaign, CampaignAction.RESUME, actor=actor)


def hang_up_on_cancel(session: Session, campaign_id: int) -> list[int]:
    """A cancel with hang-up: mark the campaign's attempts still being dialled or placed
    (no call sid yet) so that their call is hung up the moment its sid arrives
    (`end_reason` `campaign_canceled`, read by `dialer.dispatch.dialing`), and return the
    ids of its attempts with a call live at the provider, to hang up now.

    The mark is one UPDATE: an attempt a worker holds locked while it marks it `placing`
    is marked once that worker commits (PostgreSQL re-reads a row a concurrent
    transaction changed), so no create request slips between the cancel and the mark."""
    session.execute(
        update(CallAttempt)
        .where(
            CallAttempt.campaign_id == campaign_id,
            CallAttempt.status.in_([AttemptStatus.DIALING, AttemptStatus.PLACING]),
            CallAttempt.call_sid.is_(None),
        )
        .values(end_reason=EndReason.CAMPAIGN_CANCELED)
    )
    return list(
        session.scalars(
            select(CallAttempt.id).where(
                CallAttempt.campaign_id == campaign_id,
                CallAttempt.status.in_(LIVE_ATTEMPT_STATUSES),
                CallAttempt.call_sid.is_not(None),
            )
        )
    )


def cancel(session: Session, account_id: int, campaign_id: int, *, actor: str) -> Campaign:
    """-> canceled: pending contacts are cancelled; live calls finish and are reported.
    Raises as `start`."""
    campaign = get_campaign(session, account_id, campaign_id, lock=True)
    transition(campaign, CampaignAction.CANCEL, actor=actor)
    canceled = cancel_pending_jobs(session, campaign.id)
    record_contacts_ended(session, account_id, canceled, utcnow())
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
        campaigns.csvsource.IngestError: a file-level problem; nothing is written.
        DialerError: `invalid_phone_format`, `from_number_not_found`, `no_outbound_number`
            (see `campaigns.accounts.outbound_number`).
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
