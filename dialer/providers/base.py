"""The telephony provider interface: what the dialer needs from a carrier, and its typed errors.

One implementation exists, `dialer.providers.twilio.TwilioProvider`, built on the official
Twilio SDK; pointed at the bundled carrier simulator it talks to it exactly as to Twilio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One outbound call to create.

    Attributes:
        to: the callee, E.164.
        from_: the caller ID, E.164.
        twiml: the TwiML document the call runs when answered.
        status_callback: absolute URL of our status webhook; it carries the attempt id.
        ring_timeout_s: seconds the call may ring before `no-answer` (Twilio `Timeout`, 5-600).
        time_limit_s: maximum call length in seconds once answered (Twilio `TimeLimit`).
        machine_detection: `Enable` or `DetectMessageEnd` to ask for AMD, or None.
        async_amd_callback: URL for the asynchronous AMD result (`AsyncAmd="true"`), or None
            for synchronous AMD (the TwiML runs once the result is known: how a message waits
            for the beep with `DetectMessageEnd`).
        recording_callback: our recording webhook when the call is recorded (Twilio
            `Record=true`, `RecordingStatusCallback`), else None: not recorded.
    """

    to: str
    from_: str
    twiml: str
    status_callback: str
    ring_timeout_s: int = 30
    time_limit_s: int = 600
    machine_detection: str | None = None
    async_amd_callback: str | None = None
    recording_callback: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """A call as the provider reports it (a subset of Twilio's Call resource)."""

    sid: str
    to: str
    from_: str
    status: str
    """Twilio `call_enum_status`: queued, ringing, in-progress, completed, busy, failed,
    no-answer, canceled."""
    date_created: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_s: int | None = None
    answered_by: str | None = None


@dataclass(slots=True)
class ProviderError(Exception):
    """A request the provider did not carry out as asked.

    Attributes:
        message: the provider's message, kept verbatim.
        code: the provider's error code (Twilio error dictionary), when it gave one.
        http_status: the HTTP status of the reply, or None when no reply came.
    """

    message: str
    code: int | None = None
    http_status: int | None = None
    details: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, http={self.http_status}): {self.message}"


class AmbiguousProviderError(ProviderError):
    """No usable reply (5xx, timeout, dropped connection): the call may or may not exist.

    Creating a call is not idempotent at Twilio (error 20500 notes a resent POST can ring
    twice), so the caller must look the call up before trying again.
    """


class ThrottledProviderError(ProviderError):
    """The request was refused unprocessed for rate (HTTP 429, Twilio 20429): safe to retry."""


class ContactProviderError(ProviderError):
    """Permanent for this contact (e.g. Twilio 21211 invalid To, 21214, 21217): do not retry."""


class AccountProviderError(ProviderError):
    """Permanent for the account (e.g. Twilio 20003 auth, 21215 geo permission, balance).

    Every further call of the campaign would fail the same way: trip the circuit breaker.
    """


class NotFoundProviderError(ProviderError):
    """The call sid is unknown to the provider (HTTP 404, Twilio 20404)."""


class TelephonyProvider(Protocol):
    """What the dialer asks of a carrier. All methods block; all raise `ProviderError`s."""

    def create_call(self, request: CallRequest) -> ProviderCall:
        """Create one outbound call. Raises any `ProviderError` subclass."""
        ...

    def fetch_call(self, sid: str) -> ProviderCall:
        """The call's current state. Raises `NotFoundProviderError` for an unknown sid."""
        ...

    def list_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        """Calls to `to` (E.164) created at or after `since` (UTC; the provider's clock has
        one-second precision, so the adapter widens the window by one second)."""
        ...

    def hang_up(self, sid: str) -> ProviderCall:
        """End the call: `completed` if answered, `canceled` if still queued or ringing."""
        ...

    def update_twiml(self, sid: str, twiml: str) -> ProviderCall:
        """Replace what a live call runs with `twiml` (Twilio `POST Calls/{Sid}.json`
        `Twiml=`): what it said so far stops, the new TwiML starts at once. Raises
        `ContactProviderError` (Twilio 21220) when the call is no longer in progress."""
        ...

    def owns_caller_id(self, e164: str) -> bool:
        """True when the provider account may present `e164` as caller ID: it owns the
        number (Twilio IncomingPhoneNumbers) or has verified it (OutgoingCallerIds)."""
        ...
