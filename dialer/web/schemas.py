"""The HTTP API's request and response bodies. The OpenAPI document (`/openapi.json`) is
built from these, so a client can be generated from it.

A campaign's settings come in as `campaigns.options.OperatorOptions` (multipart form
fields), the schema the CLI's `campaigns create` is built from too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from campaigns.preview import CampaignPreview
from campaigns.reports import CampaignReport
from models import CampaignStatus, WebhookStatus


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
        description="Path of the rejected rows on the server (also served at "
        "`/v1/campaigns/{id}/rejected.csv`); null when every row was accepted."
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


class WebhookDeliveryPage(BaseModel):
    """Deliveries newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[WebhookDeliveryOut]
    next_cursor: str | None = Field(description="None on the last page.")


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
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The campaigns' settings: `POST /v1/campaigns` fields but `name`.",
    )


class SchedulePatch(BaseModel):
    """Fields to change; `status` `paused` pauses, `active` resumes (from the next
    occurrence; missed ones are not caught up)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    cron: str | None = None
    timezone: str | None = None
    catch_up_s: int | None = None
    options: dict[str, Any] | None = Field(None, description="Replaces the settings whole.")
    status: Literal["active", "paused"] | None = None


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    cron: str
    timezone: str
    csv_path: str | None
    catch_up_s: int
    status: str
    next_run_at: datetime = Field(description="The next occurrence to fire (UTC).")
    options: dict[str, Any]


class ScheduleCreated(BaseModel):
    schedule_id: int
    next_run_at: datetime


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


class EventOut(BaseModel):
    """One transition: who (`cli:<user>`, `api:<account>`, `scheduler`, `breaker`, `pacer`),
    when and why."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    campaign_id: int | None
    schedule_id: int | None
    action: str
    from_status: str | None
    to_status: str | None
    actor: str
    reason: str | None
    at: datetime
