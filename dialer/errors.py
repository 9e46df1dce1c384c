"""Errors with stable codes, shared by the API and the CLI.

Every error a client or an operator may see is a `DialerError`: `code` is stable (clients
match on it), `message` is for people, `details` (optional) lists what was wrong field by
field. The HTTP API answers one with its class's `http_status` and the body
`{"error": {"code", "message"[, "details"]}}`; the CLI prints `error: <code>: <message>` on
stderr and exits 1. Every code is listed, with its meaning and what to do, in `ERROR_CODES`
(the site's "Error codes" page is generated from it). The tree, with each class's HTTP
status and codes:

* DialerError ............................ 400  a refused request (`caller_id_not_verified`, ...;
        `invalid_value`: a value the database cannot store, e.g. a NUL character;
        `above_ceiling`: an account cap past the ceiling the operator set it)
  + InvalidOptionError ................... 400  `invalid_option`: a campaign, schedule or
        single-call setting out of bounds, or a field that is not a setting
  + InvalidMenuError ..................... 400  `invalid_menu`: a keypress menu that cannot
        be offered (unknown action, duplicate or invalid key, a transfer without a number)
  + InvalidWindowError ................... 400  `invalid_window`, `invalid_days`,
        `invalid_timezone`, `invalid_holiday`, `invalid_schedule`,
        `window_outside_legal_hours`: a calling window setting
  + NumberRejected ....................... 400  a `dialer.numbers.RejectReason`
        (dialer.numbers)
  + TemplateError ........................ 400  `invalid_template`: a malformed message
        (dialer.providers.twiml)
  + MalformedCallbackError ............... 400  `malformed_callback`
        (dialer.dispatch.callbacks)
  + UnauthenticatedError ................. 401  `unauthenticated`, `unknown_api_key`,
        `revoked_api_key`
    + SignInRequiredError ................ 401  `sign_in_required`: the page, signed out
        (dialer.web.routers.pages)
  + ForbiddenError ....................... 403  `invalid_signature`: a forged callback
        `invalid_csrf_token`: a page POST without its session's token
  + NotFoundError ........................ 404  `campaign_not_found`, `attempt_not_found`, ...
  + ConflictError ........................ 409  `invalid_state`; `campaign_paused`: a call
        into a campaign the circuit breaker paused (campaigns.calls); `number_taken`:
        another account has this caller ID; `caller_id_not_outbound`: starting or resuming
        a campaign whose caller ID is disabled for outbound calls
  + BodyTooLargeError .................... 413  `body_too_large`: a request body past its
        bound (dialer.web.guards)
  + UnprocessableError ................... 422  `idempotency_key_reused`, `invalid_json`
  + IngestError .......................... 422  a CSV refused as a whole: an `IngestErrorCode`
        (`undecodable`, `empty_file`, `header_only`, `no_phone_column`, `too_large`,
        `line_too_long`, `missing_variable`, `unknown_column`; campaigns.csvsource)
  + MissingVariableError ................. 422  `missing_variable`: a contact lacks a value
        (dialer.providers.twiml)
  + TooManyRequestsError ................. 429  `rate_limited` (the API key's request rate),
        `too_many_waiters` (the account's `wait` requests), with `Retry-After`
  + ProviderFailedError .................. 502  `provider_error`: the provider did not answer
        a question asked on the client's behalf (is this caller ID ours?)
  + DatabaseUnavailableError ............. 503  `database_unavailable`, with `Retry-After`
        (what the web layer answers for the database drivers' connection errors)
  + RedisUnavailableError ................ 503  `redis_unavailable`, with `Retry-After`
        (what the web layer answers for redis-py's connection errors and timeouts)
  + SessionSecretMissingError ............ 503  `session_secret_missing`: page sign-in is off
        (dialer.web.sessions)

Outside the tree, on purpose:

* `dialer.providers.base.ProviderError` and its subclasses: what the carrier answered, with
  the carrier's own code; the dispatcher decides on them (retry, adopt, end the contact,
  trip the circuit breaker) and no client sees one.
* `dialer.simulator.app.ApiError`: the carrier simulator is an independent witness that
  imports nothing of the dialer, and it answers with Twilio's error body, not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class DialerError(Exception):
    """A refused request. `code` is stable (clients match on it); `message` is for people;
    `details`, when given, says what was wrong one field at a time
    (`[{"field": "max_concurrency", "message": "..."}]`).

    `http_status` is what the HTTP API answers with it.
    """

    http_status: ClassVar[int] = 400
    retry_after_s: int | None = None
    """Seconds after which the same request may succeed (the reply's `Retry-After`)."""

    def __init__(
        self, code: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class InvalidOptionError(DialerError):
    """A campaign setting out of its bounds or of the wrong type; `details` lists each."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__("invalid_option", message, details)


class InvalidMenuError(DialerError):
    """A keypress menu that cannot be offered (`invalid_menu`, `dialer.menu`): an unknown
    action, a key used twice or not a phone key, a transfer without an E.164 number;
    `details` names the key."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__("invalid_menu", message, details)


class InvalidWindowError(DialerError):
    """A calling window setting that cannot be used: `invalid_window`, `invalid_days`,
    `invalid_timezone`, `invalid_holiday`, `invalid_schedule` (start/end times), or
    `window_outside_legal_hours` (a window outside 08:00-21:00, see `dialer.windows`)."""


class UnauthenticatedError(DialerError):
    """No API key (`unauthenticated`), or one no account has (`unknown_api_key`)."""

    http_status = 401


class ForbiddenError(DialerError):
    """A request whose credentials do not hold (a provider callback with a bad signature)."""

    http_status = 403


class NotFoundError(DialerError):
    """An unknown id (campaign, attempt, account)."""

    http_status = 404


class ConflictError(DialerError):
    """The request does not fit the object's current state (e.g. resuming a finished campaign)."""

    http_status = 409


class BodyTooLargeError(DialerError):
    """A request body larger than its route's bound; nothing past the bound was read."""

    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__("body_too_large", f"the request body is larger than {limit} bytes")


class TooManyRequestsError(DialerError):
    """Over a rate or concurrency limit (`rate_limited`, `too_many_waiters`); nothing was
    done, and the same request may be sent again after `retry_after_s` seconds."""

    http_status = 429

    def __init__(self, code: str, message: str, retry_after_s: int) -> None:
        super().__init__(code, message)
        self.retry_after_s = retry_after_s


class ProviderFailedError(DialerError):
    """The telephony provider failed a request made for the client (not a call: those are
    the dispatcher's); the same request may be sent again."""

    http_status = 502

    def __init__(self, message: str) -> None:
        super().__init__("provider_error", message)


class UnprocessableError(DialerError):
    """Well-formed HTTP the server will not act on: a body that is not JSON
    (`invalid_json`), an `Idempotency-Key` sent again with another request
    (`idempotency_key_reused`)."""

    http_status = 422


class DatabaseUnavailableError(DialerError):
    """PostgreSQL did not answer (down, or every pooled connection busy): nothing was
    written, and the same request may be sent again shortly."""

    http_status = 503
    retry_after_s = 1

    def __init__(self) -> None:
        super().__init__("database_unavailable", "try again shortly")


class RedisUnavailableError(DialerError):
    """Redis (the pool, the request quotas, the page sessions) did not answer: the request
    was refused before it did anything that needs Redis, and may be sent again shortly."""

    http_status = 503
    retry_after_s = 1

    def __init__(self) -> None:
        super().__init__("redis_unavailable", "try again shortly")


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One stable error code, documented: the Reference page "Error codes" is generated
    from `ERROR_CODES` (dialer.docs_reference), and a test checks that every code the code
    raises is listed here. `class_name`: the `DialerError` subclass that carries it (some
    live in higher layers, hence a name); `http_status`: what the API answers."""

    code: str
    class_name: str
    http_status: int
    meaning: str
    to_do: str


_RETRY = "Send the same request again after `Retry-After` seconds."
_FIX = "Correct the request as the message (and `details`) says, and send it again."

ERROR_CODES: tuple[ErrorCode, ...] = (
    # 400: a refused request
    ErrorCode(
        "above_ceiling",
        "DialerError",
        400,
        "An account cap set past the ceiling the operator allows.",
        "Ask for less, or ask the operator to raise the ceiling.",
    ),
    ErrorCode(
        "caller_id_not_verified",
        "DialerError",
        400,
        "The provider does not list this number as one of the account's caller IDs.",
        "Verify the caller ID with the provider (Twilio: Verified Caller IDs), then add it again.",
    ),
    ErrorCode(
        "client_disconnected",
        "DialerError",
        400,
        "The client went away in the middle of an idempotent request.",
        "Send the request again with the same `Idempotency-Key`.",
    ),
    ErrorCode(
        "do_not_call",
        "DialerError",
        400,
        "The number is on the account's do-not-call list.",
        "Do not call it; remove it from the list only if the person asked to be called.",
    ),
    ErrorCode(
        "from_number_mismatch",
        "DialerError",
        400,
        "A `from` number that is not the campaign's caller ID.",
        "Leave `from` out, or use the campaign's caller ID.",
    ),
    ErrorCode(
        "from_number_not_found",
        "DialerError",
        400,
        "A `from` number that is not one of the account's caller IDs.",
        "Add it with `dialer numbers add` (or the API), or use another.",
    ),
    ErrorCode(
        "invalid_account_name", "DialerError", 400, "An account name out of its pattern.", _FIX
    ),
    ErrorCode(
        "invalid_body",
        "DialerError",
        400,
        "A request body FastAPI could not validate (a missing or mistyped field).",
        _FIX,
    ),
    ErrorCode(
        "invalid_cron",
        "DialerError",
        400,
        "A schedule's cron expression that cannot be parsed.",
        "Use five fields: minute hour day-of-month month day-of-week.",
    ),
    ErrorCode(
        "invalid_cursor",
        "DialerError",
        400,
        "A page cursor this API did not give.",
        "Start again without `cursor`, then follow `next_cursor`.",
    ),
    ErrorCode(
        "invalid_days",
        "InvalidWindowError",
        400,
        "A calling window's days that cannot be read.",
        "Use e.g. `mon-fri` or `mon,wed`.",
    ),
    ErrorCode(
        "invalid_holiday",
        "InvalidWindowError",
        400,
        "A holiday that is not a date YYYY-MM-DD.",
        _FIX,
    ),
    ErrorCode(
        "invalid_idempotency_key",
        "DialerError",
        400,
        "An `Idempotency-Key` header that is empty or too long.",
        "Send a unique key of at most 255 printable characters (a UUID).",
    ),
    ErrorCode("invalid_key_name", "DialerError", 400, "An API key name out of its pattern.", _FIX),
    ErrorCode(
        "invalid_option",
        "InvalidOptionError",
        400,
        "A campaign, schedule or single-call setting out of bounds, or a field that is not"
        " a setting.",
        _FIX,
    ),
    ErrorCode(
        "invalid_phone_format",
        "DialerError",
        400,
        "A phone number that is not E.164 where E.164 is required.",
        "Write it as + country code and number, e.g. +14155550100.",
    ),
    ErrorCode(
        "invalid_request",
        "DialerError",
        400,
        "A query or path parameter FastAPI could not validate.",
        _FIX,
    ),
    ErrorCode(
        "invalid_schedule",
        "InvalidWindowError",
        400,
        "A window whose start is not before its end, or times that cannot be read.",
        "Use HH:MM-HH:MM with start before end.",
    ),
    ErrorCode(
        "invalid_timezone",
        "InvalidWindowError",
        400,
        "A time zone that is not an IANA name.",
        "Use an IANA name such as America/New_York.",
    ),
    ErrorCode(
        "invalid_value",
        "DialerError",
        400,
        "A value the database cannot store (e.g. a NUL character).",
        "Remove the character and send it again.",
    ),
    ErrorCode(
        "invalid_menu",
        "InvalidMenuError",
        400,
        "A keypress menu that cannot be offered: an unknown action, a key used twice (the"
        " opt-out key included) or not a phone key, a transfer without an E.164 number.",
        'Map each key 0-9, * or # once, to confirm, cancel, repeat, opt_out or {"action":'
        ' "transfer", "to": "+E164"}.',
    ),
    ErrorCode(
        "invalid_window",
        "InvalidWindowError",
        400,
        "A calling window that cannot be read.",
        "Use HH:MM-HH:MM, e.g. 09:00-20:00.",
    ),
    ErrorCode(
        "missing_field",
        "DialerError",
        400,
        "A required field is absent.",
        "Add the field the message names.",
    ),
    ErrorCode(
        "missing_variable",
        "MissingVariableError",
        422,
        "The message uses a {variable} the contact has no value for.",
        "Give every contact the value (a CSV column or `variables`), or change the message.",
    ),
    ErrorCode(
        "no_calling_window",
        "DialerError",
        400,
        "No calling window is open for this contact before the call's deadline.",
        "Widen the window or the deadline, or call another day.",
    ),
    ErrorCode(
        "no_contacts",
        "DialerError",
        400,
        "A schedule's file holds no contact to call.",
        "Check the file the schedule reads.",
    ),
    ErrorCode(
        "no_outbound_number",
        "DialerError",
        400,
        "The account has no caller ID enabled for outbound calls.",
        "Add one: `dialer numbers add`.",
    ),
    ErrorCode(
        "startup_failed",
        "DialerError",
        400,
        "A process of the local stack (`dialer demo`) did not start.",
        "Read the log it names; check that PostgreSQL and Redis answer.",
    ),
    ErrorCode(
        "too_many_contacts",
        "DialerError",
        400,
        "More contacts than the bound for this request.",
        "Split the file, or raise the bound the message names.",
    ),
    ErrorCode(
        "unknown_timezone",
        "DialerError",
        400,
        "A contact's time zone cannot be derived from the number and none was given.",
        "Pass `timezone`.",
    ),
    ErrorCode(
        "webhook_url_not_allowed",
        "DialerError",
        400,
        "A webhook URL that is not https, or points at a private or local address.",
        "Use a public https URL.",
    ),
    ErrorCode(
        "window_outside_legal_hours",
        "InvalidWindowError",
        400,
        "A calling window outside 08:00-21:00 local time (TCPA, 47 CFR 64.1200(c)(1)).",
        "Keep the window within 08:00-21:00.",
    ),
    ErrorCode(
        "invalid_template",
        "TemplateError",
        400,
        "A malformed message template (e.g. an unclosed {).",
        "Fix the braces in the message.",
    ),
    ErrorCode(
        "malformed_callback",
        "MalformedCallbackError",
        400,
        "A provider callback without the fields a status callback has.",
        "None: the provider's request is refused; check the callback URL.",
    ),
    # 401 - 404
    ErrorCode(
        "unauthenticated",
        "UnauthenticatedError",
        401,
        "No API key sent.",
        "Send `Authorization: Bearer <key>`.",
    ),
    ErrorCode(
        "unknown_api_key",
        "UnauthenticatedError",
        401,
        "An API key no account has.",
        "Check the key; make one with `dialer keys create`.",
    ),
    ErrorCode(
        "revoked_api_key",
        "UnauthenticatedError",
        401,
        "A revoked API key.",
        "Use another key of the account.",
    ),
    ErrorCode(
        "sign_in_required",
        "SignInRequiredError",
        401,
        "The campaign page, signed out.",
        "Sign in at /login with an API key.",
    ),
    ErrorCode(
        "invalid_signature",
        "ForbiddenError",
        403,
        "A provider callback whose signature does not hold (forged, or `PUBLIC_BASE_URL`"
        " differs from the URL the provider called).",
        "Set `PUBLIC_BASE_URL` to the URL the provider reaches.",
    ),
    ErrorCode(
        "invalid_csrf_token",
        "ForbiddenError",
        403,
        "A page form posted without its session's token.",
        "Reload the page and submit again.",
    ),
    ErrorCode(
        "account_not_found",
        "NotFoundError",
        404,
        "No account of this name.",
        "Create it with `dialer accounts create`, or check `--account` / `DIALER_ACCOUNT`.",
    ),
    ErrorCode(
        "api_key_not_found",
        "NotFoundError",
        404,
        "No API key of this id in the account.",
        "List the keys: `dialer keys list`.",
    ),
    ErrorCode("attempt_not_found", "NotFoundError", 404, "No attempt of this id.", "Check the id."),
    ErrorCode(
        "call_not_found",
        "NotFoundError",
        404,
        "No call of this id in the account.",
        "Check the id `POST /v1/calls` answered with.",
    ),
    ErrorCode(
        "campaign_not_found",
        "NotFoundError",
        404,
        "No campaign of this id in the account.",
        "List them: `dialer campaigns list`.",
    ),
    ErrorCode(
        "no_rejected_rows",
        "NotFoundError",
        404,
        "The campaign's CSV had no refused row to download.",
        "None: every row was taken.",
    ),
    ErrorCode(
        "number_not_found",
        "NotFoundError",
        404,
        "No caller ID of this number in the account.",
        "List them: `dialer numbers list`.",
    ),
    ErrorCode(
        "schedule_not_found",
        "NotFoundError",
        404,
        "No schedule of this id in the account.",
        "List them: `dialer schedules list`.",
    ),
    ErrorCode(
        "webhook_delivery_not_found",
        "NotFoundError",
        404,
        "No webhook delivery of this id in the account.",
        "List them: `dialer webhooks list`.",
    ),
    # 409 - 429
    ErrorCode(
        "account_exists",
        "ConflictError",
        409,
        "An account of this name exists.",
        "Use it, or pick another name.",
    ),
    ErrorCode(
        "already_fired",
        "ConflictError",
        409,
        "The schedule already fired for this time.",
        "None: its run is recorded.",
    ),
    ErrorCode(
        "call_ended",
        "ConflictError",
        409,
        "Cancelling a call that is already final (completed or cancelled).",
        "None: read its outcome with `GET /v1/calls/{id}`.",
    ),
    ErrorCode(
        "campaign_ended",
        "ConflictError",
        409,
        "Changing the settings of a completed or cancelled campaign.",
        "Create a new campaign with the settings.",
    ),
    ErrorCode(
        "caller_id_not_outbound",
        "ConflictError",
        409,
        "Starting or resuming a campaign whose caller ID is disabled for outbound calls.",
        "Enable the number, or give the campaign another.",
    ),
    ErrorCode(
        "campaign_paused",
        "ConflictError",
        409,
        "A call into a campaign the circuit breaker paused.",
        "Fix the provider error the pause names, then resume the campaign.",
    ),
    ErrorCode(
        "invalid_state",
        "ConflictError",
        409,
        "The action does not fit the object's state (e.g. resuming a finished campaign).",
        "Read the state first; see the state machines.",
    ),
    ErrorCode(
        "number_in_use",
        "ConflictError",
        409,
        "A caller ID that a campaign still uses.",
        "Finish or cancel those campaigns first.",
    ),
    ErrorCode(
        "number_taken",
        "ConflictError",
        409,
        "Another account has this caller ID.",
        "Use another number.",
    ),
    ErrorCode(
        "standing_campaign",
        "ConflictError",
        409,
        "Changing the account's standing campaign of single calls, which follows the account.",
        "Change the account's settings, or the call's own.",
    ),
    ErrorCode(
        "request_in_progress",
        "ConflictError",
        409,
        "A request with this `Idempotency-Key` is still running.",
        "Wait, then send it again: you get its answer.",
    ),
    ErrorCode(
        "body_too_large",
        "BodyTooLargeError",
        413,
        "A request body past its route's bound.",
        "Send less (split a CSV).",
    ),
    ErrorCode(
        "idempotency_key_reused",
        "UnprocessableError",
        422,
        "An `Idempotency-Key` sent again with another request.",
        "Use a new key for a new request.",
    ),
    ErrorCode(
        "invalid_json",
        "UnprocessableError",
        422,
        "A body that is not JSON where JSON is expected.",
        "Send valid JSON with `Content-Type: application/json`.",
    ),
    ErrorCode(
        "rate_limited", "TooManyRequestsError", 429, "Over the API key's request rate.", _RETRY
    ),
    ErrorCode(
        "too_many_waiters",
        "TooManyRequestsError",
        429,
        "Over the account's concurrent `wait` requests.",
        _RETRY,
    ),
    # 5xx
    ErrorCode(
        "internal_error",
        "DialerError",
        500,
        "A bug: an unexpected exception.",
        "Report it with the request id from the logs.",
    ),
    ErrorCode(
        "provider_error",
        "ProviderFailedError",
        502,
        "The provider did not answer a question asked for the client (is this caller ID ours?).",
        "Send the request again; check the provider's status page.",
    ),
    ErrorCode(
        "database_unavailable",
        "DatabaseUnavailableError",
        503,
        "PostgreSQL did not answer; nothing was written.",
        _RETRY,
    ),
    ErrorCode(
        "redis_unavailable",
        "RedisUnavailableError",
        503,
        "Redis did not answer; nothing was done.",
        _RETRY,
    ),
    ErrorCode(
        "session_secret_missing",
        "SessionSecretMissingError",
        503,
        "Page sign-in is off: `SESSION_SECRET` is not set.",
        "Set `SESSION_SECRET` (32+ random characters) in the API's environment.",
    ),
)
"""Every stable code a `DialerError` carries, except the enum-valued ones documented with
their enums (`dialer.numbers.RejectReason`, `campaigns.csvsource.IngestErrorCode`)."""
