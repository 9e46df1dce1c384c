"""Accounts and caller IDs as the CLI and API find them."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.errors import DialerError, UnauthenticatedError
from dialer.numbers import NumberRejected, normalize
from models import Account, CallerId

DEFAULT_CALLER_ID = "+15005550006"
"""Twilio's magic test number that is always a valid `From`; the simulator accepts it too."""
DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_CPS = 1.0
"""Twilio's default outbound calls-per-second limit for an account."""


def hash_api_key(api_key: str) -> str:
    """SHA-256 hex of an API key (keys are random and long, so no salt or stretching)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def get_or_create_account(
    session: Session,
    name: str,
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    cps: float = DEFAULT_CPS,
) -> Account:
    """The account called `name`, created on first use with the given caps and the default
    caller ID."""
    account = session.scalars(select(Account).where(Account.name == name)).one_or_none()
    if account is None:
        account = Account(name=name, max_concurrency=max_concurrency, cps=cps)
        session.add(account)
        session.flush()
        session.add(CallerId(account_id=account.id, e164=DEFAULT_CALLER_ID))
        session.flush()
    return account


def account_by_api_key(session: Session, api_key: str) -> Account:
    """The account whose API key this is. Raises `UnauthenticatedError` (`unknown_api_key`)."""
    account = session.scalars(
        select(Account).where(Account.api_key_hash == hash_api_key(api_key))
    ).one_or_none()
    if account is None:
        raise UnauthenticatedError("unknown_api_key", "no account has this API key")
    return account


def caller_id_for(session: Session, account: Account, e164: str | None) -> CallerId:
    """The account's caller ID `e164` (added on first use), or its first one when None.

    Raises:
        DialerError: `invalid_caller_id` when `e164` is not a valid number.
    """
    if e164 is None:
        first = session.scalars(
            select(CallerId).where(CallerId.account_id == account.id).order_by(CallerId.id)
        ).first()
        if first is not None:
            return first
        e164 = DEFAULT_CALLER_ID
    try:
        number = normalize(e164, "US")
    except NumberRejected as error:
        raise DialerError("invalid_caller_id", f"{e164!r} is not a valid caller ID") from error
    caller_id = session.scalars(
        select(CallerId).where(CallerId.account_id == account.id, CallerId.e164 == number)
    ).one_or_none()
    if caller_id is None:
        caller_id = CallerId(account_id=account.id, e164=number)
        session.add(caller_id)
        session.flush()
    return caller_id
