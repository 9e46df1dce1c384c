"""E.164 normalisation: reject reasons, policy, time zones, and the NANP fast path's
equivalence with plain `phonenumbers`."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import timezone

from dialer import numbers
from dialer.numbers import NumberInfo, NumberRejected, RejectReason, classify, normalize

NANP_REGIONS = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1])


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("212.555.0143", "US", "+12125550143"),
        ("(212) 555-0143", "US", "+12125550143"),
        ("1-212-555-0143", "US", "+12125550143"),
        ("+1 212 555 0143", "GB", "+12125550143"),
        ("  2125550143 ", "CA", "+12125550143"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("011 44 20 7946 0958", "US", "+442079460958"),
        ("+1 416 555 0123", "US", "+14165550123"),
    ],
)
def test_normalize_accepts_national_and_international_formats(
    raw: str, region: str, e164: str
) -> None:
    assert normalize(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "US", RejectReason.MISSING_NUMBER),
        ("   ", "US", RejectReason.MISSING_NUMBER),
        ("n/a", "US", RejectReason.INVALID_NUMBER),
        ("555-0143", "US", RejectReason.INVALID_NUMBER),
        ("123 456 7890", "US", RejectReason.INVALID_NUMBER),
        ("+1 999 555 0143", "US", RejectReason.INVALID_NUMBER),
        ("+999", "US", RejectReason.INVALID_NUMBER),
        ("911", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("112", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("999", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("999", "GB", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("000", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("110", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("119", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("9-1-1", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("911 555 0143", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("311", "US", RejectReason.EMERGENCY_OR_SHORT_CODE),
        ("1-900-555-0143", "US", RejectReason.PREMIUM_RATE),
        ("09012345678", "GB", RejectReason.PREMIUM_RATE),
        ("08712345678", "GB", RejectReason.PREMIUM_RATE),
    ],
)
def test_normalize_rejects_with_a_stable_reason(
    raw: str, region: str, reason: RejectReason
) -> None:
    with pytest.raises(NumberRejected) as caught:
        normalize(raw, region)
    assert caught.value.reason is reason
    if reason is not RejectReason.PREMIUM_RATE:
        assert caught.value.number == raw


def test_shared_cost_counts_as_premium() -> None:
    info = classify("1300 123 456", "AU")
    assert info.number_type == phonenumbers.PhoneNumberType.SHARED_COST
    assert info.premium


def test_allow_premium() -> None:
    assert normalize("1-900-555-0143", "US", allow_premium=True) == "+19005550143"


def test_allowed_countries() -> None:
    allowed = frozenset({"US"})
    assert normalize("(212) 555-0143", "US", allowed_countries=allowed) == "+12125550143"
    with pytest.raises(NumberRejected) as caught:
        normalize("+1 416 555 0123", "US", allowed_countries=allowed)
    assert caught.value.reason is RejectReason.COUNTRY_NOT_ALLOWED
    with pytest.raises(NumberRejected):
        normalize("+44 20 7946 0958", "US", allowed_countries=allowed)


def test_reject_reasons_are_stable_codes() -> None:
    assert {reason.value for reason in RejectReason} == {
        "missing_number",
        "invalid_number",
        "emergency_or_short_code",
        "premium_rate",
        "country_not_allowed",
    }


def test_timezones_for() -> None:
    assert numbers.timezones_for("+12125550143") == ("America/New_York",)
    assert numbers.timezones_for("+442079460958") == ("Europe/London",)
    assert len(numbers.timezones_for("+18005550100")) > 1
    with pytest.raises(NumberRejected):
        numbers.timezones_for("+1999")


@given(digits=st.from_regex(r"[2-9][0-9]{9}", fullmatch=True))
@settings(max_examples=300)
@example(digits="2125550143")
@example(digits="8005550100")
@example(digits="9005550143")
@example(digits="4165550123")
@example(digits="7875550123")
def test_timezones_match_phonenumbers(digits: str) -> None:
    parsed = phonenumbers.parse("+1" + digits)
    expected = tuple(
        zone for zone in timezone.time_zones_for_number(parsed) if zone != "Etc/Unknown"
    )
    try:
        assert numbers.timezones_for("+1" + digits) == expected
    except NumberRejected:
        assert not phonenumbers.is_valid_number(parsed)


def _reference(raw: str, region: str) -> NumberInfo | RejectReason:
    """The slow path alone, uncached: `phonenumbers` parse, validate, format."""
    result: NumberInfo | RejectReason = numbers._classify_slow.__wrapped__(raw, region)
    return result


def _fast(raw: str, region: str) -> NumberInfo | RejectReason:
    try:
        return classify(raw, region)
    except NumberRejected as rejected:
        return rejected.reason


SEPARATOR = st.sampled_from(["", " ", "-", ".", "  "])
NANP_SHAPED = st.builds(
    lambda prefix, area, sep1, exchange, sep2, line, parens: (
        prefix + (f"({area})" if parens else area) + sep1 + exchange + sep2 + line
    ),
    prefix=st.sampled_from(["", "1", "1 ", "1-", "+1", "+1 ", "+1-", " ", "\t"]),
    area=st.from_regex(r"[0-9]{3}", fullmatch=True),
    sep1=SEPARATOR,
    exchange=st.from_regex(r"[0-9]{3}", fullmatch=True),
    sep2=SEPARATOR,
    line=st.from_regex(r"[0-9]{4}", fullmatch=True),
    parens=st.booleans(),
)


@given(raw=NANP_SHAPED, region=st.sampled_from([*NANP_REGIONS, "GB", "DE"]))
@settings(max_examples=1500)
@example(raw="(212) 555-0143", region="US")
@example(raw="911 555 0143", region="US")
@example(raw="+1 268 555 0123", region="US")
@example(raw="+1 809 555 0123", region="US")
@example(raw="1 (212)555-0143", region="PR")
def test_fast_path_gives_the_answers_of_phonenumbers(raw: str, region: str) -> None:
    assert _fast(raw, region) == _reference(raw, region)


@given(digits=st.from_regex(r"[2-9][0-9]{9}", fullmatch=True))
@settings(max_examples=1500)
def test_fast_path_e164_matches_phonenumbers_validity_and_type(digits: str) -> None:
    parsed = phonenumbers.parse("+1" + digits)
    result = _fast("+1" + digits, "US")
    if phonenumbers.is_valid_number(parsed):
        assert result == NumberInfo(
            "+1" + digits,
            str(phonenumbers.region_code_for_number(parsed)),
            phonenumbers.number_type(parsed),
            1,
        )
    else:
        assert result == RejectReason.INVALID_NUMBER


def test_fast_path_every_area_code() -> None:
    # One number per NANP area code and exchange class: each region and type branch.
    for area in range(200, 1000):
        for exchange in ("200", "555", "911", "976"):
            raw = f"+1{area}{exchange}0143"
            assert _fast(raw, "US") == _reference(raw, "US"), raw


@given(
    raw=st.from_regex(r"[ ]?[0-9]{5,17}[ ]?", fullmatch=True),
    region=st.sampled_from([*NANP_REGIONS, "GB"]),
)
@settings(max_examples=3000)
@example(raw="9115550", region="US")
@example(raw="1121234567", region="US")
@example(raw="11234567890", region="US")
@example(raw="119285106903", region="US")
@example(raw="3104321", region="CA")
@example(raw="01144207946095", region="US")
def test_digit_runs_give_the_answers_of_phonenumbers(raw: str, region: str) -> None:
    # The long-digit-run fast path: truncated, padded or unparseable exports.
    assert _fast(raw, region) == _reference(raw, region)


@given(raw=st.text(max_size=24), region=st.sampled_from(["US", "GB", "DE", "CA", "AU"]))
@settings(max_examples=500)
def test_classify_of_arbitrary_text_only_raises_number_rejected(raw: str, region: str) -> None:
    result = _fast(raw, region)
    assert result == _reference(raw, region)
    if isinstance(result, NumberInfo):
        assert phonenumbers.is_valid_number(phonenumbers.parse(result.e164))
