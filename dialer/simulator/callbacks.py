"""Webhook delivery as Twilio does it: signed, with connection overrides governing retries.

Connection overrides (https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides)
ride in the URL fragment, e.g. `https://host/status?attempt=7#rc=3&rp=all&ct=1000`:
- `ct` connect timeout, ms (100-10000, default 5000);
- `rt` read timeout, ms (100-15000, default 15000);
- `tt` total time for all attempts, ms (100-15000, default 15000);
- `rc` retry count (0-5, default 1);
- `rp` retry policy: `4xx`, `5xx`, `ct` (connect failure / timeout), `rt` (read timeout),
  `all`; comma-separated; default `ct`.
Out-of-range values are clamped. The fragment is never sent over HTTP (it is stripped from the
request line); whether it is part of the signed URL is `SimulatorConfig.sign_fragment`.

The signature is `RequestValidator(auth_token).compute_signature(url, params)`: base64
HMAC-SHA1 of the URL followed by each POST parameter name and value, sorted by name
(https://www.twilio.com/docs/usage/webhooks/webhooks-security).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from twilio.request_validator import RequestValidator
from yarl import URL


@dataclass(frozen=True, slots=True)
class ConnectionOverrides:
    """Twilio's webhook connection settings; times in seconds, `retry_policy` a set of
    `4xx`, `5xx`, `ct`, `rt`."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_time_s: float = 15.0
    retry_count: int = 1
    retry_policy: frozenset[str] = frozenset({"ct"})

    @classmethod
    def from_fragment(cls, fragment: str) -> ConnectionOverrides:
        """Parse a URL fragment such as `rc=3&rp=5xx,ct&ct=1000`; unknown keys are ignored."""
        values = dict(parse_qsl(fragment, keep_blank_values=False))
        defaults = cls()

        def millis(key: str, low: int, high: int, default_s: float) -> float:
            raw = values.get(key)
            if raw is None or not raw.isdigit():
                return default_s
            return min(max(int(raw), low), high) / 1000.0

        retry_count = defaults.retry_count
        if values.get("rc", "").isdigit():
            retry_count = min(max(int(values["rc"]), 0), 5)
        policy = defaults.retry_policy
        if "rp" in values:
            parts = {part.strip().lower() for part in values["rp"].split(",") if part.strip()}
            policy = frozenset({"4xx", "5xx", "ct", "rt"}) if "all" in parts else frozenset(parts)
        return cls(
            connect_timeout_s=millis("ct", 100, 10000, defaults.connect_timeout_s),
            read_timeout_s=millis("rt", 100, 15000, defaults.read_timeout_s),
            total_time_s=millis("tt", 100, 15000, defaults.total_time_s),
            retry_count=retry_count,
            retry_policy=policy,
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """The result of delivering one callback: `ok` when a 2xx/3xx reply came; `attempts`
    HTTP requests made; `last_error` the failure class (`4xx`, `5xx`, `ct`, `rt`) or None."""

    ok: bool
    attempts: int
    last_error: str | None


def signed_url_and_wire_url(url: str, sign_fragment: bool) -> tuple[str, str, str]:
    """Split a callback URL into (URL to sign, URL to request, fragment)."""
    parts = urlsplit(url)
    wire = urlunsplit(parts._replace(fragment=""))
    return (url if sign_fragment else wire), wire, parts.fragment


async def deliver(
    client: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    *,
    method: str,
    auth_token: str,
    sign_fragment: bool,
    idempotency_token: str,
) -> Delivery:
    """Send one webhook, retrying per the URL's connection overrides.

    Args:
        url: the callback URL as the API client gave it, fragment included.
        params: the form parameters (POST body, or query string for GET).
        method: `POST` or `GET`.
        idempotency_token: sent as `I-Twilio-Idempotency-Token`, the same on every retry and
            duplicate of one event, as Twilio does.
    """
    sign_url, wire_url, fragment = signed_url_and_wire_url(url, sign_fragment)
    overrides = ConnectionOverrides.from_fragment(fragment)
    validator = RequestValidator(auth_token)
    if method.upper() == "GET":
        separator = "&" if urlsplit(wire_url).query else "?"
        query = urlencode(params)
        wire_url = f"{wire_url}{separator}{query}"
        sign_url = f"{wire_url}#{fragment}" if fragment and sign_fragment else wire_url
        signature = validator.compute_signature(sign_url, {})
        body: dict[str, str] | None = None
    else:
        signature = validator.compute_signature(sign_url, params)
        body = params
    headers = {
        "X-Twilio-Signature": signature,
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": idempotency_token,
    }
    timeout = aiohttp.ClientTimeout(
        total=None, connect=overrides.connect_timeout_s, sock_read=overrides.read_timeout_s
    )
    deadline = time.monotonic() + overrides.total_time_s
    attempts = 0
    error: str | None = None
    while True:
        attempts += 1
        try:
            async with client.request(
                method.upper(),
                URL(wire_url, encoded=True),  # as signed: no re-quoting of the query
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            error = "ct"
        except (aiohttp.ClientError, TimeoutError):
            error = "rt"
        else:
            if status < 400:
                return Delivery(ok=True, attempts=attempts, last_error=None)
            error = "4xx" if status < 500 else "5xx"
        retries_left = attempts <= overrides.retry_count
        if not retries_left or error not in overrides.retry_policy:
            return Delivery(ok=False, attempts=attempts, last_error=error)
        if time.monotonic() >= deadline:
            return Delivery(ok=False, attempts=attempts, last_error=error)


async def fetch_action(
    client: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    *,
    auth_token: str,
    sign_fragment: bool,
    max_bytes: int,
    timeout_s: float = 15.0,
) -> str | None:
    """POST a TwiML verb's `action` (a `<Gather>`'s keys) signed as Twilio signs it, and
    return the TwiML it answers with (its first `max_bytes` bytes), or None when no 2xx
    answer came within `timeout_s` (Twilio then says an application error and hangs up).
    One try: Twilio does not retry a TwiML fetch unless its URL's overrides ask."""
    sign_url, wire_url, _ = signed_url_and_wire_url(url, sign_fragment)
    signature = RequestValidator(auth_token).compute_signature(sign_url, params)
    headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
    try:
        async with client.post(
            URL(wire_url, encoded=True),
            data=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            body = await response.content.read(max_bytes)
            if response.status >= 300:
                return None
            return body.decode("utf-8", errors="replace")
    except (aiohttp.ClientError, TimeoutError):
        return None
