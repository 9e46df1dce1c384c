"""The HTTP API's request and response bodies. The OpenAPI document (`/openapi.json`) is
built from these, so a client can be generated from it.

A campaign's settings come in as `campaigns.options.OperatorOptions` (multipart form
fields), the schema the CLI's `campaigns create` is built from too; a schedule's as
`campaigns.options.ScheduleOptions`; a single call's as `campaigns.calls.SingleCall`. Each
refuses unknown fields and values out of bounds (400 `invalid_option`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from campaigns import paging
from campaigns.calls import CallStatus, SingleCall, WaitingReason
from campaigns.options import (
    MAX_FREQUENCY_CAPS,
    PATCHABLE,
    FrequencyCap,
    OperatorOptions,
    ScheduleOptions,
    optional_field,
)
from campaigns.preview import CampaignPreview
from campaigns.reports import CampaignReport
from models import AttemptStatus, CampaignStatus, Outcome, WebhookStatus


class FieldProblem(BaseModel):
    """What is wrong with one field of a request."""

    field: str = Field(description="Where: the field's name, or its path in the body.")
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable: clients match on it (`campaign_not_found`, ...).")
    message: str = Field(description="For people.")
    details: list[FieldProblem] | None = Field(
        None, description="One entry per field at fault; absent when there is nothing to add."
    )


class ErrorBody(BaseModel):
    """Every error reply: `{"error": {"code", "message"[, "details"]}}`."""

    error: ErrorInfo


class IngestSummaryOut(BaseModel):
    """What ingest made of a CSV: rows = accepted + the sum of rejected."""

    rows: int = Field(description="Data rows read (blank lines not counted).")
    accepted: int = Field(description="Contacts created.")
    rejected: dict[str, int] = Field(
        description="Rows refused, by reason (`invalid_number`, `duplicate`, ...)."
    )
    encoding: str = Field(description="The encoding the file was read in.")
    delimiter: str
    phone_column: str


class CampaignCreated(IngestSummaryOut):
    """A draft campaign created from a CSV, and what ingest made of the CSV."""

    campaign_id: int
    rejected_csv: str | None = Field(
        description="Where to download the rejected rows (`/v1/campaigns/{id}/rejected.csv`,"
        " relative to the API's base URL); null when every row was accepted."
    )


class CampaignOut(BaseModel):
    """A campaign. Rates in calls per second."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: CampaignStatus
    status_reason: str | None = Field(description="Why it is paused, when it is.")
    max_concurrency: int
    cps: float | None
    max_attempts: int
    ingest: IngestSummaryOut | None = Field(
        validation_alias="ingest_summary", description="Null for a campaign without a CSV."
    )
    created_at: datetime

    @field_validator("ingest", mode="before")
    @classmethod
    def _none_when_empty(cls, summary: Any) -> Any:
        return summary or None


class ReportOut(CampaignReport):
    """A campaign's figures. Durations in seconds."""


class PreviewOut(CampaignPreview):
    """A campaign's preview: callable now, waiting by zone, expired, estimated finish."""


class DncAddIn(BaseModel):
    """Numbers to put on the account's do-not-call list."""

    numbers: list[str] = Field(description="As typed: E.164, or national in `default_region`.")
    default_region: str = Field("US", description="Region of national numbers (ISO 3166).")
    reason: str | None = Field(None, description="Why, for the record.")


class DncAddOut(BaseModel):
    added: int = Field(description="Numbers new to the list.")


class DncRemoveOut(BaseModel):
    removed: int = Field(description="Numbers that were listed (0 or 1).")


class DncImportOut(BaseModel):
    """A DNC CSV import: rows = added + already + invalid."""

    rows: int
    added: int = Field(description="Numbers new to the list.")
    already: int = Field(description="Numbers listed before, or twice in the file.")
    invalid: int = Field(description="Rows without a usable number.")


class HealthOut(BaseModel):
    status: str = Field(description='"ok" while the process serves.')


class WebhookDeliveryOut(BaseModel):
    """One webhook event and its delivery to the account's (or the contact's) URL."""

    id: str = Field(description="The event's id (`evt_...`), the same on every try.")
    type: str = Field(description="`call.completed`, `contact.completed`, `campaign.*`.")
    url: str
    status: WebhookStatus = Field(
        description="`pending` (next try at `next_attempt_at`), `delivered`, `failed` (the "
        "receiver answered 410: stopped), `dead` (every try failed: dead-lettered)."
    )
    attempts: int = Field(description="Tries so far.")
    next_attempt_at: datetime | None
    last_status_code: int | None = Field(description="HTTP status of the last try, if any.")
    last_error: str | None = Field(description="Why the last try failed, if it did.")
    created_at: datetime
    delivered_at: datetime | None
    event: dict[str, Any] = Field(description="The body as sent: `{id, type, created, data}`.")


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list, in the list's order (every list of the API answers so):
    `?limit=` (1-1000, default 100) items, and the cursor of the next page."""

    items: list[ItemT]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )

    @classmethod
    def of(cls, rows: paging.Page[Any]) -> Self:
        """This API page of a service's page of rows (`campaigns.paging.Page`), each row
        read into `ItemT` by its attributes."""
        return cls.model_validate(
            {"items": rows.items, "next_cursor": rows.next_cursor}, from_attributes=True
        )


class WebhookDeliveryPage(BaseModel):
    """Deliveries newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[WebhookDeliveryOut]
    next_cursor: str | None = Field(description="None on the last page.")


class CampaignForm(OperatorOptions):
    """`POST /v1/campaigns`'s form fields: the operator's settings. `file`, the CSV, is the
    route's own parameter; any other field is 400 `invalid_option` naming it."""

    # The form's document is this schema and `file` together (FastAPI joins them with
    # allOf): "no additional properties" here would forbid the file there.
    model_config = ConfigDict(
        json_schema_extra=lambda schema: schema.pop("additionalProperties", None)
    )

    @model_validator(mode="before")
    @classmethod
    def _without_file(cls, data: Any) -> Any:
        # FastAPI hands a form model every field of the form, the upload's too.
        return {k: v for k, v in data.items() if k != "file"} if isinstance(data, dict) else data


# --- schedules and history -------------------------------------------------------------------


class ScheduleIn(BaseModel):
    """A recurring reminder batch. Its contacts are pushed (`POST /v1/schedules/{id}/contacts`);
    a CSV file read at each occurrence is for schedules made on the server (`dialer schedules
    create --csv`), not over the API, which reads no server path."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Campaigns are named after it and the occurrence.")
    cron: str = Field(description='Five-field cron expression, e.g. "0 9 * * mon-fri".')
    timezone: str = Field(description="IANA zone the cron expression is read in.")
    catch_up_s: int = Field(
        3600, description="A missed occurrence this young (seconds) is fired once."
    )
    options: ScheduleOptions = Field(
        description="The campaigns' settings: `POST /v1/campaigns` fields but `name`, "
        "`timezone` (the schedule's), `start_at` and `end_at` (a schedule has no fixed "
        "dates), with `expire_after_s` counted from each occurrence. An unknown field is "
        "400 `invalid_option`.",
    )


class SchedulePatch(BaseModel):
    """Fields to change; `status` `paused` pauses, `active` resumes (from the next
    occurrence; missed ones are not caught up)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    cron: str | None = None
    timezone: str | None = None
    catch_up_s: int | None = None
    options: ScheduleOptions | None = Field(None, description="Replaces the settings whole.")
    status: Literal["active", "paused"] | None = None


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    cron: str
    timezone: str
    source: Literal["file", "pushed"] = Field(
        validation_alias="csv_path",
        description="Where each batch's contacts come from: `file` (a CSV on the server, "
        "set by its operator with `dialer schedules create --csv`) or `pushed` "
        "(`POST /v1/schedules/{id}/contacts`).",
    )
    catch_up_s: int
    status: str
    next_run_at: datetime = Field(description="The next occurrence to fire (UTC).")
    options: dict[str, Any]

    @field_validator("source", mode="before")
    @classmethod
    def _source_not_path(cls, csv_path: str | None) -> str:
        # The server's file path is the operator's business, never a tenant's.
        return "pushed" if csv_path is None else "file"


class ScheduleWarningOut(BaseModel):
    """Allowed but probably not meant (`campaigns.schedules.ScheduleWarning`): `code`
    `frequency_cap_stall`, the schedule fires more often than the frequency cap lets a
    number be called."""

    code: str
    message: str


class ScheduleCreated(BaseModel):
    schedule_id: int
    next_run_at: datetime
    warnings: list[ScheduleWarningOut] = Field(
        default_factory=list, description="Allowed but probably not meant; empty: none."
    )


class ScheduleUpdated(ScheduleOut):
    warnings: list[ScheduleWarningOut] = Field(
        default_factory=list, description="Allowed but probably not meant; empty: none."
    )


class ScheduleRunOut(BaseModel):
    """One firing: `ok` (a campaign started), `empty` (nothing to call) or `failed`
    (`error_code`: `source_not_found`, `source_unreadable`, or the ingest's code)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    occurrence: datetime
    manual: bool = Field(description="Fired by `run`, not by the cron expression.")
    status: str
    campaign_id: int | None
    rows: int
    accepted: int
    rejected: int
    pushed: int = Field(description="Pushed contacts this run consumed.")
    error_code: str | None
    error_message: str | None


class ContactsIn(BaseModel):
    """Contacts for the schedule's next batch, each as a CSV row would give it."""

    model_config = ConfigDict(extra="forbid")

    contacts: list[dict[str, str]] = Field(
        description='Column -> value, e.g. {"phone": "+12025550101", "first_name": "Ada"}.'
    )


class ContactsAdded(BaseModel):
    added: int


class _CampaignPatchIn(BaseModel):
    """A change to a campaign that has not ended: any of the settings below (left out:
    unchanged; `cps` and `end_at` null: cleared) and why (`reason`, kept in its history).
    Checked as at creation (`campaigns.options.CampaignPatch`); a time without an offset
    is in the campaign's `timezone`."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why: kept in the history.")


if TYPE_CHECKING:
    CampaignPatchIn = _CampaignPatchIn
else:  # the changeable settings (`PATCHABLE`), as the operator schema declares them
    CampaignPatchIn = create_model(
        "CampaignPatchIn",
        __base__=_CampaignPatchIn,
        __doc__=_CampaignPatchIn.__doc__,
        **{name: optional_field(name) for name in PATCHABLE if name != "menu"},
        # The menu is read by the operator schema (`invalid_menu` errors), not here.
        menu=(
            dict[str, Any] | None,
            Field(None, description=OperatorOptions.model_fields["menu"].description),
        ),
    )


class EventOut(BaseModel):
    """One transition or settings change: who (`cli:<user>`, `api-key:<key name>`,
    `scheduler`, `breaker`, `pacer`), when and why."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    campaign_id: int | None
    schedule_id: int | None
    action: str = Field(
        description="A transition (start, pause, resume, cancel, trip_breaker, complete), "
        "`change` (a settings change), `cancel_call`, or a schedule's action."
    )
    from_status: str | None
    to_status: str | None
    actor: str
    reason: str | None
    at: datetime
    changes: dict[str, Any] | None = Field(
        None,
        description='A change\'s values per field: {"max_concurrency": {"before": 10, '
        '"after": 4}}; null for a transition.',
    )
    api_key_id: int | None = Field(None, description="The API key that made the change.")


# --- the account and its caller IDs --------------------------------------------------------


class NumberOut(BaseModel):
    """One of the account's caller IDs."""

    number: str = Field(description="E.164.")
    outbound: bool = Field(description="Presented on outbound calls.")
    max_concurrency: int | None = Field(description="Most live calls presenting it; null: no cap.")
    max_calls_per_minute: int | None = Field(
        description="Most calls presenting it in any minute; null: no limit."
    )
    max_calls_per_day: int | None = Field(
        description="Most calls presenting it in any 24 hours; null: no limit."
    )
    rested_at: datetime | None = Field(
        description="Since when caller-ID selection skips it; null: in use."
    )
    rested_reason: str | None = Field(description="Why it was rested.")
    created_at: datetime


class NumberIn(BaseModel):
    """A caller ID to add (the provider account must own or have verified it, and no other
    account have it), or the new settings of one the account has: a field left out keeps
    its stored value (as in `PATCH /v1/account`), `max_concurrency: null` clears the cap."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(description="E.164 (+14155550100).", max_length=32)
    outbound: bool = Field(
        True,
        description="Present it on outbound calls (left out: unchanged; a new number: true). "
        "Turning it off pauses the running campaigns that present it.",
    )
    max_concurrency: int | None = Field(
        None,
        gt=0,
        description="Most live calls presenting it; null: no cap (left out: unchanged; a new "
        "number: no cap).",
    )
    max_calls_per_minute: int | None = Field(
        None,
        gt=0,
        le=10_000,
        description="Most calls presenting it in any minute; null: no limit (left out: "
        "unchanged; a new number: 10, carriers' guidance).",
    )
    max_calls_per_day: int | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Most calls presenting it in any 24 hours; null: no limit (left out: "
        "unchanged; a new number: 100).",
    )
    rested: bool = Field(
        False,
        description="true rests it (caller-ID selection skips it), false puts a rested "
        "number back in use (left out: unchanged).",
    )


class AccountOut(BaseModel):
    """The account of the API key. Rates in calls per second."""

    name: str
    max_concurrency: int = Field(description="Most calls live at once across the account.")
    max_concurrency_ceiling: int = Field(
        description="Most `max_concurrency` may be raised to (set by the operator)."
    )
    cps: float = Field(description="Calls per second the account may create.")
    cps_ceiling: float = Field(description="Most `cps` may be raised to (set by the operator).")
    frequency_caps: list[FrequencyCap] = Field(
        description="Rolling per-number limits across the account's campaigns and single "
        'calls: each {"calls": N, "days": D}, at most N calls to one number in any D days; '
        "a number over any of them waits until all allow it."
    )
    webhook_url: str | None = Field(description="Where call events are posted; null: nowhere.")
    rest_flagged_numbers: bool = Field(
        description="A caller ID the number-health report flags is rested automatically."
    )
    numbers: list[NumberOut] = Field(description="Caller IDs, in the order they were added.")
    created_at: datetime


class AccountPatch(BaseModel):
    """Settings to change; a field left out stays as it is (`webhook_url: ""` or null
    stops the webhooks). Caps may be lowered, and raised up to the ceilings the operator
    set (`max_concurrency_ceiling`, `cps_ceiling`; above: 400 `above_ceiling`)."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int | None = Field(None, gt=0, le=100_000)
    cps: float | None = Field(None, gt=0, le=10_000)
    frequency_caps: list[FrequencyCap] | None = Field(
        None,
        max_length=MAX_FREQUENCY_CAPS,
        description='Replaces the account\'s limits: e.g. [{"calls": 1, "days": 1}, {"calls": '
        '3, "days": 30}] (FCC 20-186: 3 in 30 days for exempt prerecorded calls); [] for none. '
        "calls 1-1000, days 1-366, one limit per period, at most 5.",
    )
    webhook_url: str | None = Field(None, max_length=2048)
    rest_flagged_numbers: bool | None = Field(
        None,
        description="Rest a caller ID automatically when the number-health report flags it "
        "(its answer rate far below its campaign's).",
    )


# --- single calls ---------------------------------------------------------------------------


class CallIn(SingleCall):
    """One call to place now (or at `call_at`): `campaigns.calls.SingleCall`, the schema
    `dialer calls place` builds too (unknown fields and bounds are `invalid_option`), and
    `wait`. `to_number` and `message` are required (`message` may be left out with a
    `campaign_id`, whose message is then used); their absence is 400 `missing_field`,
    checked in the documented order."""

    wait: float | None = Field(
        None,
        ge=0,
        le=30,
        description="Hold the reply up to this many seconds until the call is final; the "
        "reply is then its final state, or its state at the deadline.",
    )


class AttemptOut(BaseModel):
    """One try at the call: at most one provider call. Durations in seconds."""

    attempt_no: int
    sid: str | None = Field(description="The provider's call sid; null before it exists.")
    status: AttemptStatus
    from_: str = Field(alias="from", description="The caller ID presented.")
    answered_by: str | None = Field(description="AMD: human, machine_start, ..., unknown.")
    digits: str | None = Field(description="DTMF pressed after the message.")
    duration: int | None
    error_code: int | None = Field(description="The provider's error code, when it refused.")
    error_message: str | None
    created_at: datetime
    placed_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None


class CallOut(BaseModel):
    """A call (a contact of a campaign) and its attempts, oldest first."""

    model_config = ConfigDict(populate_by_name=True)

    call_id: int
    campaign_id: int
    status: CallStatus = Field(
        description="queued (waiting for its first or next attempt), in_progress, "
        "completed (final: see outcome), canceled."
    )
    outcome: Outcome | None = Field(description="How it ended; set once completed.")
    to: str
    from_: str = Field(alias="from", description="The caller ID.")
    variables: dict[str, str]
    metadata: dict[str, str]
    webhook_url: str | None
    waiting_reason: WaitingReason | None = Field(
        description="Why a queued call is not dialled now: calling_window (outside the "
        "callee's window, 09:00-20:00 in its time by default), frequency_cap (one of the "
        "account's frequency_caps), campaign_paused, campaign_not_started, "
        "retry_scheduled (a retry's delay runs), scheduled (call_at or the campaign's "
        "start_at ahead); null when it is due now, live or final."
    )
    next_attempt_at: datetime | None = Field(
        description="When its next attempt is due, while queued (null while its campaign "
        "is paused or not started)."
    )
    created_at: datetime
    attempts: list[AttemptOut]


class CallPage(BaseModel):
    """A page of calls, newest first (as `Page`)."""

    items: list[CallOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
