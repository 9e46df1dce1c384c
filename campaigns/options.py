"""The settings a campaign is created with, as one schema. Durations in seconds, rates in
calls per second.

Each field's exposure is the class that declares it:

- `OperatorOptions`: what an operator sets. The CLI (`dialer campaigns create`, one
  `--flag` per field, `from_number` spelled `--from`) and the HTTP API (`POST /v1/campaigns`,
  one multipart form field per field) both build their parameters from this class's
  fields, so a setting exists in both or in neither.
- `CampaignOptions`: those plus what only code sets (the demo, the benchmarks, the tests):
  the dial retries, Twilio's ring timeout and time limit, the number policy and the retry
  matrix. Neither the CLI nor the API offers them.

Building either checks every bound. Raises:
    DialerError: `missing_field`, a required setting (`name`, `message`) is absent (one
        `details` entry per field).
    InvalidOptionError: `invalid_option`, a value out of bounds or of the wrong type (one
        `details` entry per field).
    TemplateError: `invalid_template`, a malformed `message`.
    InvalidWindowError: `invalid_window`, `window_outside_legal_hours`, `invalid_days`,
        `invalid_timezone`, `invalid_schedule` (a calling window setting; see
        `dialer.windows`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dialer.calls import DEFAULT_RETRY_POLICY
from dialer.errors import DialerError, InvalidOptionError, InvalidWindowError
from dialer.providers.twiml import template_placeholders
from dialer.windows import CallingWindow, parse_days, parse_window, zone
from models import MachineAction


class OperatorOptions(BaseModel):
    """A campaign's settings as an operator gives them, in the CLI or the API."""

    # Other fields are ignored, not refused: the API's multipart form also carries the file.
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(max_length=200, description="Campaign name.")
    message: str = Field(
        description="Spoken text; {name} placeholders take the contact's CSV values (a "
        "column's header in lower case, spaces and dashes as underscores: `First Name` "
        "fills {first_name}; see column_map).",
    )
    from_number: str | None = Field(
        None, description="Caller ID, E.164 (default: the account's first caller ID)."
    )
    default_region: str = Field(
        "US", min_length=2, max_length=2, description="Region of national numbers (ISO 3166)."
    )
    phone_column: str | None = Field(
        None, description="Phone column name (default: detected from common names)."
    )
    max_concurrency: int = Field(10, gt=0, description="Most live calls at once.")
    cps: float | None = Field(
        None,
        gt=0,
        description="Calls per second, under the account's (default: the account's alone).",
    )
    max_attempts: int = Field(3, gt=0, description="Attempts per contact.")
    max_hold_s: int | None = Field(
        None, gt=0, description="Hang up a live call after this many seconds."
    )
    machine_detection: bool = Field(False, description="Ask for answering machine detection.")
    machine_action: MachineAction = Field(
        MachineAction.HANG_UP, description="What to do when a machine answers."
    )
    gather_dtmf: bool = Field(False, description="Press 1 to confirm, 2 to cancel.")
    priority: int = Field(0, description="Higher goes first (reminders).")
    window: str = Field(
        "09:00-20:00",
        description="Calling window HH:MM-HH:MM in each contact's local time (within the "
        "lawful 08:00-21:00).",
    )
    days: str = Field(
        "mon-sun", description="Days of the window, in the contact's local time: mon-fri, mon,wed."
    )
    holiday: list[date] = Field(
        [], description="A local date YYYY-MM-DD on which nobody is called (repeatable)."
    )
    skip_public_holidays: bool = Field(
        False, description="Skip the public holidays of each contact's country."
    )
    timezone: str | None = Field(
        None,
        description="IANA zone of contacts whose zone cannot be derived, and of times "
        "written without an offset.",
    )
    start_at: datetime | None = Field(None, description="No call before this time (ISO 8601).")
    end_at: datetime | None = Field(
        None, description="Contacts still pending then end expired (ISO 8601)."
    )

    @field_validator("window")
    @classmethod
    def _window(cls, window: str) -> str:
        parse_window(window)  # raises InvalidWindowError
        return window.replace(" ", "")

    @field_validator("days")
    @classmethod
    def _days(cls, days: str) -> str:
        parse_days(days)  # raises InvalidWindowError
        return days

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str | None) -> str | None:
        return None if name is None else zone(name).key  # raises InvalidWindowError

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, moment: datetime | None, info: ValidationInfo) -> datetime | None:
        """A time without an offset is in the campaign's `timezone`; without one either, it
        is refused (a reminder an hour off is worse than none)."""
        if moment is None or moment.tzinfo is not None:
            return moment
        name = info.data.get("timezone")
        if name is None:
            raise InvalidWindowError(
                "invalid_schedule",
                f"{info.field_name} {moment.isoformat()} has no offset and no --timezone is set",
            )
        return moment.replace(tzinfo=zone(name))

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise InvalidWindowError("invalid_schedule", "end_at must come after start_at")
        return self

    def calling_window(self) -> CallingWindow:
        """The window these settings describe."""
        start, end = parse_window(self.window)
        return CallingWindow(
            start, end, parse_days(self.days), frozenset(self.holiday), self.skip_public_holidays
        )

    column_map: list[str] | None = Field(
        None,
        description='Columns to variables, "Column=variable" each (repeatable): '
        '"Appt Date=appointment_time" fills {appointment_time} from column Appt Date.',
    )

    @field_validator("column_map")
    @classmethod
    def _pairs(cls, entries: list[str] | None) -> list[str] | None:
        for entry in entries or []:
            column, sep, variable = entry.partition("=")
            if not sep or not column.strip() or not variable.strip():
                raise PydanticCustomError(
                    "column_map", "{entry!r} is not Column=variable", {"entry": entry}
                )
        return entries

    def columns(self) -> dict[str, str]:
        """`column_map` as {column: variable}."""
        pairs = (entry.partition("=") for entry in self.column_map or [])
        return {column.strip(): variable.strip() for column, _, variable in pairs}

    @field_validator("name")
    @classmethod
    def _not_blank(cls, name: str) -> str:
        if not name.strip():
            raise PydanticCustomError("blank", "must not be empty")
        return name

    @field_validator("message")
    @classmethod
    def _well_formed(cls, message: str) -> str:
        template_placeholders(message)  # raises TemplateError (invalid_template)
        return message

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL (U+0000): refused here, not at the INSERT.
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and "\x00" in item for item in items):
            raise PydanticCustomError("nul_character", "NUL characters are not allowed")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _coded(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Pydantic's errors as the product's: `InvalidOptionError` with one detail per field."""
        try:
            return handler(data)
        except ValidationError as error:
            problems = error.errors(include_url=False)
            missing = [p for p in problems if p["type"] == "missing"]
            details = [
                {"field": ".".join(map(str, e["loc"])), "message": e["msg"]}
                for e in (missing or problems)
            ]
            message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
            if missing:
                raise DialerError("missing_field", message, details) from None
            raise InvalidOptionError(message, details) from None


class CampaignOptions(OperatorOptions):
    """Everything a campaign is created with: the operator's settings and the internal ones."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting in code is an error

    dial_retries: int = Field(
        3, ge=0, description="Tries to create a call after ambiguous or throttled replies."
    )
    ring_timeout_s: int = Field(30, ge=5, le=600, description="Twilio `Timeout`.")
    time_limit_s: int = Field(600, ge=1, le=14400, description="Twilio `TimeLimit`.")
    allow_premium: bool = Field(False, description="Dial premium-rate and shared-cost numbers.")
    allowed_countries: list[str] | None = Field(
        None, description="ISO 3166 regions a contact may be in (default: any)."
    )
    retry_policy: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_RETRY_POLICY.items()},
        description="Per outcome: {retry, delay_s} (see `dialer.calls.DEFAULT_RETRY_POLICY`).",
    )
