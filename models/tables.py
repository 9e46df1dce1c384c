"""The dialer's tables: accounts, caller IDs, campaigns, call jobs, call attempts, provider
events and the do-not-call list."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnExpressionArgument,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    exists,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.selectable import Exists

from models.base import Base, CreatedAt
from models.enums import (
    AttemptStatus,
    CampaignStatus,
    EndReason,
    JobStatus,
    MachineAction,
    Outcome,
    ScheduleRunStatus,
    ScheduleStatus,
    WebhookStatus,
)


def _enum(cls: type[Any], name: str) -> Enum:
    # Store the StrEnum *values* ("in-progress"), which are the provider's words.
    return Enum(
        cls,
        name=name,
        values_callable=lambda members: [m.value for m in members],
        native_enum=True,
        validate_strings=True,
    )


class Account(CreatedAt, Base):
    """A tenant: its provider concurrency pool and calls-per-second limit are shared by all
    of its campaigns."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=10)
    """Most calls live at once across the account (the provider's concurrency pool)."""
    cps: Mapped[float] = mapped_column(default=1.0)
    """Calls per second the provider allows the account to create (Twilio's default is 1)."""
    max_concurrency_ceiling: Mapped[int | None] = mapped_column(Integer)
    """Most the account's `max_concurrency` may be, set by the installation's operator;
    None: `Settings.account_max_concurrency_ceiling`."""
    cps_ceiling: Mapped[float | None] = mapped_column()
    """Most the account's `cps` may be (calls per second), set by the installation's
    operator; None: `Settings.account_cps_ceiling`."""
    frequency_caps: Mapped[list[dict[str, int]]] = mapped_column(
        JSONB, default=lambda: [{"calls": 3, "days": 1}]
    )
    """Rolling per-number limits, each `{"calls": N, "days": D}`: at most N attempts that
    may ring one number in any D days (trailing, D x 24 h) across all of the account's
    campaigns and single calls; a contact over any of them waits until all allow it
    (`dialer.frequency`). Written only through `campaigns.options.FrequencyCap`."""
    webhook_url: Mapped[str | None] = mapped_column(Text)
    """Where the account's call and campaign events are posted (`dialer.webhook_url` checks
    it); None: no webhooks."""
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    """Signs the account's webhooks (HMAC-SHA256, `dialer.webhooks.signing`); created on
    first use."""
    webhook_secret_previous: Mapped[str | None] = mapped_column(Text)
    """The secret before the last rotation: it still signs for 24 h after
    `webhook_secret_rotated_at`."""
    webhook_secret_rotated_at: Mapped[datetime | None] = mapped_column()
    rest_flagged_numbers: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """Rest a caller ID automatically when the number-health report flags it
    (`campaigns.number_health`): selection then skips it until its operator un-rests it."""


SHARED_TEST_CALLER_ID = "+15005550006"
"""Twilio's magic test number: valid as `From` with test credentials only, where no call
reaches anyone, so every account may have it (the simulator gives it to each new account).
Any other number belongs to one account at most (`uq_caller_ids_e164`)."""


class CallerId(CreatedAt, Base):
    """A phone number the account owns and may present as caller ID; one account's only
    (the provider account is shared, so the provider's ownership says nothing of which
    tenant the number is)."""

    __tablename__ = "caller_ids"
    __table_args__ = (
        UniqueConstraint("account_id", "e164"),
        Index(
            "uq_caller_ids_e164",
            "e164",
            unique=True,
            postgresql_where=text(f"e164 <> '{SHARED_TEST_CALLER_ID}'"),
        ),
        CheckConstraint("max_calls_per_minute > 0", name="max_calls_per_minute_positive"),
        CheckConstraint("max_calls_per_day > 0", name="max_calls_per_day_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(String(16))
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    """Optional cap on live calls presenting this number (carriers flag busy caller IDs)."""
    outbound: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    """May be presented on outbound calls; the account's first outbound number (by `id`,
    the order they were added) is the default caller ID."""
    max_calls_per_minute: Mapped[int | None] = mapped_column(Integer)
    """Most calls presenting it in any sliding minute (None: no limit), held by the pool's
    admission (`dialer.pool`); a number added through the API or CLI starts at 10
    (`campaigns.accounts.DEFAULT_CALLS_PER_MINUTE`)."""
    max_calls_per_day: Mapped[int | None] = mapped_column(Integer)
    """Most calls presenting it in any sliding 24 hours (None: no limit); a number added
    through the API or CLI starts at 100 (`campaigns.accounts.DEFAULT_CALLS_PER_DAY`)."""
    rested_at: Mapped[datetime | None] = mapped_column()
    """Since when selection skips it (None: in use): rested automatically when flagged
    (`Account.rest_flagged_numbers`), until its operator un-rests it."""
    rested_reason: Mapped[str | None] = mapped_column(Text)
    """Why it was rested (the flag's figures)."""


class Campaign(CreatedAt, Base):
    """A list of contacts to call with one message and one dialing policy."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("max_concurrency > 0", name="max_concurrency_positive"),
        CheckConstraint("max_attempts > 0", name="max_attempts_positive"),
        Index(
            "uq_campaigns_standing",
            "account_id",
            "caller_id_id",
            unique=True,
            postgresql_where=text("standing AND status IN ('draft', 'running', 'paused')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    caller_id_id: Mapped[int] = mapped_column(ForeignKey("caller_ids.id"))
    """Its caller ID: the first number of its caller-ID pool."""
    pool_caller_ids: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger), default=list, server_default=text("'{}'")
    )
    """The further numbers of its caller-ID pool (`caller_ids.id`s), after `caller_id_id`;
    empty: it presents `caller_id_id` alone. Each call's number is chosen from the pool
    by `dialer.pool.caller_ids`."""
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[CampaignStatus] = mapped_column(
        _enum(CampaignStatus, "campaign_status"), default=CampaignStatus.DRAFT
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    """Why the campaign is paused (e.g. the circuit breaker's provider error)."""
    message: Mapped[str] = mapped_column(Text)
    """Spoken text; `{column}` placeholders are filled from each contact's variables."""
    menu: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """The keypress menu offered after the message, the opt-out line included
    (`dialer.menu.Menu.stored`: {"digits": {key: {"action", "to"[, "say"]}}, "prompt"}); None: no
    `<Gather>`, the call says its message and ends."""
    voicemail_message: Mapped[str | None] = mapped_column(Text)
    """Left on an answering machine once its greeting ends (AMD `DetectMessageEnd`, the
    live call's TwiML updated: `dialer.dispatch.voicemail`); `{column}` placeholders."""
    record: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """Record calls (Twilio `Record=true`, `RecordingStatusCallback`)."""
    recording_disclosure: Mapped[str | None] = mapped_column(Text)
    """Said before the message on a recorded call; None: nothing."""
    default_region: Mapped[str] = mapped_column(String(2), default="US")
    allowed_countries: Mapped[list[str] | None] = mapped_column(ARRAY(String(2)))
    allow_premium: Mapped[bool] = mapped_column(default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    """Higher goes first when campaigns of one account compete for slots (reminders)."""
    max_concurrency: Mapped[int] = mapped_column(Integer, default=10)
    cps: Mapped[float | None] = mapped_column()
    """Campaign calls per second, below the account's; None: only the account limit."""
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    dial_retries: Mapped[int] = mapped_column(Integer, default=3)
    """Tries to create a call after ambiguous or throttled provider replies."""
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    """Per outcome (`busy`, `no-answer`, `failed`, `machine`): {"retry": bool, "delay_s": s}."""
    ring_timeout_s: Mapped[int] = mapped_column(Integer, default=30)
    time_limit_s: Mapped[int] = mapped_column(Integer, default=600)
    max_hold_s: Mapped[int | None] = mapped_column(Integer)
    """The watchdog hangs up a call live longer than this many seconds."""
    machine_detection: Mapped[bool] = mapped_column(default=False)
    machine_action: Mapped[MachineAction] = mapped_column(
        _enum(MachineAction, "machine_action"), default=MachineAction.HANG_UP
    )
    start_at: Mapped[datetime | None] = mapped_column()
    ingest_summary: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    """What ingest did with the CSV: rows, accepted, rejected by reason."""
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    breaker_trips: Mapped[int] = mapped_column(Integer, default=0)
    """Times the account's circuit breaker paused this campaign (the reason is in
    `status_reason` while it stays paused)."""
    window_start: Mapped[time] = mapped_column(Time, server_default=text("'09:00'"))
    """Calling window: local time of day from which a contact may be called
    (`dialer.windows`; never before the legal hours, whatever this says)."""
    window_end: Mapped[time] = mapped_column(Time, server_default=text("'20:00'"))
    """Calling window: local time of day from which no contact is called."""
    window_days: Mapped[list[int]] = mapped_column(
        ARRAY(SmallInteger), server_default=text("'{0,1,2,3,4,5,6}'")
    )
    """Weekdays the window applies on, in the contact's local time (Monday 0)."""
    holidays: Mapped[list[date]] = mapped_column(ARRAY(Date), server_default=text("'{}'"))
    """Local dates on which no contact is called."""
    skip_public_holidays: Mapped[bool] = mapped_column(server_default=text("false"))
    """Also skip the public holidays of each contact's country (the `holidays` package)."""
    timezone: Mapped[str | None] = mapped_column(String(64))
    """IANA zone of contacts whose zone cannot be derived, and of `start_at`, `end_at` and
    `call_at` written without an offset."""
    end_at: Mapped[datetime | None] = mapped_column()
    """Contacts still pending at this moment end `expired`; the campaign then completes."""
    standing: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """The account's standing campaign of single calls (`POST /v1/calls` without a
    `campaign_id`), one per caller ID: it stays running when it has nothing to dial."""


class CallJob(Base):
    """One contact of a campaign, dialled by one or more attempts."""

    __tablename__ = "call_jobs"
    __table_args__ = (
        Index(
            "uq_call_jobs_campaign_id_phone_e164",
            "campaign_id",
            "phone_e164",
            unique=True,
            postgresql_where=text("line_no IS NOT NULL"),
        ),
        Index(
            "ix_call_jobs_due",
            "account_id",
            "next_due_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_call_jobs_campaign_status", "campaign_id", "status"),
        Index(
            "ix_call_jobs_campaign_due",
            "campaign_id",
            "next_due_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_call_jobs_capped",
            "campaign_id",
            "next_due_at",
            "attempt_count",
            postgresql_where=text("status = 'pending' AND capped_until IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    line_no: Mapped[int | None] = mapped_column(Integer)
    """Line of the source CSV the contact came from (1 is the header); None for a single
    call (`POST /v1/calls`), which may repeat a number of its campaign."""
    phone_e164: Mapped[str] = mapped_column(String(16))
    variables: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    metadata_: Mapped[dict[str, str]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    """The API client's own strings (at most 4 KB), echoed on every read and webhook."""
    webhook_url: Mapped[str | None] = mapped_column(Text)
    """Overrides the account's webhook URL for this contact's events (single calls)."""
    timezone: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "job_status"), default=JobStatus.PENDING
    )
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome, "outcome"))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    """Attempts that may have rung the contact (not counting `not-placed` ones)."""
    dial_error_count: Mapped[int] = mapped_column(Integer, default=0)
    """Consecutive create requests refused or lost before a call existed."""
    next_due_at: Mapped[datetime] = mapped_column(server_default=func.now())
    """When the pacer may next dial the contact: its due time moved to the next opening of
    its calling window (`dialer.windows`), so claiming is one range scan of
    `ix_call_jobs_campaign_due`; recomputed whenever it is rescheduled or found closed."""
    capped_until: Mapped[datetime | None] = mapped_column()
    """Set while the contact is held by the account's per-number frequency caps
    (`Account.frequency_caps`): when every cap allows its number again (`next_due_at` is then
    the window's first opening at or after it). None: not held by a cap. Read through
    `dialer.calls.held_by_cap`."""
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    zones: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    """Every IANA zone the contact may be in (the CSV's, else the number's, else the
    campaign's): it is called only when its window is open in all of them."""
    region: Mapped[str | None] = mapped_column(String(3))
    """The number's ISO 3166-1 region (public holidays, legal hours); "001": non-geographic."""
    subdivision: Mapped[str | None] = mapped_column(String(3))
    """The state whose stricter legal hours apply ("FL"), from the number's area code."""
    call_before: Mapped[datetime | None] = mapped_column()
    """Not dialled at or after this moment: the contact then ends `expired`."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    """When the contact was created (ingest's COPY leaves it to the default)."""
    message: Mapped[str | None] = mapped_column(Text)
    """A single call's own message; None: the campaign's. The settings below are a single
    call's overrides of its campaign's the same way (`campaigns.calls`): None, the
    campaign's."""
    ring_timeout_s: Mapped[int | None] = mapped_column(Integer)
    time_limit_s: Mapped[int | None] = mapped_column(Integer)
    max_hold_s: Mapped[int | None] = mapped_column(Integer)
    machine_detection: Mapped[bool | None] = mapped_column()
    pool_caller_ids: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))
    """A single call's own caller-ID pool (`caller_ids.id`s, its campaign's `caller_id_id`
    first); None: its campaign's pool."""
    machine_action: Mapped[MachineAction | None] = mapped_column(
        _enum(MachineAction, "machine_action")
    )
    menu: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """A single call's own keypress menu (`campaigns.menu`'s shape)."""
    record: Mapped[bool | None] = mapped_column()


class CallAttempt(Base):
    """One try at calling a contact: at most one provider call."""

    __tablename__ = "call_attempts"
    __table_args__ = (
        Index(
            "ix_call_attempts_live",
            "account_id",
            postgresql_where=text(
                "status NOT IN ('completed','busy','no-answer','failed','canceled','not-placed')"
            ),
        ),
        Index("ix_call_attempts_job", "job_id"),
        Index("ix_call_attempts_campaign_status", "campaign_id", "status"),
        Index("ix_call_attempts_number", "account_id", "phone_e164", "created_at"),
        Index("ix_call_attempts_campaign_created", "campaign_id", "created_at"),
        Index(
            "ix_call_attempts_voicemail",
            "campaign_id",
            postgresql_where=text("voicemail_dropped_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("call_jobs.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    phone_e164: Mapped[str] = mapped_column(String(16))
    from_e164: Mapped[str] = mapped_column(String(16))
    status: Mapped[AttemptStatus] = mapped_column(
        _enum(AttemptStatus, "attempt_status"), default=AttemptStatus.DIALING
    )
    call_sid: Mapped[str | None] = mapped_column(String(34), unique=True)
    answered_by: Mapped[str | None] = mapped_column(String(32))
    """Twilio AMD `AnsweredBy`: human, machine_start, machine_end_beep, ..., fax, unknown."""
    digits: Mapped[str | None] = mapped_column(String(8))
    """The last key pressed at the menu (`dialer.menu`)."""
    menu_action: Mapped[str | None] = mapped_column(String(16))
    """What the last key pressed did (`dialer.menu.MenuAction`); None: no key of the menu
    was pressed."""
    voicemail_dropped_at: Mapped[datetime | None] = mapped_column()
    """When the provider took the voicemail message for this call (the machine's greeting
    had ended: `dialer.dispatch.voicemail`)."""
    recording_sid: Mapped[str | None] = mapped_column(String(34))
    recording_url: Mapped[str | None] = mapped_column(Text)
    """Twilio `RecordingUrl` of the call's completed recording."""
    recording_duration_s: Mapped[int | None] = mapped_column(Integer)
    """Twilio `RecordingDuration`, seconds."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    placed_at: Mapped[datetime | None] = mapped_column()
    answered_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    duration_s: Mapped[int | None] = mapped_column(Integer)
    """Provider's `CallDuration`, seconds."""
    send_deadline: Mapped[datetime | None] = mapped_column()
    """After this moment the create request may no longer leave (set when the attempt
    becomes `placing`). Recovery looks the call up only once this deadline and the provider
    timeout have passed, so a request still in flight is never mistaken for a lost one."""
    task_failures: Mapped[int] = mapped_column(Integer, default=0)
    """Tries of `place_call` that failed on something other than the provider (an
    exception before the request left); at `MAX_TASK_FAILURES` the contact ends with
    outcome `error`."""
    lease_expires_at: Mapped[datetime] = mapped_column()
    """When the pool lease taken for this attempt lapses (ring timeout + time limit + margin)."""
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    end_reason: Mapped[EndReason | None] = mapped_column(_enum(EndReason, "end_reason"))
    """Why the dialer ended the call itself, when it did."""
    last_sequence: Mapped[int] = mapped_column(Integer, default=-1)
    """Highest provider `SequenceNumber` applied."""
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    due_at: Mapped[datetime | None] = mapped_column()
    """When its contact was due as the pacer claimed it (`placed_at - due_at` is the
    due-to-dial delay of the report)."""


class ApiKey(CreatedAt, Base):
    """One of an account's named API keys (`Authorization: Bearer dk_...`); only a hash is
    kept. A revoked key is refused at once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 hex of the key; the key itself is never stored."""
    prefix: Mapped[str | None] = mapped_column(String(16))
    """The key's first characters, to tell keys apart in listings; None for a key migrated
    from before keys had names."""
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    """Last request made with the key (to the minute)."""


class IdempotencyKey(Base):
    """A POST made with an `Idempotency-Key`: claimed before it runs, its response kept for
    24 hours so a retry gets the same answer without anything being done again."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 hex of the method, path, query and body."""
    status: Mapped[str] = mapped_column(String(16))
    """`running` while the first request runs, then `done`."""
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_type: Mapped[str | None] = mapped_column(String(100))
    """The first response's `Content-Type`."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ProviderEvent(Base):
    """A status or AMD callback exactly as the provider sent it, stored once."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("call_sid", "kind", "call_status", "sequence_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("call_attempts.id", ondelete="CASCADE"))
    call_sid: Mapped[str] = mapped_column(String(34))
    kind: Mapped[str] = mapped_column(String(16))
    """`status`, `amd` or `gather`."""
    call_status: Mapped[str] = mapped_column(String(16))
    sequence_number: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, str]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())


class DncEntry(CreatedAt, Base):
    """A number the account must never call (do-not-call list)."""

    __tablename__ = "dnc_entries"
    __table_args__ = (
        Index(
            "ix_dnc_entries_opt_outs",
            "campaign_id",
            postgresql_where=text("source = 'keypress'"),
        ),
    )

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(16))
    """How the number was listed: `keypress` (the callee pressed the opt-out key); None:
    by the account (API, CLI, CSV)."""
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    """The campaign whose call the callee opted out of (source `keypress`)."""

    @classmethod
    def listed(
        cls,
        account_id: ColumnExpressionArgument[int] | int,
        e164: ColumnExpressionArgument[str] | str,
    ) -> Exists:
        """SQL `EXISTS`: the number is on the account's DNC list (to use inside a larger
        query, such as the one `place_call` locks its attempt with)."""
        return exists().where(cls.account_id == account_id, cls.e164 == e164)


class WebhookEvent(Base):
    """One event for the customer's webhook (the outbox), written in the transaction that
    caused it and delivered by `dialer.webhooks.delivery`: one row per event and URL."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index(
            "ix_webhook_events_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_events_account", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    """`evt_` + 32 hex digits: the body's `id`, the same on every try (receivers de-duplicate)."""
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    """`call.completed`, `contact.completed`, `campaign.completed`, `campaign.paused`."""
    url: Mapped[str] = mapped_column(Text)
    """Where it goes, fixed at write: the contact's webhook URL, else the account's."""
    body: Mapped[str] = mapped_column(Text)
    """The JSON body exactly as it is sent and signed."""
    status: Mapped[WebhookStatus] = mapped_column(
        _enum(WebhookStatus, "webhook_status"), default=WebhookStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Tries so far (a try is counted when it is claimed)."""
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    """When a pending event is due; while a try runs, the end of its claim."""
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column()


class Schedule(CreatedAt, Base):
    """A recurring reminder batch: at each occurrence of `cron` in `timezone`, a campaign
    is created from the CSV at `csv_path` (read afresh) and the contacts pushed since the
    last run, and started (`campaigns.schedules`)."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("catch_up_s >= 0", name="catch_up_s_not_negative"),
        Index("ix_schedules_due", "next_run_at", postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(150))
    cron: Mapped[str] = mapped_column(String(100))
    """Five-field cron expression, evaluated in `timezone` (cronsim: Debian cron semantics
    across daylight-saving changes)."""
    timezone: Mapped[str] = mapped_column(String(64))
    """IANA zone name."""
    csv_path: Mapped[str | None] = mapped_column(Text)
    """Absolute path of the contacts CSV, read afresh at each firing; None: the batch is
    only the contacts pushed to the schedule."""
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    """The campaigns' settings (`campaigns.options.ScheduleOptions` fields given), as JSON;
    checked again at each firing."""
    catch_up_s: Mapped[int] = mapped_column(Integer, default=3600)
    """A missed occurrence younger than this many seconds is fired once when the beat
    returns; older ones are skipped."""
    status: Mapped[ScheduleStatus] = mapped_column(
        _enum(ScheduleStatus, "schedule_status"), default=ScheduleStatus.ACTIVE
    )
    next_run_at: Mapped[datetime] = mapped_column()
    """The earliest occurrence not yet handled (UTC)."""


class ScheduleRun(CreatedAt, Base):
    """One firing of a schedule: unique per (schedule, occurrence), which is what makes
    any number of beats fire each occurrence once."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "occurrence"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    occurrence: Mapped[datetime] = mapped_column()
    """The cron occurrence fired (UTC), or the moment of a `run-now`."""
    manual: Mapped[bool] = mapped_column(default=False)
    """Fired by `run-now`, not by the cron expression."""
    status: Mapped[ScheduleRunStatus] = mapped_column(
        _enum(ScheduleRunStatus, "schedule_run_status")
    )
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    """Data rows read: the file's and the pushed contacts'."""
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    pushed: Mapped[int] = mapped_column(Integer, default=0)
    """Pushed contacts this run consumed."""
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)


class ScheduleContact(CreatedAt, Base):
    """A contact pushed to a schedule's next batch (`POST /v1/schedules/{id}/contacts`),
    deleted by the run that ingests it, in the transaction that records the run."""

    __tablename__ = "schedule_contacts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    fields: Mapped[dict[str, str]] = mapped_column(JSONB)
    """The row: column name -> value, as a CSV row would give them."""


class CampaignEvent(Base):
    """One transition of a campaign or a schedule, with who made it, when and why (the
    history: `dialer campaigns history`, `GET /v1/campaigns/{id}/events`)."""

    __tablename__ = "campaign_events"
    __table_args__ = (
        CheckConstraint(
            "campaign_id IS NOT NULL OR schedule_id IS NOT NULL", name="campaign_or_schedule"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(32))
    """A `dialer.campaign_state.CampaignAction`, or a schedule's `create`, `fire`, `skip`,
    `pause`, `resume`, `update`, `delete`."""
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    """Who: `cli:<os user>`, `api:<account>`, `scheduler`, `breaker`, `pacer`."""
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """A settings change's values per field, `{field: {"before": ..., "after": ...}}` (JSON
    types; action `change`); None for a transition."""
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    """The API key that made the change through the API; None: another actor."""


class CampaignCounter(Base):
    """One counter of a campaign's report, kept current by triggers on `call_jobs` and
    `call_attempts` (migration 0009; names and meaning in `campaigns.counters`). The
    campaign's value is the sum over stripes: each database backend adds to its own stripe
    (its pid), so concurrent transactions never wait on one counter row; stripes of
    backends that are gone are folded into stripe 0."""

    __tablename__ = "campaign_counters"

    campaign_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    """No foreign key: its check would share-lock the campaign row from the dialling
    transactions that add a counter row (migration 0009)."""
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripe: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class CampaignMinute(Base):
    """A campaign's activity in one UTC minute, kept current like `CampaignCounter`:
    calls placed (`dials`), answered and ended in that minute, and contacts never dialled
    that fall due in it (`due`). Summed over stripes."""

    __tablename__ = "campaign_minutes"

    campaign_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    """No foreign key, as `CampaignCounter`."""
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    stripe: Mapped[int] = mapped_column(Integer, primary_key=True)
    dials: Mapped[int] = mapped_column(Integer)
    answers: Mapped[int] = mapped_column(Integer)
    ends: Mapped[int] = mapped_column(Integer)
    due: Mapped[int] = mapped_column(Integer)


class PacerFence(Base):
    """The highest pacer fencing token seen for an account (`dialer.dispatch.pacer`): a
    pacer writes its token when it takes the account's lock, and each dispatch round
    compares-and-sets it in the transaction that commits the round, so a round of a pacer
    whose lock lapsed (a host cut off, a paused process) and was taken by another can never
    commit. Also the floor of the next token after Redis lost its counter (a failover)."""

    __tablename__ = "pacer_fences"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[int] = mapped_column(BigInteger)
