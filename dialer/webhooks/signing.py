"""Signing the customer's webhooks, and checking a signature (receivers may copy this file:
it needs only the standard library).

Every delivery carries `Dialer-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is the
HMAC-SHA256 of `"<t>.<body>"` (the raw request body, UTF-8) keyed with the account's
webhook secret. After a secret is rotated the old one stays valid for 24 hours, and both
signatures are sent: `t=...,v1=<new>,v1=<old>`. The timestamp lets a receiver refuse a
replayed request: `verify_signature` accepts it only within `tolerance_s` of its clock.
(The same scheme as Stripe's `Stripe-Signature`.)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

HEADER = "Dialer-Signature"


def sign(secret: str, timestamp: int, body: str | bytes) -> str:
    """Hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`."""
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: int, body: str | bytes) -> str:
    """The `Dialer-Signature` value: `t=<timestamp>` then one `v1=` entry per secret."""
    entries = [f"t={timestamp}"] + [f"v1={sign(s, timestamp, body)}" for s in secrets]
    return ",".join(entries)


def verify_signature(
    secret: str,
    header: str,
    body: str | bytes,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """Whether `header` (the `Dialer-Signature` value) signs `body` with `secret`.

    True when one of its `v1=` entries is the HMAC of `"<t>.<body>"` (compared in constant
    time) and `t` is within `tolerance_s` seconds of `now` (default: this clock, Unix
    seconds). Pass the body exactly as received, before any JSON parsing.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for entry in header.split(","):
        key, _, value = entry.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    # Compare against every entry without stopping early, so timing reveals nothing.
    matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]
    return any(matches)
