"""The dialer's tables: accounts, caller IDs, campaigns, call jobs, call attempts, provider
events and the do-not-call list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnExpressionArgument,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
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
    __table_args__ = (
        CheckConstraint(
            "max_calls_per_number_per_day > 0", name="max_calls_per_number_per_day_positive"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    api_key_hash: Mapped[str | None] = mapped_column(String(128))
    """SHA-256 hex of the account's API key; the key itself is never stored."""
    max_concurrency: Mapped[int] = mapped_column(Integer, default=10)
    """Most calls live at once across the account (the provider's concurrency pool)."""
    cps: Mapped[float] = mapped_column(default=1.0)
    """Calls per second the provider allows the account to create (Twilio's default is 1)."""
    max_calls_per_number_per_day: Mapped[int] = mapped_column(Integer, default=3)
    """Most attempts that may ring one number in a day across all of the account's
    campaigns and single calls; a contact over it is due the next day."""


class CallerId(CreatedAt, Base):
    """A phone number the account owns and may present as caller ID."""

    __tablename__ = "caller_ids"
    __table_args__ = (UniqueConstraint("account_id", "e164"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(String(16))
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    """Optional cap on live calls presenting this number (carriers flag busy caller IDs)."""


class Campaign(CreatedAt, Base):
    """A list of contacts to call with one message and one dialing policy."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("max_concurrency > 0", name="max_concurrency_positive"),
        CheckConstraint("max_attempts > 0", name="max_attempts_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    caller_id_id: Mapped[int] = mapped_column(ForeignKey("caller_ids.id"))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[CampaignStatus] = mapped_column(
        _enum(CampaignStatus, "campaign_status"), default=CampaignStatus.DRAFT
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    """Why the campaign is paused (e.g. the circuit breaker's provider error)."""
    message: Mapped[str] = mapped_column(Text)
    """Spoken text; `{column}` placeholders are filled from each contact's variables."""
    gather_dtmf: Mapped[bool] = mapped_column(default=False)
    """Ask the callee to press 1 (confirm) or 2 (cancel) after the message."""
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


class CallJob(Base):
    """One contact of a campaign, dialled by one or more attempts."""

    __tablename__ = "call_jobs"
    __table_args__ = (
        UniqueConstraint("campaign_id", "phone_e164"),
        Index(
            "ix_call_jobs_due",
            "account_id",
            "next_due_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_call_jobs_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    """Line of the source CSV the contact came from (1 is the header)."""
    phone_e164: Mapped[str] = mapped_column(String(16))
    variables: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
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
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


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
    """DTMF reply gathered after the message (1 confirm, 2 cancel)."""
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

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)

    @classmethod
    def listed(
        cls,
        account_id: ColumnExpressionArgument[int] | int,
        e164: ColumnExpressionArgument[str] | str,
    ) -> Exists:
        """SQL `EXISTS`: the number is on the account's DNC list (to use inside a larger
        query, such as the one `place_call` locks its attempt with)."""
        return exists().where(cls.account_id == account_id, cls.e164 == e164)


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
