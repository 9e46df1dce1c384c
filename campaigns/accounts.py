"""Accounts, their API keys and their caller IDs, as the CLI and the API manage them.

Only `create_account` makes an account: every other function finds one by name or key and
raises `account_not_found` otherwise, so a typo never creates an empty account.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import Session

from campaigns.options import FrequencyCaps
from campaigns.paging import Page, keyset_page
from dialer.campaign_state import CampaignAction, transition
from dialer.errors import (
    ConflictError,
    DialerError,
    InvalidOptionError,
    NotFoundError,
    ProviderFailedError,
    UnauthenticatedError,
)
from dialer.numbers import NumberRejected, normalize
from dialer.providers.base import ProviderError, TelephonyProvider
from dialer.settings import Settings
from dialer.webhook_url import check_webhook_url
from models import (
    SHARED_TEST_CALLER_ID,
    Account,
    ApiKey,
    CallerId,
    Campaign,
    CampaignStatus,
    utcnow,
)

SIMULATOR_CALLER_ID = SHARED_TEST_CALLER_ID
"""Twilio's magic test number that is always a valid `From` with test credentials; the
simulator owns it by default. An account created while the provider is the simulator gets
it as its first caller ID; with real Twilio an account starts with none."""
DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_CPS = 1.0
"""Twilio's default outbound calls-per-second limit for an account."""
KEY_PREFIX = "dk_"
"""Every API key starts with this, then 43 random URL-safe characters (256 bits)."""
_SHOWN_PREFIX = 10
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_api_key(api_key: str) -> str:
    """SHA-256 hex of an API key (keys are random and long, so no salt or stretching)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


# ---- accounts ------------------------------------------------------------------------------


def get_account(session: Session, name: str, *, lock: bool = False) -> Account:
    """The account called `name`. Raises `NotFoundError` (`account_not_found`)."""
    query = select(Account).where(Account.name == name)
    account = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if account is None:
        raise NotFoundError("account_not_found", f"no account {name!r}")
    return account


def create_account(
    session: Session,
    name: str,
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    cps: float = DEFAULT_CPS,
    simulator: bool,
) -> Account:
    """A new account `name` with the given caps (calls per second for `cps`); with
    `simulator` (the provider is the carrier simulator) its first caller ID is
    `SIMULATOR_CALLER_ID`. The caps are not held to the ceilings here: the entry points
    set them through `update_account`, which does.

    Raises:
        DialerError: `invalid_account_name` (blank or longer than 100 characters).
        ConflictError: `account_exists`.
    """
    if not name.strip() or len(name) > 100:
        raise DialerError("invalid_account_name", "an account name is 1-100 characters")
    if session.scalar(select(exists().where(Account.name == name))):
        raise ConflictError("account_exists", f"account {name!r} already exists")
    account = Account(name=name, max_concurrency=max_concurrency, cps=cps)
    session.add(account)
    session.flush()
    if simulator:
        session.add(CallerId(account_id=account.id, e164=SIMULATOR_CALLER_ID))
        session.flush()
    return account


@dataclass(frozen=True)
class Ceilings:
    """The most an account's caps may be: live calls, and calls per second."""

    max_concurrency: int
    cps: float


def default_ceilings(settings: Settings) -> Ceilings:
    """The ceilings of an account the operator set none for (`Settings`)."""
    return Ceilings(settings.account_max_concurrency_ceiling, settings.account_cps_ceiling)


def account_ceilings(account: Account, defaults: Ceilings) -> Ceilings:
    """The account's ceilings: its own where the operator set them, else `defaults`."""
    return Ceilings(
        account.max_concurrency_ceiling or defaults.max_concurrency,
        account.cps_ceiling or defaults.cps,
    )


@dataclass(frozen=True)
class AccountChange:
    """Settings to change on an account; None leaves one as it is. `webhook_url=""` clears
    the webhook URL. The ceilings are the installation operator's (the CLI's); no tenant
    request sets them."""

    max_concurrency: int | None = None
    cps: float | None = None
    frequency_caps: FrequencyCaps | None = None
    webhook_url: str | None = None
    max_concurrency_ceiling: int | None = None
    cps_ceiling: float | None = None
    rest_flagged_numbers: bool | None = None


def update_account(
    session: Session,
    account: Account,
    change: AccountChange,
    *,
    allow_private: bool,
    defaults: Ceilings,
) -> Account:
    """Apply `change` to `account` (locked by the caller or not: the last write wins).

    Caps never exceed the account's ceilings (`account_ceilings`, `defaults` where the
    operator set none): a cap asked above its ceiling is refused; a ceiling lowered below a
    cap lowers the cap to it. No campaign of the account is capped above it: a new
    `max_concurrency` is the cap of its standing campaigns and the most any other campaign
    may have; a new `cps` the most any campaign may have (calls per second).

    Raises:
        InvalidOptionError: `invalid_option`, a cap or ceiling that is not positive (one
            `details` entry per field).
        DialerError: `above_ceiling`, a cap above its ceiling (`details` names the field
            and the ceiling); `webhook_url_not_allowed` (see `dialer.webhook_url`).
    """
    problems = [
        {"field": field, "message": "must be greater than 0"}
        for field, value in (
            ("max_concurrency", change.max_concurrency),
            ("cps", change.cps),
            ("max_concurrency_ceiling", change.max_concurrency_ceiling),
            ("cps_ceiling", change.cps_ceiling),
        )
        if value is not None and not value > 0
    ]
    if problems:
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidOptionError(message, problems)
    if change.max_concurrency_ceiling is not None:
        account.max_concurrency_ceiling = change.max_concurrency_ceiling
    if change.cps_ceiling is not None:
        account.cps_ceiling = change.cps_ceiling
    ceilings = account_ceilings(account, defaults)
    above = [
        {"field": field, "message": f"at most {ceiling:g}, the ceiling the operator set"}
        for field, value, ceiling in (
            ("max_concurrency", change.max_concurrency, ceilings.max_concurrency),
            ("cps", change.cps, ceilings.cps),
        )
        if value is not None and value > ceiling
    ]
    if above:
        message = "; ".join(f"{p['field']}: {p['message']}" for p in above)
        raise DialerError("above_ceiling", message, above)
    webhook_url = change.webhook_url
    if webhook_url:
        webhook_url = check_webhook_url(webhook_url, allow_private=allow_private)
    max_concurrency = min(
        change.max_concurrency or account.max_concurrency, ceilings.max_concurrency
    )
    cps = min(change.cps or account.cps, ceilings.cps)
    if max_concurrency != account.max_concurrency or change.max_concurrency is not None:
        account.max_concurrency = max_concurrency
        # The standing campaigns of single calls are capped only by the account.
        session.execute(
            update(Campaign)
            .where(Campaign.account_id == account.id, Campaign.standing)
            .values(max_concurrency=max_concurrency)
        )
        session.execute(
            update(Campaign)
            .where(Campaign.account_id == account.id, Campaign.max_concurrency > max_concurrency)
            .values(max_concurrency=max_concurrency)
        )
    if cps != account.cps:
        account.cps = cps
        session.execute(
            update(Campaign)
            .where(Campaign.account_id == account.id, Campaign.cps > cps)
            .values(cps=cps)
        )
    if change.frequency_caps is not None:
        account.frequency_caps = change.frequency_caps.stored()
    if webhook_url is not None:
        account.webhook_url = webhook_url or None
    if change.rest_flagged_numbers is not None:
        account.rest_flagged_numbers = change.rest_flagged_numbers
    session.flush()
    return account


def account_json(session: Session, account: Account, defaults: Ceilings) -> dict[str, object]:
    """The account as `accounts show --json` and `GET /v1/account` give it, with the
    ceilings that bound its caps (`account_ceilings`)."""
    ceilings = account_ceilings(account, defaults)
    return {
        "name": account.name,
        "max_concurrency": account.max_concurrency,
        "max_concurrency_ceiling": ceilings.max_concurrency,
        "cps": account.cps,
        "cps_ceiling": ceilings.cps,
        "frequency_caps": account.frequency_caps,
        "webhook_url": account.webhook_url,
        "rest_flagged_numbers": account.rest_flagged_numbers,
        "numbers": [number_json(n) for n in list_numbers(session, account.id).items],
        "created_at": account.created_at,
    }


# ---- API keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    """A new API key: `key` is shown once and never stored."""

    id: int
    name: str
    key: str


def create_api_key(session: Session, account: Account, name: str) -> IssuedKey:
    """Issue a new named key for `account`: `dk_` + 43 random URL-safe characters.

    Raises:
        DialerError: `invalid_key_name` (blank or longer than 100 characters).
    """
    if not name.strip() or len(name) > 100:
        raise DialerError("invalid_key_name", "a key name is 1-100 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        account_id=account.id, name=name, key_hash=hash_api_key(key), prefix=key[:_SHOWN_PREFIX]
    )
    session.add(row)
    session.flush()
    return IssuedKey(row.id, name, key)


def list_api_keys(session: Session, account_id: int | None = None) -> list[ApiKey]:
    """Keys by id, of one account or of all; revoked ones included."""
    query = select(ApiKey).order_by(ApiKey.id)
    if account_id is not None:
        query = query.where(ApiKey.account_id == account_id)
    return list(session.scalars(query))


def revoke_api_key(session: Session, key_id: int) -> ApiKey:
    """Revoke key `key_id` at once (again: no change).

    Raises:
        NotFoundError: `api_key_not_found`.
    """
    key = session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFoundError("api_key_not_found", f"no API key {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def authenticate(session: Session, api_key: str) -> tuple[Account, ApiKey]:
    """The account and key row of `api_key`; notes the key's use (to the minute).

    Raises:
        UnauthenticatedError: `unknown_api_key` (no such key), `revoked_api_key`.
    """
    row = session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(api_key))
    ).one_or_none()
    if row is None:
        raise UnauthenticatedError("unknown_api_key", "no account has this API key")
    if row.revoked_at is not None:
        raise UnauthenticatedError("revoked_api_key", f"API key {row.name!r} was revoked")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_RESOLUTION:
        row.last_used_at = now
    return session.get_one(Account, row.account_id), row


# ---- caller IDs ----------------------------------------------------------------------------


def _e164(number: str) -> str:
    try:
        return normalize(number, "US")
    except NumberRejected as error:
        raise DialerError(
            "invalid_phone_format", f"{number!r} is not a phone number in E.164 (+14155550100)"
        ) from error


def list_numbers(
    session: Session, account_id: int, *, limit: int | None = None, cursor: str | None = None
) -> Page[CallerId]:
    """The account's caller IDs in the order they were added, a page at a time
    (`campaigns.paging.keyset_page`: raises `invalid_cursor`)."""
    query = select(CallerId).where(CallerId.account_id == account_id)
    return keyset_page(session, query, "numbers", [CallerId.id], limit=limit, cursor=cursor)


def number_json(number: CallerId) -> dict[str, object]:
    """A caller ID as the CLI and the API show it."""
    return {
        "number": number.e164,
        "outbound": number.outbound,
        "max_concurrency": number.max_concurrency,
        "max_calls_per_minute": number.max_calls_per_minute,
        "max_calls_per_day": number.max_calls_per_day,
        "rested_at": number.rested_at,
        "rested_reason": number.rested_reason,
        "created_at": number.created_at,
    }


DEFAULT_CALLS_PER_MINUTE = 10
"""Calls a new caller ID may present in any minute: carriers' analytics flag a number at
roughly more than 10 calls a minute (vendor guidance cited in issue 22)."""
DEFAULT_CALLS_PER_DAY = 100
"""Calls a new caller ID may present in any 24 hours: carriers flag a number at roughly
more than 100 a day (the same guidance)."""


def find_number(session: Session, account_id: int, number: str) -> CallerId:
    """The account's caller ID `number`.

    Raises:
        DialerError: `invalid_phone_format`.
        NotFoundError: `number_not_found`.
    """
    e164 = _e164(number)
    caller_id = session.scalars(
        select(CallerId).where(CallerId.account_id == account_id, CallerId.e164 == e164)
    ).one_or_none()
    if caller_id is None:
        raise NotFoundError("number_not_found", f"{e164} is not one of the account's numbers")
    return caller_id


class Keep(Enum):
    """A setting left out of a request: it keeps its stored value."""

    KEEP = "keep"


KEEP = Keep.KEEP


def save_number(
    session: Session,
    account_id: int,
    number: str,
    *,
    outbound: bool | Keep = KEEP,
    max_concurrency: int | Keep | None = KEEP,
    max_calls_per_minute: int | Keep | None = KEEP,
    max_calls_per_day: int | Keep | None = KEEP,
    rested: bool | Keep = KEEP,
    provider: TelephonyProvider,
    actor: str,
) -> tuple[CallerId, bool]:
    """Add caller ID `number` to the account, or change its settings; returns it and
    whether it is new. A setting given as `KEEP` (left out of the request) keeps its stored
    value (a new number: outbound, no concurrency cap, `DEFAULT_CALLS_PER_MINUTE` and
    `DEFAULT_CALLS_PER_DAY`); None clears a cap or limit. `rested=True` rests the number
    (caller-ID selection skips it) as done by `actor`; False puts a rested number back in
    use. A new
    number must be one the provider account owns or verified
    (`TelephonyProvider.owns_caller_id`) and no other account's: the provider account is
    shared by every tenant, so its say does not tell whose the number is.

    Turning `outbound` off pauses the running campaigns that present the number (single
    calls' standing campaigns too), recorded as done by `actor` with the reason: no call
    leaves from it until it is enabled again and they are resumed (`lifecycle.resume`
    refuses while it is off). A dial already handed to a worker is dropped there, as for
    any pause.

    Raises:
        DialerError: `invalid_phone_format`, `invalid_option` (`max_concurrency` not
            positive), `caller_id_not_verified`.
        ConflictError: `number_taken`, another account has the number.
        ProviderFailedError: `provider_error`, the provider could not be asked.
    """
    e164 = _e164(number)
    problems = [
        {"field": field, "message": "must be greater than 0"}
        for field, value in (
            ("max_concurrency", max_concurrency),
            ("max_calls_per_minute", max_calls_per_minute),
            ("max_calls_per_day", max_calls_per_day),
        )
        if isinstance(value, int) and value <= 0
    ]
    if problems:
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidOptionError(message, problems)
    caller_id = session.scalars(
        select(CallerId)
        .where(CallerId.account_id == account_id, CallerId.e164 == e164)
        .with_for_update()
    ).one_or_none()
    created = caller_id is None
    if caller_id is None:
        _refuse_taken(session, account_id, e164)
        try:
            verified = provider.owns_caller_id(e164)
        except ProviderError as error:
            message = f"could not check {e164} with the provider: {error}"
            raise ProviderFailedError(message) from error
        if not verified:
            raise DialerError(
                "caller_id_not_verified",
                f"the provider account neither owns nor verified {e164} "
                "(IncomingPhoneNumbers, OutgoingCallerIds)",
            )
        caller_id = CallerId(
            account_id=account_id,
            e164=e164,
            outbound=True,
            max_calls_per_minute=DEFAULT_CALLS_PER_MINUTE,
            max_calls_per_day=DEFAULT_CALLS_PER_DAY,
        )
        session.add(caller_id)
    was_outbound = caller_id.outbound
    if not isinstance(outbound, Keep):
        caller_id.outbound = outbound
    if not isinstance(max_concurrency, Keep):
        caller_id.max_concurrency = max_concurrency
    if not isinstance(max_calls_per_minute, Keep):
        caller_id.max_calls_per_minute = max_calls_per_minute
    if not isinstance(max_calls_per_day, Keep):
        caller_id.max_calls_per_day = max_calls_per_day
    if rested is True and caller_id.rested_at is None:
        caller_id.rested_at, caller_id.rested_reason = utcnow(), f"rested by {actor}"
    elif rested is False:
        caller_id.rested_at = caller_id.rested_reason = None
    session.flush()
    if was_outbound and not caller_id.outbound:
        _pause_presenting(session, caller_id, actor)
    return caller_id, created


_CALLER_ID_LOCK = 0x63616C6C  # "call"
"""First key of the advisory lock that serialises adding one number (its E.164's hash)."""


def _refuse_taken(session: Session, account_id: int, e164: str) -> None:
    """Raise `number_taken` when another account has `e164` (`uq_caller_ids_e164` holds it
    too; the lock makes two accounts adding the number at once see each other, so the
    loser gets this answer rather than a constraint violation)."""
    if e164 == SHARED_TEST_CALLER_ID:
        return
    session.execute(select(func.pg_advisory_xact_lock(_CALLER_ID_LOCK, func.hashtext(e164))))
    taken = session.scalar(
        select(exists().where(CallerId.e164 == e164, CallerId.account_id != account_id))
    )
    if taken:
        raise ConflictError("number_taken", f"{e164} is another account's caller ID")


def _pause_presenting(session: Session, caller_id: CallerId, actor: str) -> None:
    """Pause the running campaigns that present `caller_id` (no longer outbound) and no
    other outbound number of their pool."""
    running = session.scalars(
        select(Campaign)
        .where(presenting(caller_id), Campaign.status == CampaignStatus.RUNNING)
        .order_by(Campaign.id)
        .with_for_update()
    )
    reason = f"caller ID {caller_id.e164} was disabled for outbound calls"
    for campaign in running:
        if not _outbound_in_pool(session, campaign):
            transition(campaign, CampaignAction.PAUSE, actor=actor, reason=reason)


def _outbound_in_pool(session: Session, campaign: Campaign) -> bool:
    pool = [campaign.caller_id_id, *campaign.pool_caller_ids]
    return bool(session.scalar(select(exists().where(CallerId.id.in_(pool), CallerId.outbound))))


def require_outbound(session: Session, campaign: Campaign) -> None:
    """Refuse to start or resume `campaign` while no number of its caller-ID pool is
    enabled for outbound calls.

    Raises:
        ConflictError: `caller_id_not_outbound`.
    """
    if not _outbound_in_pool(session, campaign):
        caller_id = session.get_one(CallerId, campaign.caller_id_id)
        raise ConflictError(
            "caller_id_not_outbound",
            f"campaign {campaign.id} presents {caller_id.e164}, which is disabled for "
            "outbound calls (enable it: numbers add NUMBER --outbound)",
        )


def remove_number(session: Session, account_id: int, number: str) -> None:
    """Remove caller ID `number` from the account.

    Raises:
        NotFoundError: `number_not_found`.
        ConflictError: `number_in_use`, a campaign presents it (disable it for outbound
            calls instead).
    """
    caller_id = find_number(session, account_id, number)
    used = session.scalars(
        select(Campaign.id).where(presenting(caller_id)).order_by(Campaign.id)
    ).all()
    if used:
        raise ConflictError(
            "number_in_use",
            f"{caller_id.e164} is the caller ID of campaigns {list(used)}; "
            "disable it for outbound calls instead",
        )
    session.delete(caller_id)
    session.flush()


def outbound_pool(session: Session, account_id: int, numbers: list[str]) -> list[CallerId]:
    """The caller IDs of a caller-ID pool, in the order given: each must be the account's
    and enabled for outbound calls, and given once.

    Raises:
        DialerError: `invalid_phone_format`; `from_number_not_found` (one that is not the
            account's, or not enabled for outbound; `details` names each).
        InvalidOptionError: `invalid_option`, an empty pool or a number given twice.
    """
    e164s = [_e164(n) for n in numbers]
    twice = sorted({e for e in e164s if e164s.count(e) > 1})
    if not e164s or twice:
        problem = {"field": "caller_id_pool", "message": f"given twice: {', '.join(twice)}"}
        if not e164s:
            problem["message"] = "no number"
        raise InvalidOptionError(f"caller_id_pool: {problem['message']}", [problem])
    found = {
        c.e164: c
        for c in session.scalars(
            select(CallerId).where(
                CallerId.account_id == account_id, CallerId.outbound, CallerId.e164.in_(e164s)
            )
        )
    }
    missing = [e for e in e164s if e not in found]
    if missing:
        raise DialerError(
            "from_number_not_found",
            f"{', '.join(missing)} not among the account's numbers enabled for outbound calls",
            [{"field": "caller_id_pool", "message": f"{e}: not usable"} for e in missing],
        )
    return [found[e] for e in e164s]


def presenting(caller_id: CallerId) -> ColumnElement[bool]:
    """SQL: the campaign presents `caller_id` (its first number, or one of its pool)."""
    return (Campaign.caller_id_id == caller_id.id) | Campaign.pool_caller_ids.contains(
        [caller_id.id]
    )


def outbound_number(session: Session, account_id: int, number: str | None) -> CallerId:
    """The caller ID to present: `number` when the account has it enabled for outbound
    calls, else (None) the account's first outbound number in the order they were added.

    Raises:
        DialerError: `invalid_phone_format`; `from_number_not_found` (not the account's,
            or not enabled for outbound); `no_outbound_number` (none given, none enabled).
    """
    query = select(CallerId).where(CallerId.account_id == account_id, CallerId.outbound)
    if number is None:
        first = session.scalars(query.order_by(CallerId.id).limit(1)).first()
        if first is None:
            raise DialerError(
                "no_outbound_number",
                "the account has no number enabled for outbound calls (dialer numbers add)",
            )
        return first
    e164 = _e164(number)
    caller_id = session.scalars(query.where(CallerId.e164 == e164)).one_or_none()
    if caller_id is None:
        raise DialerError(
            "from_number_not_found",
            f"{e164} is not one of the account's numbers enabled for outbound calls",
        )
    return caller_id
