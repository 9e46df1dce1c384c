"""The settings a campaign is created with, as one schema. Durations in seconds, rates in
calls per second.

Each field's exposure is the class that declares it:

- `BatchOptions`: the settings every entry point a tenant reaches offers for a batch of
  contacts (the calling window, caps, AMD, ring timeout, time limit, the retry matrix).
- `OperatorOptions`: those plus a campaign's own `name`, `timezone`, `start_at` and
  `end_at`: what an operator sets. The CLI (`dialer campaigns create`, one `--flag` per
  field, `from_number` spelled `--from`) and the HTTP API (`POST /v1/campaigns`, one
  multipart form field per field) both build their parameters from this class's fields,
  so a setting exists in both or in neither.
- `ScheduleOptions`: `BatchOptions` plus `expire_after_s`, the settings of a schedule's
  campaigns (`POST /v1/schedules`, `dialer schedules create`): each occurrence's times are
  measured from the occurrence, never fixed dates.
- `CampaignOptions`: `OperatorOptions` plus what only code sets (the demo, the benchmarks,
  the tests): the dial retries, the number policy (premium-rate numbers, countries) and a
  scale on retry delays. No tenant's request reaches them.
- `CallOptions` (`campaigns.calls.SingleCall`) is a single call's, on the same base.

Every class refuses an unknown field (`invalid_option` naming it) and checks every bound
when it is built, whoever builds it. Raises:
    DialerError: `missing_field`, a required setting (`name`, `message`) is absent (one
        `details` entry per field).
    InvalidOptionError: `invalid_option`, an unknown field, a value out of bounds or of the
        wrong type (one `details` entry per field).
    TemplateError: `invalid_template`, a malformed `message`.
    InvalidWindowError: `invalid_window`, `window_outside_legal_hours`, `invalid_days`,
        `invalid_timezone`, `invalid_schedule` (a calling window setting; see
        `dialer.windows`).
"""

from __future__ import annotations

import copy
import json
from datetime import date, datetime
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dialer.calls import DEFAULT_RETRY_POLICY, RETRY_DELAY_MAX_S, RETRY_DELAY_MIN_S
from dialer.errors import DialerError, InvalidMenuError, InvalidOptionError, InvalidWindowError
from dialer.menu import (
    ACTION_WORDS,
    DEFAULT_OPT_OUT_DIGIT,
    DEFAULT_OPT_OUT_PROMPT,
    MENU_DIGITS,
    RECORDING_DISCLOSURE,
    Menu,
    MenuAction,
)
from dialer.numbers import NumberRejected, classify
from dialer.providers.twiml import template_placeholders
from dialer.windows import CallingWindow, parse_days, parse_window, zone
from models import MachineAction, Outcome

RING_TIMEOUT_S = (5, 600)
"""Twilio's `Timeout` bounds, seconds (Twilio clamps outside them; we refuse instead)."""
TIME_LIMIT_S = (1, 14400)
"""Twilio's `TimeLimit` bounds, seconds (four hours is Twilio's maximum)."""


MAX_POOL = 100
"""Most numbers in one caller-ID pool."""


RetryOutcome = Literal["busy", "no-answer", "failed", "machine"]
"""The outcomes that may retry: the keys of `dialer.calls.DEFAULT_RETRY_POLICY`."""


class CodedOptions(BaseModel):
    """A settings schema: unknown fields refused, NUL characters refused, and pydantic's
    errors raised as the product's (`missing_field`, `invalid_option`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
        """Pydantic's errors as the product's: `InvalidOptionError` with one detail per field
        (an unknown field is named, with "not a setting")."""
        try:
            return handler(data)
        except ValidationError as error:
            problems = error.errors(include_url=False)
            # A required setting absent; one absent inside a setting is that setting's fault.
            missing = [p for p in problems if p["type"] == "missing" and len(p["loc"]) == 1]
            details = [
                {
                    "field": ".".join(map(str, e["loc"])),
                    "message": "not a setting" if e["type"] == "extra_forbidden" else e["msg"],
                }
                for e in (missing or problems)
            ]
            message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
            if missing:
                raise DialerError("missing_field", message, details) from None
            raise InvalidOptionError(message, details) from None


class RetryRule(BaseModel):
    """What follows one outcome: another attempt or not, and after how long (seconds,
    60 s to 7 days: sooner is a nuisance to the person called, later is another campaign)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retry: bool = Field(description="Call again after this outcome.")
    delay_s: int = Field(
        ge=RETRY_DELAY_MIN_S,
        le=RETRY_DELAY_MAX_S,
        description="Seconds until the next attempt (60 to 604800).",
    )


class FrequencyCap(BaseModel):
    """One rolling per-number limit of an account: at most `calls` calls to one number in
    any `days` days (`dialer.frequency`; FCC 20-186: 3 in 30 days for exempt prerecorded
    calls; HIPAA-covered health calls: 1 a day and 3 in 7 days)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: int = Field(ge=1, le=1000, description="Most calls to one number in the period.")
    days: int = Field(ge=1, le=366, description="The period, in days (trailing 24 h each).")


MAX_FREQUENCY_CAPS = 5
"""Most limits one account may set."""


class FrequencyCaps(CodedOptions):
    """An account's frequency caps as a whole (`Account.frequency_caps`): at most
    `MAX_FREQUENCY_CAPS`, no two of the same period; none: no cap. A limit may be given as
    `{"calls": N, "days": D}` or as the CLI's text `N/D` ("3/30": 3 calls in 30 days)."""

    caps: list[FrequencyCap] = Field(max_length=MAX_FREQUENCY_CAPS)

    @field_validator("caps", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                calls, sep, days = item.partition("/")
                if not sep or not calls.strip().isdigit() or not days.strip().isdigit():
                    raise PydanticCustomError(
                        "frequency_cap", "{item!r} is not CALLS/DAYS (3/30)", {"item": item}
                    )
                item = {"calls": int(calls), "days": int(days)}
            out.append(item)
        return out

    @field_validator("caps")
    @classmethod
    def _one_per_period(cls, caps: list[FrequencyCap]) -> list[FrequencyCap]:
        days = [cap.days for cap in caps]
        if len(set(days)) != len(days):
            raise PydanticCustomError("frequency_cap", "two limits have the same days")
        return sorted(caps, key=lambda cap: cap.days)

    def stored(self) -> list[dict[str, int]]:
        """As `Account.frequency_caps` keeps them, shortest period first."""
        return [cap.model_dump() for cap in self.caps]


def _retry_matrix(value: Any) -> Any:
    """The retry matrix as given: a mapping, or its JSON text (a form field, a CLI flag);
    only outcomes that may retry are keys."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise PydanticCustomError("json_invalid", "not a JSON object") from None
    if isinstance(value, dict):
        for outcome in value:
            if outcome == Outcome.ANSWERED:
                raise PydanticCustomError("answered", "an answered call never retries")
            if outcome not in DEFAULT_RETRY_POLICY:
                raise PydanticCustomError(
                    "outcome",
                    "{outcome!r} is not an outcome that may retry ({known})",
                    {"outcome": outcome, "known": ", ".join(DEFAULT_RETRY_POLICY)},
                )
    return value


class MenuEntry(BaseModel):
    """One key of a keypress menu: its action, the number a `transfer` dials (E.164), and
    the words that offer it (default: the action's, `dialer.menu.ACTION_WORDS`; `{digit}`
    is the key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: MenuAction
    to: str | None = None
    say: str | None = Field(None, max_length=300)


MENU_KEYS_MAX = len(MENU_DIGITS)
LEGACY_MENU = {"1": MenuEntry(action=MenuAction.CONFIRM), "2": MenuEntry(action=MenuAction.CANCEL)}
"""`gather_dtmf=true`: press 1 to confirm, 2 to cancel."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise InvalidMenuError(
            f"menu key {twice[0]!r} is mapped twice",
            [{"field": "menu", "message": f"key {key!r} is mapped twice"} for key in twice],
        )
    return dict(pairs)


def read_menu(value: Any) -> dict[str, MenuEntry] | None:
    """The menu as given: a mapping key -> action name or {"action", "to", "say"}, or its
    JSON text (a form field, a CLI flag; a key written twice is refused, not overwritten).

    Raises:
        InvalidMenuError: not a JSON object; a key written twice, not one phone key, or
            mapped to an unknown action or an entry that does not read; a transfer without
            an E.164 `to` (or a `to` on another action).
    """
    if value is None or (
        isinstance(value, dict) and all(isinstance(v, MenuEntry) for v in value.values())
    ):
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value, object_pairs_hook=_refuse_duplicates)
        except ValueError:
            raise _bad_menu("menu is not a JSON object") from None
    if not isinstance(value, dict):
        raise _bad_menu("menu is not an object of key -> action")
    if len(value) > MENU_KEYS_MAX:
        raise _bad_menu(f"a menu maps at most {MENU_KEYS_MAX} keys")
    entries: dict[str, MenuEntry] = {}
    for key, raw in value.items():
        if key not in MENU_DIGITS:
            raise _bad_key(key, "is not one phone key (0-9, * or #)")
        if isinstance(raw, str):
            raw = {"action": raw}
        if not isinstance(raw, dict):
            raise _bad_key(key, "must map to an action name or an object")
        if raw.get("action") not in set(MenuAction):
            known = ", ".join(MenuAction)
            raise _bad_key(key, f"action {raw.get('action')!r} is not one of {known}")
        try:
            entry = MenuEntry.model_validate(raw)
        except ValidationError as error:
            raise _bad_key(key, error.errors(include_url=False)[0]["msg"]) from None
        if entry.action is MenuAction.TRANSFER:
            try:
                number = classify(entry.to or "", "US")
            except NumberRejected:
                raise _bad_key(key, "a transfer needs `to`, an E.164 number") from None
            if number.e164 != entry.to:
                raise _bad_key(key, "a transfer's `to` must be written in E.164 (+15551234567)")
        elif entry.to is not None:
            raise _bad_key(key, "only a transfer takes `to`")
        entries[key] = entry
    return entries


def _bad_menu(message: str) -> InvalidMenuError:
    return InvalidMenuError(message, [{"field": "menu", "message": message}])


def _bad_key(key: str, message: str) -> InvalidMenuError:
    return InvalidMenuError(
        f"menu key {key!r}: {message}", [{"field": f"menu.{key}", "message": message}]
    )


def build_menu(entries: dict[str, MenuEntry], opt_out: tuple[str, str] | None) -> Menu | None:
    """The menu a call offers: `entries` in the order given, then the opt-out line
    `opt_out` (key, words; None: no line), unless the entries have an opt-out key of their
    own; None when that leaves no key at all. Each key's words are its entry's `say`, else
    its action's (`dialer.menu.ACTION_WORDS`), `{digit}` replaced by the key.

    Raises:
        InvalidMenuError: the opt-out key is another action's key.
    """
    entries = dict(entries)
    if opt_out and not any(e.action is MenuAction.OPT_OUT for e in entries.values()):
        digit, words = opt_out
        taken = entries.get(digit)
        if taken is not None:
            raise InvalidMenuError(
                f"menu key {digit!r} is the opt-out key; set opt_out_digit to another key "
                "or leave the key out of the menu",
                [{"field": f"menu.{digit}", "message": "is the opt-out key"}],
            )
        entries[digit] = MenuEntry(action=MenuAction.OPT_OUT, say=words)
    if not entries:
        return None
    lines = [
        (entry.say or ACTION_WORDS[entry.action]).replace("{digit}", key)
        for key, entry in entries.items()
    ]
    own_words = {
        key: entry.say
        for key, entry in entries.items()
        if entry.say is not None and entry.say != ACTION_WORDS[entry.action]
    }
    return Menu({k: (e.action, e.to) for k, e in entries.items()}, " ".join(lines), own_words)


def one_caller_id_setting(from_number: str | None, pool: list[str] | None) -> None:
    """A campaign or call presents one number or a pool, not both.

    Raises:
        InvalidOptionError: both given.
    """
    if from_number is not None and pool is not None:
        raise InvalidOptionError(
            "give from_number or caller_id_pool, not both",
            [{"field": "caller_id_pool", "message": "given with from_number"}],
        )


class BatchOptions(CodedOptions):
    """A batch of contacts' settings, as a tenant or an operator gives them."""

    message: str = Field(
        max_length=4000,
        description="Spoken text; {name} placeholders take the contact's CSV values (a "
        "column's header in lower case, spaces and dashes as underscores: `First Name` "
        "fills {first_name}; see column_map).",
    )
    from_number: str | None = Field(
        None, description="Caller ID, E.164 (default: the account's first caller ID)."
    )
    caller_id_pool: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_POOL,
        description="Caller-ID pool instead of one from_number: the account's outbound "
        "numbers, E.164 (repeatable). Each call presents the number the contact was last "
        "called from, else one of its area code or region, else the pool's least used.",
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
    ring_timeout_s: int = Field(
        30,
        ge=RING_TIMEOUT_S[0],
        le=RING_TIMEOUT_S[1],
        description="Seconds a call may ring before it is no-answer (Twilio `Timeout`, 5-600).",
    )
    time_limit_s: int = Field(
        600,
        ge=TIME_LIMIT_S[0],
        le=TIME_LIMIT_S[1],
        description="Longest call, seconds (Twilio `TimeLimit`, 1-14400).",
    )
    machine_detection: bool = Field(False, description="Ask for answering machine detection.")
    machine_action: MachineAction = Field(
        MachineAction.HANG_UP, description="What to do when a machine answers."
    )
    gather_dtmf: bool = Field(
        False,
        description='Press 1 to confirm, 2 to cancel: the menu {"1": "confirm", "2": "cancel"}.',
    )
    menu: dict[str, MenuEntry] | None = Field(
        None,
        description="Keypress menu after the message, key (0-9, *, #) -> action: confirm, "
        'cancel, repeat, opt_out, or {"action": "transfer", "to": "+E164"}; an entry may '
        'give its own words, {"action": "confirm", "say": "Press {digit} if you will come."} '
        '(JSON text in a form or on the command line), e.g. {"1": "confirm", "2": "cancel"}.',
    )
    opt_out_line: bool = Field(
        True,
        description="Offer the opt-out key after the message (on by default: FCC 20-186 "
        "asks prerecorded calls for an automated opt-out); the key lists the number on the "
        "account's do-not-call list.",
    )
    opt_out_digit: str = Field(
        DEFAULT_OPT_OUT_DIGIT, min_length=1, max_length=1, description="The opt-out key."
    )
    opt_out_prompt: str = Field(
        DEFAULT_OPT_OUT_PROMPT,
        max_length=300,
        description="The opt-out line's words; {digit} is the opt-out key.",
    )
    voicemail_message: str | None = Field(
        None,
        max_length=4000,
        description="Left on an answering machine after its greeting ends (AMD "
        "DetectMessageEnd: after the beep, the silence, or the greeting); {name} "
        "placeholders as in message. Turns answering machine detection on.",
    )
    record: bool = Field(False, description="Record the call (Twilio Record).")
    recording_disclosure: str = Field(
        RECORDING_DISCLOSURE,
        max_length=300,
        description="Said first on a recorded call; empty: nothing is said.",
    )
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
    column_map: list[str] | None = Field(
        None,
        description='Columns to variables, "Column=variable" each (repeatable): '
        '"Appt Date=appointment_time" fills {appointment_time} from column Appt Date.',
    )
    retry_policy: dict[RetryOutcome, RetryRule] = Field(
        default_factory=dict,
        description="The retry matrix, per outcome that may retry (busy, no-answer, failed, "
        'machine; never answered): {"retry": bool, "delay_s": 60-604800}, e.g. '
        '{"busy": {"retry": true, "delay_s": 900}} (JSON text in a form or on the command '
        "line). An outcome left out keeps its default: busy and failed after 600 s, "
        "no-answer after 3600 s, machine not retried.",
    )

    @field_validator("retry_policy", mode="before")
    @classmethod
    def _retry_outcomes(cls, value: Any) -> Any:
        return _retry_matrix(value)

    @model_validator(mode="after")
    def _one_caller_id_setting(self) -> Self:
        one_caller_id_setting(self.from_number, self.caller_id_pool)
        return self

    @field_validator("menu", mode="before")
    @classmethod
    def _menu(cls, value: Any) -> Any:
        return read_menu(value)

    @field_validator("opt_out_digit")
    @classmethod
    def _opt_out_digit(cls, digit: str) -> str:
        if digit not in MENU_DIGITS:
            raise InvalidMenuError(
                f"opt_out_digit {digit!r} is not one phone key (0-9, * or #)",
                [{"field": "opt_out_digit", "message": "not one phone key"}],
            )
        return digit

    @field_validator("voicemail_message")
    @classmethod
    def _voicemail(cls, message: str | None) -> str | None:
        if message is not None and message.strip():
            template_placeholders(message)  # raises TemplateError (invalid_template)
            return message
        return None

    @model_validator(mode="after")
    def _one_menu(self) -> Self:
        """`gather_dtmf` and `menu` are two spellings of a menu: one at a time; the opt-out
        key may not be another key's too (`build_menu`)."""
        if self.gather_dtmf and self.menu:
            raise InvalidMenuError(
                "gather_dtmf is the menu {1: confirm, 2: cancel}: give menu or gather_dtmf",
                [{"field": "gather_dtmf", "message": "given with menu"}],
            )
        self.call_menu()
        return self

    def menu_entries(self) -> dict[str, MenuEntry]:
        """The menu as given (`gather_dtmf` read as its menu), without the opt-out line."""
        return dict(LEGACY_MENU) if self.gather_dtmf else dict(self.menu or {})

    def call_menu(self) -> Menu | None:
        """The menu each call offers (`build_menu`). Raises `InvalidMenuError`."""
        opt_out = (self.opt_out_digit, self.opt_out_prompt) if self.opt_out_line else None
        return build_menu(self.menu_entries(), opt_out)

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

    def calling_window(self) -> CallingWindow:
        """The window these settings describe."""
        start, end = parse_window(self.window)
        return CallingWindow(
            start, end, parse_days(self.days), frozenset(self.holiday), self.skip_public_holidays
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

    @field_validator("message")
    @classmethod
    def _well_formed(cls, message: str) -> str:
        if not message.strip():
            raise PydanticCustomError("blank", "must not be blank")
        template_placeholders(message)  # raises TemplateError (invalid_template)
        return message


class ScheduleOptions(BatchOptions):
    """The settings of a schedule's campaigns. A schedule has no fixed dates: each
    occurrence starts its campaign at once, and `expire_after_s` is measured from it."""

    expire_after_s: int | None = Field(
        None,
        ge=60,
        le=31 * 86400,
        description="Contacts of an occurrence still pending this many seconds after the "
        "occurrence end `expired` (default: never). Measured from each occurrence, so every "
        "run gets the same time to call its contacts; a schedule takes no `start_at` or "
        "`end_at` (fixed dates would expire every later run at once).",
    )


class OperatorOptions(BatchOptions):
    """A campaign's settings as an operator gives them, in the CLI or the API."""

    name: str = Field(max_length=200, description="Campaign name.")
    timezone: str | None = Field(
        None,
        description="IANA zone of contacts whose zone cannot be derived, and of times "
        "written without an offset.",
    )
    start_at: datetime | None = Field(None, description="No call before this time (ISO 8601).")
    end_at: datetime | None = Field(
        None, description="Contacts still pending then end expired (ISO 8601)."
    )

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
        # A change to a campaign (`CampaignPatch`) reads the campaign's zone from the context.
        name = info.data.get("timezone") or (info.context or {}).get("timezone")
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

    @field_validator("name")
    @classmethod
    def _not_blank(cls, name: str) -> str:
        if not name.strip():
            raise PydanticCustomError("blank", "must not be empty")
        return name


class CampaignOptions(OperatorOptions):
    """Everything a campaign is created with: the operator's settings and the internal ones
    (code only: the demo, the benchmarks, the tests)."""

    dial_retries: int = Field(
        3, ge=0, description="Tries to create a call after ambiguous or throttled replies."
    )
    allow_premium: bool = Field(False, description="Dial premium-rate and shared-cost numbers.")
    allowed_countries: list[str] | None = Field(
        None, description="ISO 3166 regions a contact may be in (default: any)."
    )

    def retry_matrix(self) -> dict[str, dict[str, Any]]:
        """The stored retry matrix (`campaigns.retry_policy`, read by
        `dialer.calls.retry_delay`): every outcome that may retry -> {"retry": bool,
        "delay_s": seconds}, the given rules over `dialer.calls.DEFAULT_RETRY_POLICY`
        (development scales the delays when they are used: `Settings.dev_time_scale`)."""
        given = {str(k): v.model_dump() for k, v in self.retry_policy.items()}
        return {
            str(outcome): {"retry": rule["retry"], "delay_s": rule["delay_s"]}
            for outcome, rule in {**DEFAULT_RETRY_POLICY, **given}.items()
        }


PATCHABLE: tuple[str, ...] = (
    "max_concurrency",
    "cps",
    "window",
    "days",
    "end_at",
    "from_number",
    "caller_id_pool",
    "message",
    "voicemail_message",
    "menu",
    "opt_out_line",
    "opt_out_digit",
    "opt_out_prompt",
    "record",
    "recording_disclosure",
)
"""The `OperatorOptions` fields a running, paused or draft campaign may change
(`campaigns.changes`): its caps, CPS, calling window and days, `end_at`, caller ID or
caller-ID pool (one replaces the other), message and voicemail message, keypress menu and
opt-out line, and recording. A field is made changeable by adding its name here (and,
unless it is a `Campaign` column of the same name and form, its applier in
`campaigns.changes`)."""

NULLABLE: frozenset[str] = frozenset({"cps", "end_at", "menu", "voicemail_message"})
"""Changeable fields that `null` clears: the campaign's own CPS (the account's alone then
applies), its `end_at` (no end), its menu's keys (the opt-out line alone, unless it is
off) and its voicemail message (a machine hears nothing left for it)."""

MENU_SETTINGS: tuple[str, ...] = ("menu", "opt_out_line", "opt_out_digit", "opt_out_prompt")
"""The settings a campaign's stored menu is built from (`BatchOptions.call_menu`): a change
naming any of them builds the menu again from them and the campaign's menu as it stands
(`changed_menu`), and is recorded as one change of `menu` (the stored menu before and
after)."""


class CampaignChange(OperatorOptions):
    """`OperatorOptions` with every field optional; a change names only changeable fields
    (`PATCHABLE`) and `reason`, and gives `null` only to those `null` clears."""

    reason: str = Field(min_length=1, max_length=500, description="Why: kept in the history.")

    @model_validator(mode="before")
    @classmethod
    def _changeable(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        problems = [
            {"field": name, "message": "not a setting that can be changed on a campaign"}
            for name in data
            if name not in PATCHABLE and name != "reason" and name in OperatorOptions.model_fields
        ]
        problems += [
            {"field": name, "message": "must not be null"}
            for name, value in data.items()
            if value is None and name in PATCHABLE and name not in NULLABLE
        ]
        if problems:
            message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise InvalidOptionError(message, problems)
        return data

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.changes():
            raise InvalidOptionError(
                "name at least one setting to change",
                [{"field": "", "message": f"one of {', '.join(PATCHABLE)}"}],
            )
        return self

    @model_validator(mode="after")
    def _one_menu(self) -> Self:
        """A change's menu is checked against the campaign's when it is applied
        (`changed_menu`): the key it gives may be free once the opt-out key moves."""
        return self

    def changes(self) -> dict[str, Any]:
        """The settings given, by name (`None`: cleared), in `PATCHABLE` order; the
        `MENU_SETTINGS` given as one `menu`, {name: value} (`changed_menu` applies it)."""
        given = [name for name in PATCHABLE if name in self.model_fields_set]
        changed: dict[str, Any] = {}
        for name in given:
            if name in MENU_SETTINGS:
                changed.setdefault("menu", {})[name] = getattr(self, name)
            else:
                changed[name] = getattr(self, name)
        return changed


def changed_menu(current: Menu | None, given: dict[str, Any]) -> Menu | None:
    """The menu a campaign offering `current` offers after a change of the `MENU_SETTINGS`
    in `given` ({name: value}; `menu` None: no keys), built as at creation (`build_menu`).
    What `given` leaves out stays: the keys, and the opt-out line, read from `current` as
    its one `opt_out` key and that key's words (a menu with several `opt_out` keys has them
    as its own keys, and no line); a line turned on that had none takes the defaults (key
    9, `DEFAULT_OPT_OUT_PROMPT`).

    Raises:
        InvalidMenuError: `invalid_menu`, the opt-out key is another action's key.
    """
    entries = (
        {
            digit: MenuEntry(action=action, to=to, say=current.words.get(digit))
            for digit, (action, to) in current.actions.items()
        }
        if current
        else {}
    )
    opt_outs = [d for d, entry in entries.items() if entry.action is MenuAction.OPT_OUT]
    line: tuple[str, str] | None = None
    if len(opt_outs) == 1:
        entry = entries.pop(opt_outs[0])
        line = opt_outs[0], entry.say or DEFAULT_OPT_OUT_PROMPT
    if "menu" in given:
        entries = dict(given["menu"] or {})
    on = given.get("opt_out_line", line is not None)
    digit = given.get("opt_out_digit") or (line[0] if line else DEFAULT_OPT_OUT_DIGIT)
    prompt = given.get("opt_out_prompt")
    if prompt is None:
        prompt = line[1] if line else DEFAULT_OPT_OUT_PROMPT
    return build_menu(entries, (digit, prompt) if on else None)


def optional_field(name: str) -> tuple[Any, Any]:
    """The `OperatorOptions` field `name` as a change takes it: optional, default None."""
    field = copy.copy(OperatorOptions.model_fields[name])
    field.default = None
    field.default_factory = None
    annotation: Any = field.annotation
    return annotation | None, field


CampaignPatch: type[CampaignChange] = create_model(  # type: ignore[call-overload]
    "CampaignPatch",
    __base__=CampaignChange,
    __doc__="A change to a campaign that has not ended (`PATCH /v1/campaigns/{id}`, "
    "`dialer campaigns set`): any of the `PATCHABLE` settings, checked as at creation "
    "(unknown fields, bounds, the window, the message's template), and why (`reason`, "
    "recorded in the campaign's history). A time without an offset is read in the "
    "campaign's `timezone` (the validation context's `timezone`).",
    **{name: optional_field(name) for name in OperatorOptions.model_fields},
)
