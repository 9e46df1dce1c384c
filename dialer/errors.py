"""Errors with stable codes, shared by the API and the CLI.

Every error a client or an operator may see is a `DialerError`: `code` is stable (clients
match on it), `message` is for people, `details` (optional) lists what was wrong field by
field. The HTTP API answers one with its class's `http_status` and the body
`{"error": {"code", "message"[, "details"]}}`; the CLI prints `error: <code>: <message>` on
stderr and exits 1. The tree, with each class's HTTP status and codes:

* DialerError ............................ 400  a refused request (`invalid_caller_id`, ...;
        `invalid_value`: a value the database cannot store, e.g. a NUL character;
        `above_ceiling`: an account cap past the ceiling the operator set it)
  + InvalidOptionError ................... 400  `invalid_option`: a campaign, schedule or
        single-call setting out of bounds, or a field that is not a setting
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
