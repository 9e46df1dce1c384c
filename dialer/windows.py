"""Calling windows: when a contact may be called, in the contact's own local time.

Pure and cheap: nothing here touches the database. A contact is callable at an instant
when, in **every** one of its time zones (a number can map to several; the strictest
reading wins), the local day is one of the campaign's days, is not one of its holidays (nor
a public holiday of the contact's country when the campaign skips them), and the local time
is inside both the campaign's window and the legal hours of the contact's place.

The legal hours are a floor no setting loosens: one table, `LEGAL_HOURS`, each row with its
source. The first row applies everywhere (the US TCPA's 08:00-21:00); a stricter row
applies to the places it names, recognised from the number (`subdivision_of`). Times are
computed with `zoneinfo`, so a window is the same wall-clock hours on the days clocks
change (a 09:00-20:00 window is 11 hours long on both DST days).

`next_opening` is what the pacer stores (as the contact's due time in UTC), so that
claiming stays one indexed range query whatever the number of contacts waiting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as public_holidays

from dialer.errors import InvalidWindowError
from models import Campaign

__all__ = [
    "LEGAL_HOURS",
    "WEEKDAYS",
    "CallingWindow",
    "ContactSchedule",
    "LegalHours",
    "Place",
    "daytime_zone",
    "is_open",
    "known_zone",
    "legal_hours",
    "next_opening",
    "parse_days",
    "parse_window",
    "subdivision_of",
    "zone",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as `--days` takes them; the index is `date.weekday()` (Monday 0)."""

HORIZON = timedelta(days=400)
"""How far ahead `next_opening` looks before it concludes a contact never opens (past a
year, so a campaign's holidays and every public holiday have been stepped over)."""


@dataclass(frozen=True, slots=True)
class LegalHours:
    """Local hours within which calls to a place are lawful, and the rule that says so.

    `country` is ISO 3166-1 alpha-2 ("*": everywhere), `subdivision` ISO 3166-2's part
    after the dash ("FL"), or None for the whole country."""

    country: str
    subdivision: str | None
    start: time
    end: time
    source: str


LEGAL_HOURS: tuple[LegalHours, ...] = (
    LegalHours(
        "*",
        None,
        time(8),
        time(21),
        "US TCPA, 47 CFR 64.1200(c)(1): no telephone solicitation before 8 a.m. or after "
        "9 p.m. at the called party's location (applied to every contact, in every country)",
    ),
    LegalHours(
        "US",
        "FL",
        time(8),
        time(20),
        "Florida Telephone Solicitation Act, Fla. Stat. 501.059(8)(a): not before 8 a.m. "
        "or after 8 p.m. at the called party's location",
    ),
    LegalHours(
        "US",
        "OK",
        time(8),
        time(20),
        "Oklahoma Telephone Solicitation Act of 2022, 15 O.S. 775C.4: not before 8 a.m. "
        "or after 8 p.m. at the called party's location",
    ),
    LegalHours(
        "US",
        "MD",
        time(8),
        time(20),
        "Maryland Stop the Spam Calls Act of 2023, Md. Code, Com. Law 14-4503: not before "
        "8 a.m. or after 8 p.m. at the called party's location",
    ),
)
"""The legal guard: the first row everywhere, each other row where its place is."""

_FLORIDA = (
    "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863 904 941 954"
)
_OKLAHOMA = "405 539 572 580 918"
_MARYLAND = "227 240 301 410 443 667"
NANP_AREA_CODES: dict[str, str] = {
    code: state
    for codes, state in ((_FLORIDA, "FL"), (_OKLAHOMA, "OK"), (_MARYLAND, "MD"))
    for code in codes.split()
}
"""US area codes of the states with a stricter row in `LEGAL_HOURS` (NANPA, "Area Code
Map" and planning letters at nationalnanpa.com, 2025; overlays included). A call to such an
area code is taken as a call to that state: Fla. Stat. 501.059(1)(j) presumes a number
with a Florida area code is a Florida resident's. `tests/dialer/test_windows.py` checks
each against libphonenumber's geocoder."""


def legal_hours(country: str | None, subdivision: str | None) -> tuple[time, time]:
    """The strictest lawful local hours for a place: (latest start, earliest end) over
    the `LEGAL_HOURS` rows that apply to it."""
    return _legal_hours(country, subdivision)


@lru_cache(maxsize=256)
def _legal_hours(country: str | None, subdivision: str | None) -> tuple[time, time]:
    rows = [
        row
        for row in LEGAL_HOURS
        if row.country == "*" or (row.country == country and row.subdivision in (None, subdivision))
    ]
    return max(row.start for row in rows), min(row.end for row in rows)


BASE_LEGAL_HOURS = legal_hours(None, None)
"""The guard that holds everywhere (08:00-21:00): a campaign window outside it is refused."""


@dataclass(frozen=True, slots=True)
class Place:
    """Where a contact is, as far as windows care: its IANA zones (all of them must be
    open), its country (ISO 3166-1 alpha-2, for public holidays and legal hours) and its
    subdivision where a stricter legal row may apply ("FL")."""

    zones: tuple[str, ...]
    country: str | None = None
    subdivision: str | None = None


def subdivision_of(e164: str, region: str | None) -> str | None:
    """The state of a US number whose area code is in `NANP_AREA_CODES`, else None."""
    return NANP_AREA_CODES.get(e164[2:5]) if region == "US" else None


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """A campaign's calling window: local hours [`start`, `end`), the weekdays (Monday 0)
    it applies on, dates never called, and whether the contact's country's public
    holidays are skipped."""

    start: time = time(9)
    end: time = time(20)
    days: frozenset[int] = frozenset(range(7))
    holidays: frozenset[date] = field(default_factory=frozenset)
    skip_public_holidays: bool = False

    @classmethod
    def of(cls, campaign: Campaign) -> CallingWindow:
        """The window of a campaign, from its columns."""
        return cls(
            campaign.window_start,
            campaign.window_end,
            frozenset(campaign.window_days),
            frozenset(campaign.holidays or ()),
            campaign.skip_public_holidays,
        )


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`.

    Raises:
        InvalidWindowError: `invalid_timezone`, no such zone.
    """
    found = known_zone(name)
    if found is None:
        raise InvalidWindowError("invalid_timezone", f"{name!r} is not an IANA time zone")
    return found


@lru_cache(maxsize=1024)
def known_zone(name: str) -> ZoneInfo | None:
    """The IANA zone `name`, or None when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


_WINDOW = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)\s*$")


def parse_window(text: str) -> tuple[time, time]:
    """`"HH:MM-HH:MM"` as (start, end) local times; 24:00 is read as 23:59:59.

    Raises:
        InvalidWindowError: `invalid_window`, not that shape or not start < end (a window
            across midnight would be outside the legal hours anyway);
            `window_outside_legal_hours`, it starts before 08:00 or ends after 21:00.
    """
    match = _WINDOW.match(text)
    if match is None:
        raise InvalidWindowError("invalid_window", f"window {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = map(int, match.groups())
    start = time(h1, m1)
    end = time(23, 59, 59) if h2 == 24 else time(h2, m2)
    if (h2 == 24 and m2) or not start < end:
        raise InvalidWindowError("invalid_window", f"window {text!r} must start before it ends")
    low, high = BASE_LEGAL_HOURS
    if start < low or end > high:
        raise InvalidWindowError(
            "window_outside_legal_hours",
            f"window {text!r} is outside the lawful {low:%H:%M}-{high:%H:%M} local "
            f"({LEGAL_HOURS[0].source})",
        )
    return start, end


def parse_days(text: str) -> frozenset[int]:
    """`"mon-fri"`, `"mon,wed,sat"`, `"sat-mon"` (wrapping), or a mix, as weekday numbers
    (Monday 0).

    Raises:
        InvalidWindowError: `invalid_days`, an unknown day name or an empty list.
    """
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise InvalidWindowError(
                "invalid_days", f"days {text!r}: use names {','.join(WEEKDAYS)} and ranges"
            )
        a = WEEKDAYS.index(first)
        b = WEEKDAYS.index(last) if last else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


@lru_cache(maxsize=256)
def _public(country: str) -> Any:
    """The `holidays` package's calendar of `country`, or None when it has none."""
    try:
        return public_holidays.country_holidays(country)
    except NotImplementedError:
        return None


def _day_open(window: CallingWindow, country: str | None, day: date) -> bool:
    if day.weekday() not in window.days or day in window.holidays:
        return False
    if window.skip_public_holidays and country:
        calendar = _public(country)
        if calendar is not None and day in calendar:
            return False
    return True


def _hours(window: CallingWindow, place: Place) -> tuple[time, time]:
    low, high = legal_hours(place.country, place.subdivision)
    return max(window.start, low), min(window.end, high)


def is_open(window: CallingWindow, place: Place, now: datetime) -> bool:
    """True if `place` may be called at `now` (aware): open in every one of its zones."""
    start, end = _hours(window, place)
    for name in place.zones:
        local = now.astimezone(zone(name))
        if not (_day_open(window, place.country, local.date()) and start <= local.time() < end):
            return False
    return bool(place.zones)


def _interval(
    window: CallingWindow, place: Place, hours: tuple[time, time], name: str, moment: datetime
) -> tuple[datetime, datetime] | None:
    """The first open interval [start, end) of zone `name` that ends after `moment`, in
    UTC; None within `HORIZON`."""
    tz = zone(name)
    day = moment.astimezone(tz).date()
    last = day + HORIZON
    while day <= last:
        if _day_open(window, place.country, day):
            start = datetime.combine(day, hours[0], tz).astimezone(UTC)
            end = datetime.combine(day, hours[1], tz).astimezone(UTC)
            if end > moment:
                return start, end
        day += timedelta(days=1)
    return None


def next_opening(window: CallingWindow, place: Place, now: datetime) -> datetime | None:
    """The first instant at or after `now` at which `place` is callable (UTC), `now`
    itself when it is open; None when that does not happen within `HORIZON` (its zones
    never share an open moment, or every day is excluded)."""
    hours = _hours(window, place)
    moment = now.astimezone(UTC)
    limit = moment + HORIZON
    while moment <= limit:
        intervals = [_interval(window, place, hours, name, moment) for name in place.zones]
        if not intervals or any(i is None for i in intervals):
            return None
        opens = max(max(i[0] for i in intervals if i), moment)
        if all(opens < i[1] for i in intervals if i):
            return opens
        moment = opens
    return None


def daytime_zone(now: datetime) -> str:
    """An IANA zone (`Etc/GMT...`) where it is 13:00 or 13:xx at `now`: where fictional
    contacts (the demo's, the tests') live, so they are callable for the next ~7 hours."""
    offset = (13 - now.astimezone(UTC).hour + 12) % 24 - 12  # -12 .. +11 hours from UTC
    # POSIX sign: Etc/GMT-3 is three hours *ahead* of UTC.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@dataclass(frozen=True, slots=True)
class ContactSchedule:
    """What decides when one contact may be dialled: its campaign's window, its place and
    its own `call_before` (an aware instant, or None)."""

    window: CallingWindow
    place: Place
    call_before: datetime | None = None

    def next_due(self, earliest: datetime) -> datetime:
        """When the contact is next due if it may not be dialled before `earliest`: its
        next opening, or its `call_before` when that comes first or it never opens (the
        pacer then ends it `expired`)."""
        opening = next_opening(self.window, self.place, earliest)
        if self.call_before is not None and (opening is None or opening >= self.call_before):
            return max(self.call_before, earliest)
        return opening if opening is not None else earliest + HORIZON

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ContactSchedule:
        """From a raw SQL row with the campaign's window columns (`window_start`,
        `window_end`, `window_days`, `holidays`, `skip_public_holidays`) and the contact's
        (`zones`, `region`, `subdivision`, `call_before`)."""
        window = CallingWindow(
            row["window_start"],
            row["window_end"],
            frozenset(row["window_days"]),
            frozenset(row["holidays"] or ()),
            row["skip_public_holidays"],
        )
        place = Place(tuple(row["zones"]), row["region"], row["subdivision"])
        return cls(window, place, row["call_before"])

    def open_until(self, now: datetime) -> datetime:
        """When a contact callable at `now` stops being callable: the first of its zones'
        window ends and its `call_before`."""
        hours = _hours(self.window, self.place)
        ends = [
            interval[1]
            for name in self.place.zones
            if (interval := _interval(self.window, self.place, hours, name, now)) is not None
        ]
        if self.call_before is not None:
            ends.append(self.call_before)
        return min(ends, default=now)

    def callable_at(self, now: datetime) -> bool:
        """True if the contact may be dialled at `now`: inside its window, before its
        `call_before`."""
        if self.call_before is not None and now >= self.call_before:
            return False
        return is_open(self.window, self.place, now)
