"""The Twilio provider: `TelephonyProvider` on the official Twilio SDK.

Pointed at the carrier simulator by `base_url`, which replaces the scheme and host of every
request in the SDK's HTTP client (`TwilioHttpClient`, the SDK's documented extension point),
so the same code talks to Twilio and to the simulator.

Error mapping (Twilio error dictionary, https://www.twilio.com/docs/api/errors):
- no reply, timeout, dropped connection, HTTP 5xx (e.g. 20500) -> `AmbiguousProviderError`;
- HTTP 429, 20429 (too many requests), 10004 (call concurrency limit) -> `ThrottledProviderError`;
- HTTP 404, 20404 (not found) -> `NotFoundProviderError`;
- HTTP 401/402/403 and `ACCOUNT_ERROR_CODES` -> `AccountProviderError`;
- any other 4xx (21211 invalid To, 21214 cannot route, 21216 blocked, 21217 invalid number,
  21610 unsubscribed, 21612 cannot route, 13224 invalid number, ...) -> `ContactProviderError`.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from dialer.metrics import PROVIDER_CREATES, PROVIDER_ERRORS
from dialer.providers.base import (
    AccountProviderError,
    AmbiguousProviderError,
    CallRequest,
    ContactProviderError,
    NotFoundProviderError,
    ProviderCall,
    ProviderError,
    ThrottledProviderError,
)
from dialer.settings import Settings

ACCOUNT_ERROR_CODES: Final = frozenset({10001, 10002, 20003, 20005, 21210, 21212, 21215, 90010})
"""Twilio codes that hold for every call of the account (Twilio error dictionary): 10001
account is not active (suspended, or its balance reached zero), 10002 trial account does
not support this feature, 20003 authentication failed, 20005 account not active (out of
funds, or the trial not activated), 21210 the caller ID ("From") is not a verified or
purchased number, 21212 invalid caller ID ("From"), 21215 geo permission not enabled for
the destination, 90010 account is not active (suspended). HTTP 402 Payment Required is
treated the same way."""

THROTTLE_ERROR_CODES: Final = frozenset({20429, 10004})
"""20429 too many requests (never processed, safe to retry); 10004 call concurrency limit."""

CALL_NOT_IN_PROGRESS: Final = 21220
"""Twilio 21220: the call is not in progress (it ended before the update reached it)."""

ERROR_KINDS: Final[dict[type[ProviderError], str]] = {
    AmbiguousProviderError: "ambiguous",
    ThrottledProviderError: "throttled",
    ContactProviderError: "rejected",
    AccountProviderError: "account_error",
    NotFoundProviderError: "not_found",
}
"""The `kind` label of `dialer_provider_errors_total` and the `result` of a failed create in
`dialer_provider_creates_total` (`dialer.metrics`)."""

_SDK_PREFIX: Final = re.compile(r"^Unable to \w+ (record|page): ")

STATUS_CALLBACK_EVENTS: Final = ["initiated", "ringing", "answered", "completed"]
LIST_LIMIT: Final = 200
"""Most calls `list_calls` reads (two pages of 100): enough for one number's recent attempts."""


TWILIO_API_URL: Final = "https://api.twilio.com"


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """`TwilioHttpClient` that sends every request to `base_url` (scheme and host replaced,
    path and query kept) with an explicit timeout in seconds. The SDK's requests `Session`
    (`pool_connections=True`) is one keep-alive connection pool, reused by every request of
    the instance: the runtime keeps one per process (`dialer.runtime.Runtime.provider`). Use
    one instance from one thread at a time.

    The environment's proxy settings (`HTTPS_PROXY`, `NO_PROXY`, ...) and CA bundle
    (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`) are read once, here, for the host requests go
    to, and handed to the session: requests would otherwise read them again on every
    request (`Session.merge_environment_settings`), a measurable share of a call's CPU.
    """

    def __init__(self, base_url: str | None, timeout_s: float) -> None:
        super().__init__(pool_connections=True, timeout=timeout_s)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.proxy = requests.utils.get_environ_proxies(self.base_url or TWILIO_API_URL)
        self.session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self.session.trust_env = False

    def rewrite(self, url: str) -> str:
        """`url` with scheme and host taken from `base_url` (unchanged when unset)."""
        if not self.base_url:
            return url
        target, original = urlsplit(self.base_url), urlsplit(url)
        path = target.path + original.path
        return urlunsplit((target.scheme, target.netloc, path, original.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the SDK's request to the rewritten URL (see `TwilioHttpClient.request`)."""
        return super().request(
            method,
            self.rewrite(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


def _map_rest_error(exc: TwilioRestException | TwilioServiceException) -> ProviderError:
    """The typed error for a Twilio error reply (see the module docstring for the rules).

    Legacy replies (`{"code", "message", "more_info", "status"}`) raise `TwilioRestException`,
    RFC 9457 ones `TwilioServiceException`; the SDK prefixes the message with what it was
    doing (`Unable to create record: `), which is dropped to keep Twilio's message verbatim.
    """
    status = int(exc.status)
    code = int(exc.code) if exc.code is not None else None
    details: dict[str, str] = {}
    if isinstance(exc, TwilioServiceException):
        message = str(exc.detail or exc.title)
    else:
        message = _SDK_PREFIX.sub("", str(exc.msg))
        if isinstance(exc.details, dict):
            details = {str(key): str(value) for key, value in exc.details.items()}
    kind: type[ProviderError]
    if status >= 500:
        kind = AmbiguousProviderError
    elif status == 429 or code in THROTTLE_ERROR_CODES:
        kind = ThrottledProviderError
    elif status == 404 or code == 20404:
        kind = NotFoundProviderError
    elif status in (401, 402, 403) or code in ACCOUNT_ERROR_CODES:
        kind = AccountProviderError
    else:
        kind = ContactProviderError
    return kind(message=message, code=code, http_status=status, details=details)


def _map_page_error(exc: TwilioException) -> ProviderError:
    """The typed error for a list page the provider refused: the SDK raises the bare
    `TwilioException("Unable to fetch page", response)` for those, not a
    `TwilioRestException`; the reply's Twilio error body is mapped as any other."""
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return AmbiguousProviderError(message=f"no usable reply from provider: {exc}")
    try:
        body = json.loads(str(getattr(response, "text", "")))
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    rest = TwilioRestException(
        status, uri="", msg=str(body.get("message") or exc.args[0]), code=body.get("code")
    )
    return _map_rest_error(rest)


def _to_provider_call(instance: Any) -> ProviderCall:
    duration = instance.duration
    return ProviderCall(
        sid=str(instance.sid),
        to=str(instance.to),
        from_=str(instance._from),
        status=str(instance.status),
        date_created=instance.date_created,
        start_time=instance.start_time,
        end_time=instance.end_time,
        duration_s=int(duration) if duration not in (None, "") else None,
        answered_by=instance.answered_by,
    )


class TwilioProvider:
    """`TelephonyProvider` on the Twilio SDK.

    Args:
        account_sid, auth_token: the account's credentials (Basic auth).
        base_url: scheme and host replacing `https://api.twilio.com` (the simulator), or None.
        timeout_s: HTTP timeout of one request, in seconds; a timeout is ambiguous.
    """

    def __init__(
        self, account_sid: str, auth_token: str, base_url: str | None, timeout_s: float
    ) -> None:
        self.http_client = BaseUrlHttpClient(base_url, timeout_s)
        self._client = Client(account_sid, auth_token, http_client=self.http_client)

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one SDK operation; its errors mapped and counted (`dialer_provider_errors`)."""
        error: ProviderError
        try:
            return operation(*args, **kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            error = _map_rest_error(exc)
            cause: Exception = exc
        except TwilioException as exc:
            error = _map_page_error(exc)
            cause = exc
        except requests.RequestException as exc:
            # Timeout, refused or dropped connection: the request may have been carried out.
            error = AmbiguousProviderError(message=f"no reply from provider: {exc}")
            cause = exc
        kind = ERROR_KINDS.get(type(error), "error")
        name = getattr(operation, "__name__", "request")
        PROVIDER_ERRORS.labels(name, kind, str(error.code or "none")).inc()
        raise error from cause

    def create_call(self, request: CallRequest) -> ProviderCall:
        """Create the call (Twilio `POST Calls.json`) with all four status callback events;
        with `machine_detection`, AMD runs asynchronously (`AsyncAmd=true`) exactly when
        `async_amd_callback` is given, and synchronously otherwise.

        Raises:
            ProviderError: a subclass per the module's mapping.
        """
        kwargs: dict[str, Any] = {
            "to": request.to,
            "from_": request.from_,
            "twiml": request.twiml,
            "status_callback": request.status_callback,
            "status_callback_event": STATUS_CALLBACK_EVENTS,
            "status_callback_method": "POST",
            "timeout": request.ring_timeout_s,
            "time_limit": request.time_limit_s,
        }
        if request.machine_detection:
            kwargs["machine_detection"] = request.machine_detection
            # Asynchronous AMD only when its result has somewhere to go (hang up on machines):
            # the TwiML then runs at once. Without it AMD is synchronous: the TwiML waits for
            # the result, so with DetectMessageEnd the message starts after the beep.
            if request.async_amd_callback:
                kwargs["async_amd"] = "true"
                kwargs["async_amd_status_callback"] = request.async_amd_callback
                kwargs["async_amd_status_callback_method"] = "POST"
        if request.recording_callback:
            kwargs["record"] = True
            kwargs["recording_status_callback"] = request.recording_callback
            kwargs["recording_status_callback_method"] = "POST"
            kwargs["recording_status_callback_event"] = ["completed"]
        try:
            instance = self._call(self._client.calls.create, **kwargs)
        except ProviderError as error:
            PROVIDER_CREATES.labels(ERROR_KINDS.get(type(error), "error")).inc()
            raise
        PROVIDER_CREATES.labels("created").inc()
        return _to_provider_call(instance)

    def fetch_call(self, sid: str) -> ProviderCall:
        """The call's current state (Twilio `GET Calls/{Sid}.json`).

        Raises:
            NotFoundProviderError: unknown sid (HTTP 404, 20404); other `ProviderError`s.
        """
        return _to_provider_call(self._call(self._client.calls(sid).fetch))

    def list_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        """Calls to `to` created at or after `since - 1 s`, newest first.

        Twilio filters only on start time, and a queued call has none yet, so the filter on
        `date_created` (one-second precision) runs here, over at most `LIST_LIMIT` calls.
        """
        cutoff = since - timedelta(seconds=1)
        instances = self._call(self._client.calls.list, to=to, limit=LIST_LIMIT, page_size=100)
        calls = [_to_provider_call(instance) for instance in instances]
        return [call for call in calls if call.date_created is None or call.date_created >= cutoff]

    def hang_up(self, sid: str) -> ProviderCall:
        """End the call: `canceled` when queued or ringing, `completed` when in progress
        (also when it was answered while the cancel was on its way); an ended call is
        returned as it is (also on Twilio 21220, ended between the fetch and the update).

        Raises:
            NotFoundProviderError: unknown sid; other `ProviderError`s.
        """
        call = self.fetch_call(sid)
        if call.status in ("queued", "ringing"):
            target = "canceled"
        elif call.status == "in-progress":
            target = "completed"
        else:
            return call
        try:
            call = _to_provider_call(self._call(self._client.calls(sid).update, status=target))
        except ContactProviderError as exc:
            if exc.code != CALL_NOT_IN_PROGRESS:
                raise
            return self.fetch_call(sid)  # it ended between the fetch and the update
        if call.status == "in-progress":
            # Answered between the fetch and the cancel, which Twilio ignores for answered calls.
            return self.hang_up(sid)
        return call

    def update_twiml(self, sid: str, twiml: str) -> ProviderCall:
        """Run `twiml` on the live call now (Twilio `POST Calls/{Sid}.json`, `Twiml=`).

        Raises:
            ContactProviderError: Twilio 21220, the call is no longer in progress;
            NotFoundProviderError: unknown sid; other `ProviderError`s.
        """
        return _to_provider_call(self._call(self._client.calls(sid).update, twiml=twiml))

    def owns_caller_id(self, e164: str) -> bool:
        """True when the account owns `e164` (`GET IncomingPhoneNumbers.json?PhoneNumber=`)
        or has verified it (`GET OutgoingCallerIds.json?PhoneNumber=`).

        Raises:
            ProviderError: a subclass per the module's mapping (no answer: ambiguous).
        """
        owned = self._call(
            self._client.incoming_phone_numbers.list, phone_number=e164, limit=1, page_size=1
        )
        if any(str(number.phone_number) == e164 for number in owned):
            return True
        verified = self._call(
            self._client.outgoing_caller_ids.list, phone_number=e164, limit=1, page_size=1
        )
        return any(str(number.phone_number) == e164 for number in verified)


def provider_from_settings(settings: Settings) -> TwilioProvider:
    """The provider the settings describe (Twilio, or the simulator at `twilio_base_url`)."""
    return TwilioProvider(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        settings.twilio_base_url,
        settings.twilio_timeout_s,
    )
