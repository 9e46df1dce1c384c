"""The account's webhook signing secret: created on first use, rotated by the operator.

After a rotation the previous secret keeps signing for `PREVIOUS_SECRET_VALID`, so a
receiver can switch to the new one without refusing a delivery in between: every delivery
in that time carries both signatures (`dialer.webhooks.signing`).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import Account

PREVIOUS_SECRET_VALID = timedelta(hours=24)
"""How long the secret before a rotation still signs deliveries."""


def new_secret() -> str:
    """A fresh secret: `whsec_` and 43 URL-safe characters (256 random bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def current_secret(session: Session, account_id: int) -> str:
    """The account's secret, created now if it has none (two concurrent first uses agree:
    the update keeps whichever was stored first).

    Raises:
        sqlalchemy.exc.NoResultFound: no account has that id.
    """
    stored = session.scalar(select(Account.webhook_secret).where(Account.id == account_id))
    if stored is not None:
        return stored
    created: str = session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(webhook_secret=func.coalesce(Account.webhook_secret, new_secret()))
        .returning(func.coalesce(Account.webhook_secret, ""))
    ).scalar_one()
    return created


def rotate_secret(account: Account, now: datetime) -> str:
    """Give `account` a new secret and return it; the old one stays valid for 24 h."""
    if account.webhook_secret is not None:
        account.webhook_secret_previous = account.webhook_secret
        account.webhook_secret_rotated_at = now
    account.webhook_secret = new_secret()
    return account.webhook_secret


def signing_secrets(session: Session, account_id: int, now: datetime) -> list[str]:
    """The secrets a delivery is signed with at `now`: the current one (created if none),
    then the previous one while it is still valid."""
    current = current_secret(session, account_id)
    previous, rotated_at = session.execute(
        select(Account.webhook_secret_previous, Account.webhook_secret_rotated_at).where(
            Account.id == account_id
        )
    ).one()
    if previous and rotated_at is not None and now < rotated_at + PREVIOUS_SECRET_VALID:
        return [current, previous]
    return [current]
