"""Caller-ID pools: which numbers of a contact's pool a call may present, in which order.

A campaign (or a single call) presents a pool of the account's numbers; each dial presents
one, chosen in this order (issue 22, after Twilio's "Maintaining a Positive Caller
Reputation": present the same caller ID when calling a person again; local presence):

1. sticky: the number the contact was last called from by any campaign or single call of
   the account, when it is in the pool and usable;
2. local: the pool's numbers with the contact's geographic area code, then those of its
   region (same country and same region in `phonenumbers`' geocoding, e.g. the state);
3. the least used of the rest: fewest live calls plus calls in the last day, counted by
   the pool's admission as it takes them (`acquire.lua`), which also skips any number at
   its concurrency cap or its minute's or day's limit.

A usable number is enabled for outbound calls and not rested (`CallerId.rested_at`).

Cost on the pacer's round: one query loads the round's pools (`caller_ids` by primary key),
one reads the sticky numbers of the round's contacts whose pool has more than one number
(`ix_call_attempts_number`: one index range per contact, in one statement); a contact's
and a number's place (country, area code, region) is parsed once per process
(`locality`, cached). A pool of one number costs neither query. The choice among the
candidates runs inside the admission script, per caller ID a few O(log n) reads per round.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

import holidays
import phonenumbers
from phonenumbers import geocoder
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from models import CallAttempt, CallerId, CallJob, Campaign


@dataclass(frozen=True, slots=True)
class Locality:
    """Where a number is, for local presence: its country calling code, its geographic area
    code (None: not geographic) and its region (None: unknown)."""

    country: int
    area_code: str | None
    region: str | None


@lru_cache(maxsize=65536)
def locality(e164: str) -> Locality | None:
    """Where `e164` is (None: not a number `phonenumbers` parses). The region is the last
    part of `phonenumbers`' English geocoding ("San Francisco, CA" -> "CA"), a subdivision's
    name mapped to its code where the `holidays` package knows the country's
    ("California" -> "CA"), so a city and its state compare equal."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return None
    length = phonenumbers.length_of_geographical_area_code(number)
    national = phonenumbers.national_significant_number(number)
    area = national[:length] if length else None
    described = geocoder.description_for_number(number, "en")
    region = described.rsplit(", ", 1)[-1] if described else None
    country = phonenumbers.region_code_for_number(number)
    if region and country:
        region = _subdivision_codes(country).get(region, region)
    return Locality(number.country_code or 0, area, region or None)


@lru_cache(maxsize=256)
def _subdivision_codes(country: str) -> dict[str, str]:
    """The `holidays` package's subdivision names of `country` -> their codes (empty for a
    country it does not know)."""
    try:
        aliases = getattr(holidays.country_holidays(country), "subdivisions_aliases", {})
    except NotImplementedError:
        return {}
    return dict(aliases) if isinstance(aliases, dict) else {}


def pool_ids(campaign: Campaign, job: CallJob) -> list[int]:
    """The ids of the numbers `job`'s contact may be called from, in the pool's order: its
    own pool (a single call's), else its campaign's."""
    return job.pool_caller_ids or [campaign.caller_id_id, *campaign.pool_caller_ids]


def usable_numbers(session: Session, ids: Iterable[int]) -> dict[int, CallerId]:
    """The numbers of `ids` that may be presented now (outbound, not rested), by id."""
    wanted = set(ids)
    if not wanted:
        return {}
    return {
        c.id: c
        for c in session.scalars(
            select(CallerId).where(
                CallerId.id.in_(wanted), CallerId.outbound, CallerId.rested_at.is_(None)
            )
        )
    }


def last_caller_ids(session: Session, account_id: int, phones: Collection[str]) -> dict[str, str]:
    """Per contact number of `phones`: the number it was last called from by any campaign
    or single call of the account (attempts' `from_e164`, newest first)."""
    if not phones:
        return {}
    rows = session.execute(
        select(CallAttempt.phone_e164, CallAttempt.from_e164)
        .where(CallAttempt.account_id == account_id, CallAttempt.phone_e164.in_(set(phones)))
        .ext(distinct_on(CallAttempt.phone_e164))
        .order_by(CallAttempt.phone_e164, CallAttempt.created_at.desc(), CallAttempt.id.desc())
    )
    return {phone: from_e164 for phone, from_e164 in rows}


def candidates(
    pool: list[CallerId], contact: str, last_from: str | None
) -> tuple[list[CallerId], int]:
    """`pool`'s numbers in the order selection tries them for a call to `contact`, and how
    many of them are preferred (tried in order; the rest go to the least used): the number
    last presented to the contact (`last_from`) when in the pool, then those with the
    contact's area code, then those of its region."""
    preferred = [c for c in pool if c.e164 == last_from]
    place = locality(contact)
    if place is not None and len(pool) > 1:
        places = [(number, locality(number.e164)) for number in pool]
        nearby = [(n, p) for n, p in places if p is not None and p.country == place.country]
        for number, where in nearby:
            if where.area_code is not None and where.area_code == place.area_code:
                preferred.append(number)
        for number, where in nearby:
            if where.region is not None and where.region == place.region:
                preferred.append(number)
        preferred = list(dict.fromkeys(preferred))
    rest = [c for c in pool if c not in preferred]
    return preferred + rest, len(preferred)
