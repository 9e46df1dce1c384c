"""The HTTP API's request and response bodies. The OpenAPI document (`/openapi.json`) is
built from these, so a client can be generated from it.

A campaign's settings come in as `campaigns.options.OperatorOptions` (multipart form
fields), the schema the CLI's `campaigns create` is built from too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from campaigns.reports import CampaignReport
from models import CampaignStatus


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


# --- the account and its caller IDs --------------------------------------------------------


class NumberOut(BaseModel):
    """One of the account's caller IDs."""

    number: str = Field(description="E.164.")
    outbound: bool = Field(description="Presented on outbound calls.")
    max_concurrency: int | None = Field(description="Most live calls presenting it; null: no cap.")
    created_at: datetime


class NumberIn(BaseModel):
    """A caller ID to add (the provider account must own or have verified it), or the new
    settings of one the account has."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(description="E.164 (+14155550100).", max_length=32)
    outbound: bool = Field(True, description="Present it on outbound calls.")
    max_concurrency: int | None = Field(
        None, gt=0, description="Most live calls presenting it; null: no cap."
    )


class AccountOut(BaseModel):
    """The account of the API key. Rates in calls per second."""

    name: str
    max_concurrency: int = Field(description="Most calls live at once across the account.")
    cps: float = Field(description="Calls per second the account may create.")
    max_calls_per_number_per_day: int = Field(
        description="Most attempts that may ring one number in a day."
    )
    webhook_url: str | None = Field(description="Where call events are posted; null: nowhere.")
    numbers: list[NumberOut] = Field(description="Caller IDs, in the order they were added.")
    created_at: datetime


class AccountPatch(BaseModel):
    """Settings to change; a field left out stays as it is (`webhook_url: ""` or null
    stops the webhooks)."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int | None = Field(None, gt=0, le=100_000)
    cps: float | None = Field(None, gt=0, le=10_000)
    max_calls_per_number_per_day: int | None = Field(None, gt=0, le=1000)
    webhook_url: str | None = Field(None, max_length=2048)
