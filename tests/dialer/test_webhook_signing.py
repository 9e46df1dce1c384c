"""Signing webhooks: the header, `verify_signature`, and the secret's rotation."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from sqlalchemy.orm import Session

from dialer.webhooks.keys import current_secret, rotate_secret, signing_secrets
from dialer.webhooks.signing import sign, signature_header, verify_signature
from models import utcnow
from tests.factories import make_account

BODY = '{"id":"evt_1","type":"call.completed","created":"2026-11-22T06:00:00Z","data":{}}'
T = 1_795_000_000


def test_the_header_is_a_timestamp_and_an_hmac_of_timestamp_dot_body() -> None:
    header = signature_header(["whsec_a"], T, BODY)
    assert header == f"t={T},v1={sign('whsec_a', T, BODY)}"
    # HMAC-SHA256 over "<t>.<body>", computed here independently.
    expected = hmac.new(b"whsec_a", f"{T}.{BODY}".encode(), hashlib.sha256).hexdigest()
    assert sign("whsec_a", T, BODY) == expected


def test_verify_accepts_the_signed_body_only() -> None:
    header = signature_header(["whsec_a"], T, BODY)
    assert verify_signature("whsec_a", header, BODY, now=T)
    assert verify_signature("whsec_a", header, BODY.encode(), now=T)  # bytes as received
    assert not verify_signature("whsec_b", header, BODY, now=T)
    assert not verify_signature("whsec_a", header, BODY.replace("call", "cal1"), now=T)
    forged_time = header.replace(f"t={T}", f"t={T + 1}")
    assert not verify_signature("whsec_a", forged_time, BODY, now=T)
    for malformed in ("", "v1=abc", f"t={T}", "t=x,v1=" + sign("whsec_a", T, BODY)):
        assert not verify_signature("whsec_a", malformed, BODY, now=T)


def test_verify_refuses_a_timestamp_outside_the_tolerance() -> None:
    header = signature_header(["whsec_a"], T, BODY)
    assert verify_signature("whsec_a", header, BODY, now=T + 300)
    assert verify_signature("whsec_a", header, BODY, now=T - 300)
    assert not verify_signature("whsec_a", header, BODY, now=T + 301)
    assert not verify_signature("whsec_a", header, BODY, now=T - 301)
    assert verify_signature("whsec_a", header, BODY, tolerance_s=3600, now=T + 3000)


def test_with_two_secrets_either_verifies() -> None:
    header = signature_header(["whsec_new", "whsec_old"], T, BODY)
    assert header.count("v1=") == 2
    assert verify_signature("whsec_new", header, BODY, now=T)
    assert verify_signature("whsec_old", header, BODY, now=T)
    assert not verify_signature("whsec_other", header, BODY, now=T)


def test_a_secret_is_created_on_first_use_and_then_kept(db_session: Session) -> None:
    account = make_account(db_session)
    assert account.webhook_secret is None
    first = current_secret(db_session, account.id)
    assert first.startswith("whsec_") and len(first) > 40
    assert current_secret(db_session, account.id) == first
    assert signing_secrets(db_session, account.id, utcnow()) == [first]


def test_after_a_rotation_the_old_secret_signs_for_24_hours(db_session: Session) -> None:
    account = make_account(db_session)
    old = current_secret(db_session, account.id)
    db_session.refresh(account)
    rotated_at = utcnow()
    new = rotate_secret(account, rotated_at)
    db_session.flush()
    assert new != old
    assert current_secret(db_session, account.id) == new
    # The clock is the caller's: just before 24 h both sign, from 24 h only the new one.
    just_before = rotated_at + timedelta(hours=24) - timedelta(seconds=1)
    assert signing_secrets(db_session, account.id, rotated_at) == [new, old]
    assert signing_secrets(db_session, account.id, just_before) == [new, old]
    assert signing_secrets(db_session, account.id, rotated_at + timedelta(hours=24)) == [new]
    header = signature_header(signing_secrets(db_session, account.id, just_before), T, BODY)
    assert verify_signature(old, header, BODY, now=T)
    assert verify_signature(new, header, BODY, now=T)
    # A second rotation retires the first secret at once.
    newest = rotate_secret(account, rotated_at + timedelta(hours=1))
    db_session.flush()
    assert signing_secrets(db_session, account.id, rotated_at + timedelta(hours=2)) == [
        newest,
        new,
    ]
