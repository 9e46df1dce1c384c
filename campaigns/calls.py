"""Single calls (`POST /v1/calls`, `dialer calls place`) and reading calls back.

A single call is a contact (`CallJob`) like any other: of the campaign named by
`campaign_id`, else of the account's *standing* campaign for its caller ID (created, and
started, on first use; it stays running while it has nothing to dial). So it goes through
the same pacer, pool, CPS limits, DNC check and retry policy as a campaign's contacts, and
the caps hold whatever the mix.

A campaign's settings are the defaults of its contacts; a single call may override the
message, the ring timeout, the time limit, the hold cap and AMD for itself (nullable
columns of `call_jobs`, read by the dialer as "the contact's, else the campaign's"). The
caller ID is a campaign's: a call from another number goes to that number's standing
campaign.

Statuses a client sees (`CallStatus`) are the contact's: `queued` (waiting for its first
or next attempt), `in_progress` (an attempt is being dialled or is live), `completed`
(final, with an `outcome`) and `canceled` (its campaign was cancelled first). A queued
call says why it is not being dialled yet (`WaitingReason`, `waiting_for`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AwareDatetime, Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.accounts import outbound_number, outbound_pool
from campaigns.lifecycle import get_campaign
from campaigns.options import (
    MAX_POOL,
    RING_TIMEOUT_S,
    TIME_LIMIT_S,
    CodedOptions,
    MenuEntry,
    build_menu,
    one_caller_id_setting,
    read_menu,
)
from campaigns.paging import Page, keyset_page
from dialer.calls import DEFAULT_RETRY_POLICY, canceled, move_job
from dialer.campaign_state import CampaignAction, transition
from dialer.dispatch.attempt_end import end_unplaced
from dialer.dispatch.timing import schedule_of
from dialer.errors import ConflictError, DialerError, NotFoundError
from dialer.frequency import Cap, caps_of, free_at, recent_calls
from dialer.menu import DEFAULT_OPT_OUT_DIGIT, DEFAULT_OPT_OUT_PROMPT, Menu, opt_out_menu
from dialer.numbers import NumberRejected, RejectReason, check_policy, classify
from dialer.providers.twiml import template_placeholders
from dialer.runtime import Runtime
from dialer.webhook_url import check_webhook_url
from dialer.webhooks.outbox import record_contacts_ended
from dialer.windows import CallingWindow, ContactSchedule, Place, next_opening, subdivision_of
from models import (
    LIVE_ATTEMPT_STATUSES,
    Account,
    AttemptStatus,
    CallAttempt,
    CallerId,
    CallJob,
    Campaign,
    CampaignEvent,
    CampaignStatus,
    DncEntry,
    EndReason,
    JobStatus,
    MachineAction,
    Outcome,
)

_E164 = re.compile(r"\+[1-9]\d{1,14}")
_STANDING_LOCK = 12_001
"""First key of the advisory lock that serialises creating a caller ID's standing campaign."""


class CallStatus(StrEnum):
    """A call's status as clients see it (the contact's `JobStatus`)."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELED = "canceled"


_BY_JOB_STATUS = {
    JobStatus.PENDING: CallStatus.QUEUED,
    JobStatus.IN_PROGRESS: CallStatus.IN_PROGRESS,
    JobStatus.DONE: CallStatus.COMPLETED,
    JobStatus.CANCELED: CallStatus.CANCELED,
}
_JOB_STATUS = {status: job for job, status in _BY_JOB_STATUS.items()}
FINAL_STATUSES = frozenset({CallStatus.COMPLETED, CallStatus.CANCELED})


class WaitingReason(StrEnum):
    """Why a queued call is not being dialled now (`waiting_for`)."""

    CALLING_WINDOW = "calling_window"
    """Outside the callee's calling window (09:00-20:00 in its time unless the campaign
    sets another): due at its next opening."""
    FREQUENCY_CAP = "frequency_cap"
    """The number reached one of the account's frequency caps (`frequency_caps`, "N calls
    in D days"): due when every cap allows it again (in the window)."""
    CAMPAIGN_PAUSED = "campaign_paused"
    """Its campaign is paused: no time is known until it is resumed."""
    CAMPAIGN_NOT_STARTED = "campaign_not_started"
    """Its campaign is a draft: no time is known until it is started."""
    RETRY_SCHEDULED = "retry_scheduled"
    """An attempt ended (busy, no answer, ...) and the retry matrix's delay runs."""
    SCHEDULED = "scheduled"
    """Its `call_at`, or its campaign's `start_at`, is still ahead."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a call waits (None: it does not: final, live, or due now and dialled as soon as
    the pool and the CPS allow) and when its next attempt is due (None: not queued, or
    not known while its campaign is paused or a draft)."""

    reason: WaitingReason | None
    next_attempt_at: datetime | None


_NOT_WAITING = Waiting(None, None)


def waiting_for(
    job: CallJob,
    campaign: Campaign,
    recent: list[datetime],
    caps: tuple[Cap, ...],
    now: datetime,
) -> Waiting:
    """Why the contact `job` is not dialled at `now`, and when it next will be.

    `recent` is the number's recent calls, newest first (`dialer.frequency.recent_calls`),
    `caps` the account's frequency caps: the pacer's own rules
    (`dialer.dispatch.timing.admit`), judged at `now`, so a call that the pacer would move
    to a later day says so before the pacer claims it."""
    if job.status is not JobStatus.PENDING:
        return _NOT_WAITING
    if campaign.status is CampaignStatus.PAUSED:
        return Waiting(WaitingReason.CAMPAIGN_PAUSED, None)
    if campaign.status is CampaignStatus.DRAFT:
        return Waiting(WaitingReason.CAMPAIGN_NOT_STARTED, None)
    schedule = schedule_of(campaign, job)
    held = free_at(caps, recent, now)
    if held is not None and held > max(job.next_due_at, now):
        return Waiting(WaitingReason.FREQUENCY_CAP, schedule.next_due(held))
    if job.next_due_at <= now:
        return Waiting(None, job.next_due_at)
    if not schedule.callable_at(now) and schedule.next_due(now) == job.next_due_at:
        return Waiting(WaitingReason.CALLING_WINDOW, job.next_due_at)
    if job.attempt_count > 0:
        return Waiting(WaitingReason.RETRY_SCHEDULED, job.next_due_at)
    return Waiting(WaitingReason.SCHEDULED, job.next_due_at)


class Amd(StrEnum):
    """Answering machine detection for one call."""

    OFF = "off"
    HANGUP = "hangup"
    """Detect; hang up on a machine (outcome `machine`)."""
    LEAVE_MESSAGE = "leave_message"
    """Detect; wait for the beep and leave the message."""
    DETECT = "detect"
    """Detect and record `answered_by`; carry on as with a person."""


_AMD_SETTINGS: dict[Amd, tuple[bool, MachineAction | None]] = {
    Amd.OFF: (False, None),
    Amd.HANGUP: (True, MachineAction.HANG_UP),
    Amd.LEAVE_MESSAGE: (True, MachineAction.LEAVE_MESSAGE),
    Amd.DETECT: (True, MachineAction.CONTINUE),
}


METADATA_MAX_BYTES = 4096
"""Largest `metadata` of one call, as compact JSON (it is echoed on every read)."""


class SingleCall(CodedOptions):
    """What a client asks for: one call (`POST /v1/calls`, `dialer calls place`), on the
    operator schema's base (`campaigns.options`): unknown fields and values out of bounds
    are `invalid_option` whoever builds it. Durations in seconds; `call_at` aware.

    `to_number` and `message` are optional here only so that their absence is reported as
    `missing_field` in the validation order (`message` may be left out when `campaign_id`
    names a campaign, whose message is then used).
    """

    to_number: str | None = Field(None, max_length=32, description="E.164 (+447386172392).")
    message: str | None = Field(
        None, max_length=4000, description="Spoken text; {name} placeholders take `variables`."
    )
    variables: dict[str, str] = Field(
        default_factory=dict, description="Values of the message's placeholders."
    )
    from_number: str | None = Field(
        None,
        max_length=32,
        description="Caller ID, one of the account's outbound numbers (default: the "
        "campaign's, else the account's first).",
    )
    caller_id_pool: list[Annotated[str, Field(max_length=32)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_POOL,
        description="Caller-ID pool instead of one from_number (without campaign_id): the "
        "account's outbound numbers, E.164. The call presents the number the callee was "
        "last called from, else one of its area code or region, else the least used.",
    )

    @model_validator(mode="after")
    def _one_caller_id_setting(self) -> Self:
        one_caller_id_setting(self.from_number, self.caller_id_pool)
        return self

    amd: Amd | None = Field(
        None,
        description="Answering machine detection: off, hangup (on a machine), leave_message "
        "(after the beep), detect (record answered_by, carry on). Default: the campaign's "
        "(off for the standing campaign).",
    )
    ring_timeout: int | None = Field(
        None,
        ge=RING_TIMEOUT_S[0],
        le=RING_TIMEOUT_S[1],
        description="Seconds it may ring (5-600).",
    )
    time_limit: int | None = Field(
        None, ge=TIME_LIMIT_S[0], le=TIME_LIMIT_S[1], description="Longest call, seconds."
    )
    max_hold_seconds: int | None = Field(
        None,
        gt=0,
        le=TIME_LIMIT_S[1],
        description="Hang up a live call after this many seconds.",
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Your own strings (at most 4 KB as JSON), echoed on every read.",
    )
    webhook_url: str | None = Field(
        None, max_length=2048, description="Where this call's events go (default: the account's)."
    )
    call_at: AwareDatetime | None = Field(
        None, description="ISO 8601 with offset: not before then (default: now)."
    )
    menu: dict[str, MenuEntry] | None = Field(
        None,
        description="This call's keypress menu, as a campaign's `menu` (key -> confirm, "
        'cancel, repeat, opt_out, or {"action": "transfer", "to": "+E164"}), followed by '
        "the opt-out line (press 9). Default: the campaign's (the standing campaign's is "
        "the opt-out line alone).",
    )
    record: bool | None = Field(
        None,
        description="Record this call (Twilio Record), the disclosure said first. Default: "
        "the campaign's (off for the standing campaign).",
    )
    campaign_id: int | None = Field(
        None,
        ge=1,
        le=2**63 - 1,
        description="Count it in this campaign (default: the standing one).",
    )

    @field_validator("menu", mode="before")
    @classmethod
    def _menu(cls, value: Any) -> Any:
        return read_menu(value)

    def call_menu(self) -> Menu | None:
        """The menu this call offers, the default opt-out line after its keys; None: the
        campaign's. Raises `InvalidMenuError` (the opt-out key mapped to another action)."""
        if self.menu is None:
            return None
        return build_menu(self.menu, (DEFAULT_OPT_OUT_DIGIT, DEFAULT_OPT_OUT_PROMPT))

    @field_validator("metadata")
    @classmethod
    def _small(cls, metadata: dict[str, str]) -> dict[str, str]:
        if len(json.dumps(metadata).encode()) > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is larger than {METADATA_MAX_BYTES} bytes as JSON")
        return metadata


def _missing(name: str) -> DialerError:
    return DialerError(
        "missing_field", f"{name} is required", [{"field": name, "message": "required"}]
    )


def _to_number(raw: str) -> str:
    """`raw`, which must be E.164 (`+447386172392`; `07386172392` is refused). Emergency
    numbers and short codes (911, 112, 999, ...) are never E.164 and are refused as what
    they are.

    Raises:
        NumberRejected: `emergency_or_short_code`.
        DialerError: `invalid_phone_format`.
    """
    compact = raw.strip()
    if _E164.fullmatch(compact):
        return compact
    try:
        classify(compact, "US")
    except NumberRejected as rejected:
        if rejected.reason is RejectReason.EMERGENCY_OR_SHORT_CODE:
            raise
    raise DialerError("invalid_phone_format", f"{raw!r} is not an E.164 number (+447386172392)")


def place_call(
    session: Session,
    account: Account,
    call: SingleCall,
    *,
    allow_private_webhooks: bool,
    now: datetime,
) -> CallJob:
    """Queue one call for the account; the caller commits and then wakes the account's
    pacer. Due at `call_at`, else `now` (aware UTC; the runtime's clock), or at the next
    opening of the callee's calling window after that: windows apply to single calls too.

    Validation stops at the first failure, in this order (all 400 unless said):
    `missing_field` (`to_number`; `message` without `campaign_id`; `details` names it),
    `invalid_phone_format` (not E.164), `campaign_not_found` (404) / `invalid_state` (409,
    the campaign is completed or cancelled), the number policy (`emergency_or_short_code`,
    `premium_rate`, `country_not_allowed`, `do_not_call`), `from_number_not_found`,
    `no_outbound_number`, `from_number_mismatch` (a `from_number` other than the named
    campaign's caller ID, or a `caller_id_pool` with a named campaign), `campaign_paused`
    (409, see `refuse_tripped`),
    `invalid_template`, `missing_variable`, `webhook_url_not_allowed`.

    Returns:
        The new contact (flushed: it has its id).
    """
    if call.to_number is None or not call.to_number.strip():
        raise _missing("to_number")
    if call.campaign_id is None and (call.message is None or not call.message.strip()):
        raise _missing("message")
    e164 = _to_number(call.to_number)

    campaign = None
    if call.campaign_id is not None:
        campaign = get_campaign(session, account.id, call.campaign_id)
        if campaign.status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELED):
            raise ConflictError(
                "invalid_state", f"campaign {campaign.id} is {campaign.status.value}"
            )

    try:
        info = classify(e164, "US")
    except NumberRejected as rejected:
        if rejected.reason is RejectReason.EMERGENCY_OR_SHORT_CODE:
            raise
        raise DialerError("invalid_phone_format", f"{e164} is not a valid number") from None
    check_policy(
        info,
        allow_premium=campaign.allow_premium if campaign else False,
        allowed_countries=campaign.allowed_countries if campaign else None,
    )
    if session.scalar(select(DncEntry.listed(account.id, e164))):
        raise DialerError("do_not_call", f"{e164} is on the account's do-not-call list")

    pool = None
    if call.caller_id_pool is not None and campaign is not None:
        raise DialerError(
            "from_number_mismatch",
            f"campaign {campaign.id} calls from its own numbers; leave caller_id_pool out",
        )
    if call.caller_id_pool is not None:
        pool = [c.id for c in outbound_pool(session, account.id, call.caller_id_pool)]
        campaign = standing_campaign(session, account, session.get_one(CallerId, pool[0]))
    elif campaign is None:
        caller_id = outbound_number(session, account.id, call.from_number)
        campaign = standing_campaign(session, account, caller_id)
    elif call.from_number is not None:
        caller_id = outbound_number(session, account.id, call.from_number)
        if caller_id.id != campaign.caller_id_id:
            raise DialerError(
                "from_number_mismatch",
                f"campaign {campaign.id} calls from another number; leave from_number out",
            )
    refuse_tripped(session, campaign)

    message = call.message if call.message is not None and call.message.strip() else None
    names = template_placeholders(message if message is not None else campaign.message)
    for name in sorted(names):
        if not str(call.variables.get(name, "")).strip():
            given = ", ".join(sorted(call.variables)) or "none"
            raise DialerError(
                "missing_variable",
                f"{{{name}}} has no value in variables (given: {given})",
                [{"field": f"variables.{name}", "message": "required by the message"}],
            )
    webhook_url = call.webhook_url
    if webhook_url:
        webhook_url = check_webhook_url(webhook_url, allow_private=allow_private_webhooks)

    detection, action = _AMD_SETTINGS[call.amd] if call.amd is not None else (None, None)
    zones = info.timezones or ((campaign.timezone,) if campaign.timezone else ())
    if not zones:
        raise DialerError(
            "unknown_timezone",
            f"{e164} has no known time zone and its campaign sets no timezone",
        )
    place = Place(zones, info.region, subdivision_of(e164, info.region))
    earliest = max(call.call_at or now, campaign.start_at or now, now)
    if next_opening(CallingWindow.of(campaign), place, earliest) is None:
        raise DialerError(
            "no_calling_window", f"{e164}'s zones never share an open moment of the window"
        )
    job = CallJob(
        campaign_id=campaign.id,
        account_id=account.id,
        line_no=None,
        phone_e164=e164,
        variables=dict(call.variables),
        metadata_=dict(call.metadata),
        webhook_url=webhook_url or None,
        timezone=zones[0] if len(zones) == 1 else None,
        zones=list(zones),
        region=place.country,
        subdivision=place.subdivision,
        next_due_at=ContactSchedule(CallingWindow.of(campaign), place).next_due(earliest),
        message=message,
        ring_timeout_s=call.ring_timeout,
        time_limit_s=call.time_limit,
        max_hold_s=call.max_hold_seconds,
        machine_detection=detection,
        machine_action=action,
        pool_caller_ids=pool if pool and len(pool) > 1 else None,
        menu=menu.stored() if (menu := call.call_menu()) else None,
        record=call.record,
    )
    session.add(job)
    session.flush()
    return job


def refuse_tripped(session: Session, campaign: Campaign) -> None:
    """Refuse a call into a campaign the circuit breaker paused (an account-level provider
    error: bad credentials, no balance, ...): queued, it would wait until someone fixes the
    cause and resumes the campaign, and its client would never learn why. A campaign its
    operator paused takes the call, which goes once it is resumed.

    Raises:
        ConflictError: `campaign_paused` (409), naming the breaker's reason.
    """
    if campaign.status is not CampaignStatus.PAUSED:
        return
    paused_by = session.scalar(
        select(CampaignEvent.action)
        .where(
            CampaignEvent.campaign_id == campaign.id,
            CampaignEvent.to_status == CampaignStatus.PAUSED.value,
        )
        .order_by(CampaignEvent.id.desc())
        .limit(1)
    )
    if paused_by == CampaignAction.TRIP_BREAKER.value:
        raise ConflictError(
            "campaign_paused",
            f"campaign {campaign.id} is paused by the circuit breaker ({campaign.status_reason});"
            " no call is placed until the cause is fixed and the campaign resumed",
            [{"field": "campaign_id", "message": campaign.status_reason or "circuit breaker"}],
        )


def standing_campaign(session: Session, account: Account, caller_id: CallerId) -> Campaign:
    """The account's standing campaign of single calls from `caller_id`, created and
    started on first use (named `api (+1...)`; default dialling policy; its cap follows
    the account's)."""
    session.execute(select(func.pg_advisory_xact_lock(_STANDING_LOCK, caller_id.id)))
    campaign = session.scalars(
        select(Campaign).where(
            Campaign.account_id == account.id,
            Campaign.caller_id_id == caller_id.id,
            Campaign.standing,
            Campaign.status.in_(
                [CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED]
            ),
        )
    ).one_or_none()
    if campaign is None:
        campaign = Campaign(
            account_id=account.id,
            caller_id_id=caller_id.id,
            name=f"api ({caller_id.e164})",
            message="",
            menu=opt_out_menu().stored(),
            standing=True,
            max_concurrency=account.max_concurrency,
            retry_policy={k: dict(v) for k, v in DEFAULT_RETRY_POLICY.items()},
            status=CampaignStatus.DRAFT,
        )
        session.add(campaign)
        session.flush()
        transition(
            campaign,
            CampaignAction.START,
            actor="api",
            reason="the account's first single call from this caller ID",
        )
    campaign.max_concurrency = account.max_concurrency
    return campaign


# ---- reading --------------------------------------------------------------------------------


def get_call(session: Session, account_id: int, call_id: int) -> CallJob:
    """The account's call `call_id`. Raises `NotFoundError` (`call_not_found`)."""
    job = session.scalars(
        select(CallJob).where(CallJob.id == call_id, CallJob.account_id == account_id)
    ).one_or_none()
    if job is None:
        raise NotFoundError("call_not_found", f"no call {call_id}")
    return job


CANCEL_CALL_ACTION = "cancel_call"
"""`CampaignEvent.action` of a call cancelled by an operator (`cancel_call`)."""


@dataclass(frozen=True, slots=True)
class CanceledCall:
    """What `cancel_call` did: the contact (cancelled now, or still in progress while its
    call is being hung up or its create request answered), and the attempt whose live call
    the caller hangs up after the commit (None: none is live)."""

    job: CallJob
    hang_up: int | None


def cancel_call(
    session: Session, runtime: Runtime, account_id: int, call_id: int, *, actor: str
) -> CanceledCall:
    """Cancel one call: a single call or a campaign's contact, by its call id.

    Not yet dialled (queued, or claimed with its request not sent: `dialing`): it ends
    `canceled` now, its lease freed after the commit. Its create request may have left
    (`placing`, no call sid yet): the attempt is marked `call_canceled`, so its call is hung
    up the moment its sid arrives, and the contact ends `canceled` with the attempt (also
    if no call was made). Live: marked the same way, and `hang_up` names the attempt the
    caller hangs up after the commit (`dialer.dispatch.dialing.hang_up_call`, the
    cancel-with-hang-up path); the contact ends `canceled`, with the call's outcome, when
    the provider reports the end. Recorded in the campaign's history (`cancel_call`, by
    `actor`). Locks the contact's live attempts, then the contact, as an attempt's end does.

    Raises:
        NotFoundError: `call_not_found` (also another account's call).
        ConflictError: `call_ended`, the call is already final (completed or cancelled).
    """
    job = get_call(session, account_id, call_id)
    live = _lock_live_attempts(session, job.id)
    job = session.get_one(CallJob, job.id, with_for_update=True, populate_existing=True)
    if job.status in (JobStatus.DONE, JobStatus.CANCELED):
        raise ConflictError(
            "call_ended", f"call {call_id} is already {call_status(job).value}: nothing to cancel"
        )
    if job.status is JobStatus.IN_PROGRESS and not live:
        # The pacer claimed it between the two locks: its new attempt is `dialing`.
        live = _lock_live_attempts(session, job.id)
    before = call_status(job).value
    now = runtime.clock()
    hang_up = None
    if not live:
        move_job(job, canceled(job))
        session.flush()
        record_contacts_ended(session, account_id, [job.id], now)
    else:
        attempt = live[0]
        attempt.end_reason = EndReason.CALL_CANCELED
        if attempt.status is AttemptStatus.DIALING:
            end_unplaced(
                session,
                runtime,
                attempt,
                outcome=None,
                error_message="call canceled",
                counts_as_dial_error=False,
            )
        elif attempt.call_sid is not None:
            hang_up = attempt.id
    session.add(
        CampaignEvent(
            campaign_id=job.campaign_id,
            action=CANCEL_CALL_ACTION,
            actor=actor,
            reason=f"call {job.id} to {job.phone_e164} canceled",
            changes={"call": {"before": before, "after": call_status(job).value}},
        )
    )
    session.flush()
    return CanceledCall(job, hang_up)


def _lock_live_attempts(session: Session, job_id: int) -> list[CallAttempt]:
    return list(
        session.scalars(
            select(CallAttempt)
            .where(
                CallAttempt.job_id == job_id,
                CallAttempt.status.in_(LIVE_ATTEMPT_STATUSES),
            )
            .order_by(CallAttempt.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def call_status(job: CallJob) -> CallStatus:
    """The client's word for the contact's status."""
    return _BY_JOB_STATUS[job.status]


def calls_json(session: Session, jobs: list[CallJob], now: datetime) -> list[dict[str, Any]]:
    """Each call with its attempts, as `GET /v1/calls/{id}` shows one, with why a queued
    call waits at `now` (aware UTC; `waiting_for`)."""
    if not jobs:
        return []
    attempts: dict[int, list[CallAttempt]] = {}
    for attempt in session.scalars(
        select(CallAttempt)
        .where(CallAttempt.job_id.in_([job.id for job in jobs]))
        .order_by(CallAttempt.id)
    ):
        attempts.setdefault(attempt.job_id, []).append(attempt)
    senders: dict[int, str] = {
        campaign_id: e164
        for campaign_id, e164 in session.execute(
            select(Campaign.id, CallerId.e164)
            .join(CallerId, CallerId.id == Campaign.caller_id_id)
            .where(Campaign.id.in_({job.campaign_id for job in jobs}))
        )
    }
    waiting = _waiting(session, jobs, now)
    return [
        {
            "call_id": job.id,
            "campaign_id": job.campaign_id,
            "status": call_status(job).value,
            "outcome": job.outcome.value if job.outcome else None,
            "to": job.phone_e164,
            "from": senders[job.campaign_id],
            "variables": job.variables,
            "metadata": job.metadata_,
            "webhook_url": job.webhook_url,
            "waiting_reason": waiting.get(job.id, _NOT_WAITING).reason,
            "next_attempt_at": waiting.get(job.id, _NOT_WAITING).next_attempt_at,
            "created_at": job.created_at,
            "attempts": [_attempt_json(a) for a in attempts.get(job.id, [])],
        }
        for job in jobs
    ]


def _waiting(session: Session, jobs: list[CallJob], now: datetime) -> dict[int, Waiting]:
    """`waiting_for` of each queued job (one account's: a page of calls is), by job id."""
    queued = [job for job in jobs if job.status is JobStatus.PENDING]
    if not queued:
        return {}
    account = session.get_one(Account, queued[0].account_id)
    caps = caps_of(account.frequency_caps)
    calls = recent_calls(session, account.id, [job.phone_e164 for job in queued], now, caps)
    campaigns = {
        c.id: c
        for c in session.scalars(
            select(Campaign).where(Campaign.id.in_({job.campaign_id for job in queued}))
        )
    }
    return {
        job.id: waiting_for(
            job,
            campaigns[job.campaign_id],
            calls.get(job.phone_e164, []),
            caps,
            now,
        )
        for job in queued
    }


def _attempt_json(attempt: CallAttempt) -> dict[str, Any]:
    return {
        "attempt_no": attempt.attempt_no,
        "sid": attempt.call_sid,
        "status": attempt.status.value,
        "from": attempt.from_e164,
        "answered_by": attempt.answered_by,
        "digits": attempt.digits,
        "duration": attempt.duration_s,
        "error_code": attempt.error_code,
        "error_message": attempt.error_message,
        "created_at": attempt.created_at,
        "placed_at": attempt.placed_at,
        "answered_at": attempt.answered_at,
        "ended_at": attempt.ended_at,
    }


def filter_number(raw: str) -> str:
    """The E.164 form of a `to_number` filter as it arrives in a query string: E.164
    (`+447386172392`), E.164 whose `+` was sent unencoded and so reads as a space
    (` 447386172392`), or a US national form (`(212) 555-0143`; accounts have no region
    of their own, and single calls are read as US numbers too).

    Raises:
        DialerError: `invalid_phone_format`, not a phone number.
    """
    text = raw.strip()
    if raw.startswith(" ") and text[:1].isdigit():
        text = "+" + text
    try:
        return classify(text, "US").e164
    except NumberRejected:
        raise DialerError(
            "invalid_phone_format", f"to_number {raw!r} is not a phone number (+447386172392)"
        ) from None


@dataclass(frozen=True)
class CallFilter:
    """Which calls to list: all given conditions hold. `to_number` as a client sends it
    (normalised by `filter_number`)."""

    campaign_id: int | None = None
    status: CallStatus | None = None
    outcome: Outcome | None = None
    to_number: str | None = None


def list_calls(
    session: Session, account_id: int, where: CallFilter, *, limit: int, cursor: str | None
) -> Page[CallJob]:
    """The account's calls, newest first, `limit` (1..`campaigns.paging.MAX_LIMIT`) at a
    time, from `cursor` (a `next_cursor` of the previous page; keyset on the call id).

    Raises:
        NotFoundError: `campaign_not_found` (`where.campaign_id` is not the account's).
        DialerError: `invalid_cursor`, `invalid_option` (`limit` out of bounds),
            `invalid_phone_format` (`where.to_number`).
    """
    query = select(CallJob).where(CallJob.account_id == account_id)
    if where.campaign_id is not None:
        get_campaign(session, account_id, where.campaign_id)
        query = query.where(CallJob.campaign_id == where.campaign_id)
    if where.status is not None:
        query = query.where(CallJob.status == _JOB_STATUS[where.status])
    if where.outcome is not None:
        query = query.where(CallJob.outcome == where.outcome)
    if where.to_number is not None:
        query = query.where(CallJob.phone_e164 == filter_number(where.to_number))
    return keyset_page(
        session, query, "calls", [CallJob.id], descending=True, limit=limit, cursor=cursor
    )
