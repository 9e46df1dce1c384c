"""E.164 normalisation: reject reasons, policy, time zones, and the fast paths' equivalence
with plain `phonenumbers`."""

from __future__ import annotations

import random
from functools import cache

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType, shortnumberinfo, timezone

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


@cache
def _emergency_anywhere(digits: str) -> bool:
    return any(
        shortnumberinfo.is_emergency_number(digits, region)
        for region in shortnumberinfo.SUPPORTED_SHORT_REGIONS
    )


def _reference_parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _reference(raw: str, region: str) -> NumberInfo | RejectReason:
    """The rules of `dialer.numbers` in plain `phonenumbers` calls, none of its shortcuts:
    parse, `is_valid_number`, format; for an invalid number, `shortnumberinfo`'s emergency
    (any region, or connecting in `region`) and short-code answers."""
    text = raw.strip()
    if not text:
        return RejectReason.MISSING_NUMBER
    parsed = _reference_parse(text, region)
    valid = parsed if parsed is not None and phonenumbers.is_valid_number(parsed) else None
    if valid is None and text.startswith("00"):
        international = _reference_parse("+" + text[2:], region)
        if international is not None and phonenumbers.is_valid_number(international):
            valid = international
    if valid is not None:
        return NumberInfo(
            phonenumbers.format_number(valid, PhoneNumberFormat.E164),
            str(phonenumbers.region_code_for_number(valid)),
            phonenumbers.number_type(valid),
            valid.country_code,
        )
    if "+" in text:
        return RejectReason.INVALID_NUMBER
    digits = phonenumbers.normalize_digits_only(text)
    if (
        (digits and _emergency_anywhere(digits))
        or shortnumberinfo.connects_to_emergency_number(text, region)
        or (parsed is not None and shortnumberinfo.is_valid_short_number_for_region(parsed, region))
    ):
        return RejectReason.EMERGENCY_OR_SHORT_CODE
    return RejectReason.INVALID_NUMBER


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
    raw=st.from_regex(r"[ ]?[0-9]{1,19}[ ]?", fullmatch=True),
    region=st.sampled_from([*NANP_REGIONS, "GB"]),
)
@settings(max_examples=3000)
@example(raw="9115550", region="US")
@example(raw="1121234567", region="US")
@example(raw="11234567890", region="US")
@example(raw="119285106903", region="US")
@example(raw="3104321", region="CA")
@example(raw="01144207946095", region="US")
@example(raw="25143", region="US")
@example(raw="9110", region="US")
@example(raw="22", region="US")
@example(raw="2", region="CA")
@example(raw="999999999999999999", region="US")
def test_digit_runs_give_the_answers_of_phonenumbers(raw: str, region: str) -> None:
    # The digit-run fast path: truncated, padded or unparseable exports.
    assert _fast(raw, region) == _reference(raw, region)


@given(raw=st.text(max_size=24), region=st.sampled_from(["US", "GB", "DE", "CA", "AU"]))
@settings(max_examples=500)
def test_classify_of_arbitrary_text_only_raises_number_rejected(raw: str, region: str) -> None:
    result = _fast(raw, region)
    assert result == _reference(raw, region)
    if isinstance(result, NumberInfo):
        assert phonenumbers.is_valid_number(phonenumbers.parse(result.e164))


# ---- a large generated set of tricky inputs --------------------------------------------------

TRICKY_REGIONS = (*NANP_REGIONS, "GB", "DE", "FR", "AU", "IN", "BR", "IT", "JP", "ZZ")
EXAMPLE_REGIONS = ("US", "CA", "JM", "VG", "PR", "GB", "DE", "FR", "AU", "IN", "BR", "IT", "JP")
FORMATS = (
    PhoneNumberFormat.E164,
    PhoneNumberFormat.INTERNATIONAL,
    PhoneNumberFormat.NATIONAL,
    PhoneNumberFormat.RFC3966,
)
SHORT_DESCS = (
    "emergency",
    "short_code",
    "toll_free",
    "standard_rate",
    "premium_rate",
    "carrier_specific",
    "sms_services",
)
DECORATIONS = (
    "{} ext. 12",
    "{} x123",
    "{}#45",
    "tel:{}",
    "{} (home)",
    "call {}",
    "{}/{}",
    "({})",
    "\t{} ",
    "{}abc",
)
FIXED_TRICKY = (
    "911", "112", "999", "000", "110", "119", "9110", "91155501", "311", "611", "*611",
    "9-1-1", "1-1-2", "+1 911", "+911", "0911", "1911", "19115550143", "n/a", "N/A", "",
    "   ", "-", "+", "++1 212 555 0143", "1-800-FLOWERS", "1 800 356 9377", "(212) 555-01",
    "\uff12\uff11\uff12\uff15\uff15\uff15\uff10\uff11\uff14\uff13",  # fullwidth digits
    "+\uff11 \uff12\uff11\uff12 555 0143",
    "\u0662\u0661\u0662\u0665\u0665\u0665\u0660\u0661\u0664\u0663",  # Arabic-Indic digits
    "0", "00", "011", "0011",
    "011 44 20 7946 0958", "0044 20 7946 0958", "00 44", "+44 20 7946 0958", "020 7946 0958",
    "3104321", "310-4321", "3000000", "11 928 510 6903", "1 1 212 555 0143", "12125550143",
    "112125550143", "0012125550143", "+1 (212) 555-0143 ext 7", "2125550143;ext=9",
)  # fmt: skip


def _digit_run(rng: random.Random) -> str:
    length = rng.randint(1, 19)
    first = rng.choice("0123456789")
    return first + "".join(rng.choice("0123456789") for _ in range(length - 1))


def _mutated(rng: random.Random, digits: str) -> str:
    """A digit dropped, added or changed: a near-miss of a valid number."""
    at = rng.randrange(len(digits) + 1)
    change = rng.randrange(3)
    if change == 0 and at < len(digits):
        return digits[:at] + digits[at + 1 :]
    if change == 1:
        return digits[:at] + rng.choice("0123456789") + digits[at:]
    return digits[:at] + rng.choice("0123456789") + digits[at + 1 :]


def _examples(rng: random.Random) -> list[str]:
    """Every region's example numbers of every type in every format, its example short
    numbers (emergency, short codes, ...), and near-misses of each."""
    found: list[str] = []
    for region in EXAMPLE_REGIONS:
        for number_type in range(PhoneNumberType.UNKNOWN):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is None:
                continue
            for style in FORMATS:
                text = phonenumbers.format_number(example, style)
                found.append(text)
                found.append(_mutated(rng, text))
        short = phonenumbers.PhoneMetadata.short_metadata_for_region(region)
        for desc in SHORT_DESCS:
            example = getattr(short, desc) and getattr(short, desc).example_number
            if example:
                found.extend((example, _mutated(rng, example), example + "0"))
    return found


def tricky_inputs(count: int, seed: int = 14) -> list[tuple[str, str]]:
    """`count` (raw, default region) pairs, always the same for a seed: digit runs of 1 to 19
    digits with or without `+`, `00` or `011`, example numbers of several regions in every
    format and their near-misses, letters, extensions, emergency numbers and short codes."""
    rng = random.Random(seed)
    bases = [*FIXED_TRICKY, *_examples(rng)]
    pairs = [(raw, region) for raw in FIXED_TRICKY for region in ("US", "CA", "GB", "VG")]
    while len(pairs) < count:
        draw = rng.random()
        region = rng.choice(TRICKY_REGIONS)
        if draw < 0.45:
            # Mostly in the regions of the digit-run fast path, as a campaign in them sees.
            region = rng.choice(("US", "US", "CA", "DO", "JM", "PR", region))
            prefix = rng.choice(("", "", "", "", "+", "1", "00", "011", "911", "112", " ", "\t"))
            raw = prefix + _digit_run(rng)
        elif draw < 0.75:
            raw = rng.choice(bases)
        elif draw < 0.9:
            raw = rng.choice(DECORATIONS).format(rng.choice(bases), _digit_run(rng))
        else:
            raw = "".join(rng.choice("0123456789 -+()abcx#*.") for _ in range(rng.randint(1, 16)))
        pairs.append((raw, region))
    return pairs[:count]


def test_classify_gives_the_answers_of_plain_phonenumbers_on_tricky_inputs() -> None:
    # Same verdict, reason and E.164 (and region, type) as plain phonenumbers, input by input.
    differences = [
        (raw, region, got, wanted)
        for raw, region in tricky_inputs(12_000)
        if (got := _fast(raw, region)) != (wanted := _reference(raw, region))
    ]
    assert differences == []
