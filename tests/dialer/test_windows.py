"""The window engine: each contact in its own local time, the legal guard, DST days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import phonenumbers
import pytest
from phonenumbers import geocoder

from dialer.errors import InvalidWindowError
from dialer.windows import (
    NANP_AREA_CODES,
    CallingWindow,
    ContactSchedule,
    Place,
    is_open,
    legal_hours,
    next_opening,
    parse_days,
    parse_window,
    subdivision_of,
)

NY = Place(("America/New_York",), "US")
LA = Place(("America/Los_Angeles",), "US")
LONDON = Place(("Europe/London",), "GB")
SYDNEY = Place(("Australia/Sydney",), "AU")
DEFAULT = CallingWindow()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("place", "night", "opens"),
    [
        # 2027-01-15 is a Friday; winter in the north, summer (AEDT, UTC+11) in Sydney.
        (NY, utc(2027, 1, 15, 5), utc(2027, 1, 15, 14)),  # 00:00 -> 09:00 EST
        (LA, utc(2027, 1, 15, 5), utc(2027, 1, 15, 17)),  # 21:00 -> 09:00 PST
        (LONDON, utc(2027, 1, 15, 5), utc(2027, 1, 15, 9)),  # 05:00 -> 09:00 GMT
        (SYDNEY, utc(2027, 1, 15, 10), utc(2027, 1, 15, 22)),  # 21:00 -> 09:00 AEDT
    ],
)
def test_each_zone_opens_at_its_own_nine(place: Place, night: datetime, opens: datetime) -> None:
    assert not is_open(DEFAULT, place, night)
    first = next_opening(DEFAULT, place, night)
    assert first == opens
    assert not is_open(DEFAULT, place, opens - timedelta(seconds=1))
    assert is_open(DEFAULT, place, opens)
    closes = opens + timedelta(hours=11)
    assert is_open(DEFAULT, place, closes - timedelta(seconds=1))
    assert not is_open(DEFAULT, place, closes)
    assert next_opening(DEFAULT, place, opens + timedelta(hours=1)) == opens + timedelta(hours=1)


def test_several_zones_follow_the_strictest() -> None:
    both = Place(("America/New_York", "America/Los_Angeles"), "US")
    # Open only when 09:00-20:00 in both: 09:00 Los Angeles (12:00 New York) to 20:00 New
    # York (17:00 Los Angeles).
    assert next_opening(DEFAULT, both, utc(2027, 1, 15, 5)) == utc(2027, 1, 15, 17)
    assert not is_open(DEFAULT, both, utc(2027, 1, 15, 16, 59, 59))
    assert is_open(DEFAULT, both, utc(2027, 1, 15, 17))
    assert not is_open(DEFAULT, both, utc(2027, 1, 16, 1))  # 20:00 New York
    # After it closes, the next opening is the next day's.
    assert next_opening(DEFAULT, both, utc(2027, 1, 16, 1)) == utc(2027, 1, 16, 17)


def test_zones_that_never_share_an_open_moment_never_open() -> None:
    apart = Place(("America/Los_Angeles", "Asia/Dubai"), None)  # 12 hours apart
    assert next_opening(DEFAULT, apart, utc(2027, 1, 15)) is None


def test_the_legal_guard_holds_whatever_the_window() -> None:
    # A window can only be given inside 08:00-21:00...
    for text in ("07:59-20:00", "08:00-21:01", "00:00-24:00"):
        with pytest.raises(InvalidWindowError) as caught:
            parse_window(text)
        assert caught.value.code == "window_outside_legal_hours"
    assert parse_window("08:00-21:00") == (time(8), time(21))
    # ...and even a window built around the parser is clipped to it.
    wide = CallingWindow(start=time(0), end=time(23, 59, 59))
    assert next_opening(wide, NY, utc(2027, 1, 15, 5)) == utc(2027, 1, 15, 13)  # 08:00 EST
    assert not is_open(wide, NY, utc(2027, 1, 16, 2))  # 21:00 EST


def test_florida_stops_at_eight_pm() -> None:
    assert subdivision_of("+13055550143", "US") == "FL"
    assert subdivision_of("+12125550143", "US") is None
    florida = Place(("America/New_York",), "US", "FL")
    assert legal_hours("US", "FL") == (time(8), time(20))
    late = CallingWindow(start=time(9), end=time(21))
    assert is_open(late, NY, utc(2027, 1, 16, 1, 30))  # 20:30 in New York
    assert not is_open(late, florida, utc(2027, 1, 16, 1, 30))  # 20:30 in Miami
    assert not is_open(late, florida, utc(2027, 1, 16, 1))  # 20:00 in Miami
    assert is_open(late, florida, utc(2027, 1, 16, 0, 59, 59))


@pytest.mark.parametrize(("area_code", "state"), sorted(NANP_AREA_CODES.items()))
def test_the_area_code_table_agrees_with_libphonenumber(area_code: str, state: str) -> None:
    names = {"FL": "Florida", "OK": "Oklahoma", "MD": "Maryland"}
    number = phonenumbers.parse(f"+1{area_code}2345678")
    where = geocoder.description_for_number(number, "en")
    assert where == names[state] or where.endswith(f", {state}")


def test_spring_forward_and_fall_back() -> None:
    # New York: clocks go forward on 2027-03-14 and back on 2027-11-07.
    assert next_opening(DEFAULT, NY, utc(2027, 3, 14, 5)) == utc(2027, 3, 14, 13)  # 09:00 EDT
    assert not is_open(DEFAULT, NY, utc(2027, 3, 15, 0))  # 20:00 EDT
    assert next_opening(DEFAULT, NY, utc(2027, 11, 7, 5)) == utc(2027, 11, 7, 14)  # 09:00 EST
    assert is_open(DEFAULT, NY, utc(2027, 11, 8, 0, 59))  # 19:59 EST
    # London: forward on 2027-03-28; Sydney back on 2027-04-04 (AEDT to AEST).
    assert next_opening(DEFAULT, LONDON, utc(2027, 3, 28, 0)) == utc(2027, 3, 28, 8)
    assert next_opening(DEFAULT, SYDNEY, utc(2027, 4, 3, 23)) == utc(2027, 4, 3, 23)  # 09:00 AEST


def test_days_and_holidays() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("mon,wed,sat") == frozenset({0, 2, 5})
    assert parse_days("sat-mon") == frozenset({5, 6, 0})
    with pytest.raises(InvalidWindowError) as caught:
        parse_days("monday")
    assert caught.value.code == "invalid_days"
    weekdays = CallingWindow(days=parse_days("mon-fri"), holidays=frozenset({date(2027, 1, 18)}))
    # Friday 20:00 in New York: next is Tuesday (Monday the 18th is a holiday).
    assert next_opening(weekdays, NY, utc(2027, 1, 16, 1)) == utc(2027, 1, 19, 14)
    public = CallingWindow(skip_public_holidays=True)
    # 2027-01-18 is Martin Luther King Jr. Day in the US, not in Britain.
    assert next_opening(public, NY, utc(2027, 1, 18, 5)) == utc(2027, 1, 19, 14)
    assert next_opening(public, LONDON, utc(2027, 1, 18, 5)) == utc(2027, 1, 18, 9)


def test_a_bad_window_is_refused_with_its_code() -> None:
    for text, code in [("9-5", "invalid_window"), ("20:00-09:00", "invalid_window")]:
        with pytest.raises(InvalidWindowError) as caught:
            parse_window(text)
        assert caught.value.code == code


def test_call_before_caps_the_due_time() -> None:
    schedule = ContactSchedule(DEFAULT, NY, call_before=utc(2027, 1, 15, 12))
    # Next opening 14:00 UTC is after the appointment: due at call_before, to be expired.
    assert schedule.next_due(utc(2027, 1, 15, 3)) == utc(2027, 1, 15, 12)
    assert not schedule.callable_at(utc(2027, 1, 15, 15))
    open_until = ContactSchedule(DEFAULT, NY, call_before=utc(2027, 1, 15, 15))
    assert open_until.callable_at(utc(2027, 1, 15, 14, 59, 59))
    assert not open_until.callable_at(utc(2027, 1, 15, 15))
