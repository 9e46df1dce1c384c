"""Phone numbers: E.164 normalisation, the reasons a number is never dialled, time zones.

Every answer is the one `phonenumbers` (Google's libphonenumber metadata) gives. Parsing and
validating with it costs 20-40 µs a number, too slow for million-row campaign CSVs, so
`classify` has a fast path for the overwhelmingly common shape, a 10-digit NANP number
(`+1 212 555 0143`, `(212) 555-0143`, `212.555.0143`, `1-212-555-0143`): it validates the
national number against the same metadata patterns, precompiled once into one regular
expression per NANP region and evaluated in the order libphonenumber uses (see
`_NanpRegion`). A second fast path rejects, in a NANP region, a run of digits that no
NANP region's metadata allows (`12345`, `1234567`, a truncated or padded export), which
otherwise costs the most of all: a full parse and a region search that a cache cannot help
with, each such number being different. Every other input takes the `phonenumbers` path
behind an LRU cache. On every path, a `phonenumbers` check is skipped when a test it makes
itself (a length and a pattern from the same metadata) certainly fails: a national number
that no region of its country code allows skips `is_valid_number`'s region search, one
that is not of the default region's short-code lengths and pattern skips the short-code
check, a digit run that no emergency number of the default region begins skips the
emergency check. The equivalence with plain `phonenumbers` (the rules below applied with
its functions alone, on a large generated set of tricky inputs) is checked by
`tests/dialer/test_numbers.py`.

Rules of this module (one place, so ingest, DNC and the pacer agree):

- Numbers are dialled in E.164, never as typed, so a *valid* full number cannot reach an
  emergency service; only an input that is not a valid full number is checked against
  emergency numbers and short codes, to tell the user why it is refused.
- An emergency number of *any* region counts (911, 112, 999, 000, 110, 119, ...), as does
  a number that connects to an emergency service when dialled in the default region (9110)
  and a valid short code of the default region (311, 611).
- `premium_rate` covers libphonenumber's PREMIUM_RATE and SHARED_COST types: both make the
  caller pay above a normal call (US 900, UK 09 and 087, AU 1300); a reminder campaign should
  not pay them unless the campaign sets `allow_premium`.
- An input starting with `00` that is not a valid number of the default region is read
  as international (`0044 20 7946 0958` from the US): `00` is the ITU-recommended
  international prefix and no NANP national number starts with 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType, shortnumberinfo
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from dialer.errors import DialerError

__all__ = [
    "NumberInfo",
    "NumberRejected",
    "RejectReason",
    "check_policy",
    "classify",
    "normalize",
    "timezones_for",
]


class RejectReason(StrEnum):
    """Why a number is not dialled. The values are stable codes shown to users and stored."""

    MISSING_NUMBER = "missing_number"
    INVALID_NUMBER = "invalid_number"
    EMERGENCY_OR_SHORT_CODE = "emergency_or_short_code"
    PREMIUM_RATE = "premium_rate"
    COUNTRY_NOT_ALLOWED = "country_not_allowed"


class NumberRejected(DialerError):  # noqa: N818 (the name is the API's, it is not an error)
    """A number that must not be dialled; `reason` is the stable code (also the error's
    `code`), `number` the input as given (or its E.164 form when a policy refused a valid
    number)."""

    def __init__(self, reason: RejectReason, number: str) -> None:
        super().__init__(reason.value, f"cannot use {number!r}")
        self.reason = reason
        self.number = number


_PREMIUM_TYPES = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST})
_UNKNOWN_ZONE = "Etc/Unknown"


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """A valid full number: `e164` ("+12125550143"), its ISO 3166-1 alpha-2 `region` ("US";
    "001" for non-geographic numbers), libphonenumber's `number_type` (a
    `phonenumbers.PhoneNumberType` int) and its `country_code` (1)."""

    e164: str
    region: str
    number_type: int
    country_code: int

    @property
    def premium(self) -> bool:
        """True for premium-rate and shared-cost numbers (see the module rules)."""
        return self.number_type in _PREMIUM_TYPES

    @property
    def timezones(self) -> tuple[str, ...]:
        """IANA time zones the number may be in (several for some mobile or national
        ranges); empty when libphonenumber knows none."""
        if phonenumbers.is_number_type_geographical(self.number_type, self.country_code):
            return _zones_by_prefix(self.e164[1 : 1 + TIMEZONE_LONGEST_PREFIX])
        return _zones_by_prefix(str(self.country_code))


@lru_cache(maxsize=65536)
def _zones_by_prefix(digits: str) -> tuple[str, ...]:
    # libphonenumber's `timezone` lookup: the longest prefix of the digits in its table.
    for length in range(len(digits), 0, -1):
        zones = TIMEZONE_DATA.get(digits[:length])
        if zones is not None:
            return tuple(zone for zone in zones if zone != _UNKNOWN_ZONE)
    return ()


# ---- NANP fast path ------------------------------------------------------------------------

# Inputs whose `phonenumbers.parse` result is certainly country code 1 with the ten captured
# digits as national number: `+1` E.164 (any default region), or national / `1`-prefixed
# forms with the usual separators when the default region is a NANP one. The area code
# starts with 2-9, so no national prefix or leading zero can be involved.
_E164_NANP = re.compile(r"\+1([2-9]\d{9})")
_NATIONAL_NANP = re.compile(
    r"[ \t]*(?:\+?1[ .\-]?)?(?:\(([2-9]\d\d)\)|([2-9]\d\d))[ .\-]?(\d{3})[ .\-]?(\d{4})[ \t]*"
)
# libphonenumber's test order in `_number_type_helper`, fixed line and mobile last.
_TYPE_ORDER = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
    ("fixed_line", PhoneNumberType.FIXED_LINE),
    ("mobile", PhoneNumberType.MOBILE),
)
_NANP_LENGTH = 10
# A run of ASCII digits starting with 2-9: neither the international prefix `011` nor the
# country code or national prefix 1 (`11 928 510 6903` is valid: both are stripped), so in
# a NANP region that reads national numbers as given (`_DIGIT_RUN_REGIONS`)
# `phonenumbers.parse` returns country code 1 with the run as national number, or raises
# when the run is longer than `_MAX_NSN`.
_DIGIT_RUN = re.compile(r"[ \t]*([2-9][0-9]+)[ \t]*")
_MAX_NSN = 17
"""libphonenumber's longest national number (`_MAX_LENGTH_FOR_NSN`); `parse` raises TOO_LONG
beyond it."""


def _desc_pattern(desc: phonenumbers.PhoneNumberDesc | None) -> str | None:
    # `_is_number_matching_desc`: no desc, an empty pattern or a possible-length list
    # without 10 never matches a 10-digit national number.
    if desc is None or not desc.national_number_pattern:
        return None
    if desc.possible_length and _NANP_LENGTH not in desc.possible_length:
        return None
    return str(desc.national_number_pattern)


@dataclass(frozen=True, slots=True)
class _NanpRegion:
    """One NANP region's metadata compiled for 10-digit national numbers.

    `types` is one alternation with a named group per number type in libphonenumber's test
    order; `re` takes the first alternative that matches in full, which is the order
    `_number_type_helper` tests them in.
    """

    region: str
    leading_digits: re.Pattern[str] | None
    general: re.Pattern[str] | None
    types: re.Pattern[str] | None
    mobile: re.Pattern[str] | None
    same_mobile_and_fixed_line: bool
    reads_digits_as_given: bool
    """A digit run starting with 2-9 is the national number as it stands: the international
    prefix is `011`, the national prefix for parsing is `1`, and no transform rule prefixes
    an area code to a 7-digit local number (VG's `3000000` is +1 284 300 0000)."""

    @classmethod
    def from_metadata(cls, region: str) -> _NanpRegion:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if meta is None:
            raise LookupError(f"phonenumbers has no metadata for NANP region {region}")
        branches = [
            f"(?P<{name}>{pattern})"
            for name, _ in _TYPE_ORDER
            if (pattern := _desc_pattern(getattr(meta, name))) is not None
        ]
        general = _desc_pattern(meta.general_desc)
        mobile = _desc_pattern(meta.mobile)
        return cls(
            region=region,
            leading_digits=re.compile(meta.leading_digits) if meta.leading_digits else None,
            general=re.compile(general) if general else None,
            types=re.compile("|".join(branches)) if branches else None,
            mobile=re.compile(mobile) if mobile else None,
            same_mobile_and_fixed_line=bool(meta.same_mobile_and_fixed_line_pattern),
            reads_digits_as_given=meta.international_prefix == "011"
            and meta.national_prefix_for_parsing == "1"
            and not meta.national_prefix_transform_rule,
        )

    def number_type(self, nsn: str) -> int:
        """`phonenumbers.number_type` of national number `nsn` in this region."""
        if self.general is None or self.types is None or not self.general.fullmatch(nsn):
            return PhoneNumberType.UNKNOWN
        match = self.types.fullmatch(nsn)
        if match is None:
            return PhoneNumberType.UNKNOWN
        found = _TYPE_BY_NAME[str(match.lastgroup)]
        if found == PhoneNumberType.FIXED_LINE and (
            self.same_mobile_and_fixed_line
            or (self.mobile is not None and self.mobile.fullmatch(nsn))
        ):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return found


_TYPE_BY_NAME = dict(_TYPE_ORDER)
_NANP_REGIONS = tuple(
    _NanpRegion.from_metadata(region) for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]
)
_NANP_REGION_CODES = frozenset(region.region for region in _NANP_REGIONS)
_DIGIT_RUN_REGIONS = frozenset(
    region.region for region in _NANP_REGIONS if region.reads_digits_as_given
)
"""NANP regions where the digit-run fast path applies (see `_DIGIT_RUN`)."""


def _classify_nanp(nsn: str) -> NumberInfo | None:
    """`region_code_for_number` then `number_type` for a 10-digit NANP national number;
    None when `phonenumbers.is_valid_number` would say False."""
    for rules in _NANP_REGIONS:
        if rules.leading_digits is not None:
            if rules.leading_digits.match(nsn):
                number_type = rules.number_type(nsn)
                break
        else:
            number_type = rules.number_type(nsn)
            if number_type != PhoneNumberType.UNKNOWN:
                break
    else:
        return None
    if number_type == PhoneNumberType.UNKNOWN:
        return None
    return NumberInfo("+1" + nsn, rules.region, number_type, 1)


# ---- necessary conditions of phonenumbers' checks -------------------------------------------
# Each is the first test the `phonenumbers` function makes, on the same metadata, so when it
# fails the function's answer is certainly False and the call (with its region search, its
# per-call pattern lookups) is skipped; when it holds, the function itself still decides.


@lru_cache(maxsize=512)
def _general_patterns(country_code: int) -> dict[int | None, re.Pattern[str]]:
    """The general-desc patterns of every region of `country_code` (the non-geographic
    entity's for a non-geographic code), one alternation per possible national number
    length; key None for descs that list no lengths (any length)."""
    by_length: dict[int | None, list[str]] = {}
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        desc = None if meta is None else meta.general_desc
        if desc is None or not desc.national_number_pattern:
            continue
        for length in desc.possible_length or (None,):
            by_length.setdefault(length, []).append(f"(?:{desc.national_number_pattern})")
    return {length: re.compile("|".join(branches)) for length, branches in by_length.items()}


def _may_be_valid(country_code: int, nsn: str) -> bool:
    """False only when `phonenumbers.is_valid_number` is certainly False for a number with
    this country code and national significant number (digits, leading zeros included):
    validity needs the general desc of one of the code's regions to allow the length and
    match the pattern (`_number_type_helper`'s first test)."""
    patterns = _general_patterns(country_code)
    for length in (len(nsn), None):
        pattern = patterns.get(length)
        if pattern is not None and pattern.fullmatch(nsn):
            return True
    return False


def _is_valid(parsed: phonenumbers.PhoneNumber) -> bool:
    """`phonenumbers.is_valid_number`, without its region search when `_may_be_valid` says no."""
    nsn = phonenumbers.national_significant_number(parsed)
    return _may_be_valid(parsed.country_code or 0, nsn) and phonenumbers.is_valid_number(parsed)


def _desc_test(
    desc: phonenumbers.PhoneNumberDesc | None,
) -> tuple[frozenset[int], re.Pattern[str]] | None:
    """A short-number desc's possible lengths (empty: any) and pattern; None when it has none."""
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)


@dataclass(frozen=True, slots=True)
class _ShortRules:
    """A region's short-number metadata, for necessary conditions of `shortnumberinfo`."""

    emergency: re.Pattern[str] | None
    """The emergency pattern; None when `connects_to_emergency_number` is False for any input
    (no short metadata, no emergency desc or an empty pattern)."""
    short_code: tuple[frozenset[int], re.Pattern[str]] | None
    """The short-code desc's lengths and pattern; None when unknown (then no shortcut)."""

    def may_connect(self, digits: str) -> bool:
        """False only when `connects_to_emergency_number(digits, region)` is certainly False
        for a run of ASCII digits: it tests the emergency pattern at the start of the digits."""
        return self.emergency is not None and self.emergency.match(digits) is not None

    def may_be_short_code(self, nsn: str) -> bool:
        """False only when `is_valid_short_number_for_region` is certainly False for a
        number with national significant number `nsn`: its last test is the short-code
        desc's length and full pattern."""
        if self.short_code is None:
            return True
        lengths, pattern = self.short_code
        return (not lengths or len(nsn) in lengths) and pattern.fullmatch(nsn) is not None


@lru_cache(maxsize=512)
def _short_rules(region: str) -> _ShortRules:
    meta = phonenumbers.PhoneMetadata.short_metadata_for_region(region.upper(), None)
    if meta is None:
        return _ShortRules(None, None)
    emergency = _desc_test(meta.emergency)
    return _ShortRules(None if emergency is None else emergency[1], _desc_test(meta.short_code))


# ---- the phonenumbers path -----------------------------------------------------------------

_EMERGENCY_ANY_REGION = re.compile(
    "|".join(
        sorted(
            {
                f"(?:{meta.emergency.national_number_pattern})"
                for region in shortnumberinfo.SUPPORTED_SHORT_REGIONS
                if (meta := phonenumbers.PhoneMetadata.short_metadata_for_region(region))
                is not None
                and meta.emergency is not None
                and meta.emergency.national_number_pattern
            }
        )
    )
)


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _invalid_reason(
    text: str, default_region: str, parsed: phonenumbers.PhoneNumber | None
) -> RejectReason:
    """Reason for `text` (stripped), which is not a valid full number; `parsed` is its parse
    in `default_region`, if any (see the module rules)."""
    if "+" in text:
        return RejectReason.INVALID_NUMBER
    # An ASCII digit run is its own possible number and digits for `shortnumberinfo`.
    plain = text.isascii() and text.isdigit()
    digits = text if plain else phonenumbers.normalize_digits_only(text)
    if digits and _EMERGENCY_ANY_REGION.fullmatch(digits):
        return RejectReason.EMERGENCY_OR_SHORT_CODE
    rules = _short_rules(default_region)
    if (not plain or rules.may_connect(text)) and shortnumberinfo.connects_to_emergency_number(
        text, default_region
    ):
        return RejectReason.EMERGENCY_OR_SHORT_CODE
    if (
        parsed is not None
        and rules.may_be_short_code(phonenumbers.national_significant_number(parsed))
        and shortnumberinfo.is_valid_short_number_for_region(parsed, default_region)
    ):
        return RejectReason.EMERGENCY_OR_SHORT_CODE
    return RejectReason.INVALID_NUMBER


@lru_cache(maxsize=65536)
def _classify_slow(raw: str, default_region: str) -> NumberInfo | RejectReason:
    text = raw.strip()
    if not text:
        return RejectReason.MISSING_NUMBER
    parsed = _parse(text, default_region)
    valid = parsed if parsed is not None and _is_valid(parsed) else None
    if valid is None and text.startswith("00"):
        valid = _parse("+" + text[2:], default_region)
        if valid is not None and not _is_valid(valid):
            valid = None
    if valid is None:
        return _invalid_reason(text, default_region, parsed)
    return NumberInfo(
        phonenumbers.format_number(valid, phonenumbers.PhoneNumberFormat.E164),
        str(phonenumbers.region_code_for_number(valid)),
        phonenumbers.number_type(valid),
        valid.country_code or 0,
    )


def classify(raw: str, default_region: str) -> NumberInfo:
    """Parse and validate `raw` as typed in a CSV, in the context of `default_region`
    (ISO 3166-1 alpha-2, the campaign's; used for national formats).

    Returns:
        The number's `NumberInfo` (E.164, region, type); no policy is applied.
    Raises:
        NumberRejected: `missing_number` (empty), `emergency_or_short_code` or
            `invalid_number` (see the module rules).
    """
    match = _E164_NANP.fullmatch(raw)
    if match is not None:
        nsn: str | None = match[1]
    elif default_region in _NANP_REGION_CODES:
        match = _NATIONAL_NANP.fullmatch(raw)
        nsn = None if match is None else (match[1] or match[2]) + match[3] + match[4]
    else:
        nsn = None
    if nsn is None and default_region in _DIGIT_RUN_REGIONS:
        run = _DIGIT_RUN.fullmatch(raw)
        if run is not None and not _may_be_valid(1, digits := run[1]):
            # No parse needed: it is known (see `_DIGIT_RUN`), and the number is invalid.
            parsed = None
            if len(digits) <= _MAX_NSN:
                parsed = phonenumbers.PhoneNumber(country_code=1, national_number=int(digits))
            raise NumberRejected(_invalid_reason(digits, default_region, parsed), raw)
    if nsn is not None:
        info = _classify_nanp(nsn)
        if info is not None:
            return info
        # What `phonenumbers.parse` would have returned, without its cost.
        parsed = phonenumbers.PhoneNumber(country_code=1, national_number=int(nsn))
        raise NumberRejected(_invalid_reason(raw.strip(), default_region, parsed), raw)
    result = _classify_slow(raw, default_region)
    if isinstance(result, RejectReason):
        raise NumberRejected(result, raw)
    return result


def check_policy(
    info: NumberInfo, *, allow_premium: bool = False, allowed_countries: Iterable[str] | None = None
) -> None:
    """Apply a campaign's dialling policy to a valid number.

    Raises:
        NumberRejected: `premium_rate` (premium-rate or shared-cost and not `allow_premium`),
            `country_not_allowed` (`allowed_countries`, ISO alpha-2 codes, is set and does not
            hold the number's region; NANP numbers have their own region, "CA" is not "US").
    """
    if info.premium and not allow_premium:
        raise NumberRejected(RejectReason.PREMIUM_RATE, info.e164)
    if allowed_countries is not None and info.region not in allowed_countries:
        raise NumberRejected(RejectReason.COUNTRY_NOT_ALLOWED, info.e164)


def normalize(
    raw: str,
    default_region: str,
    *,
    allow_premium: bool = False,
    allowed_countries: frozenset[str] | None = None,
) -> str:
    """The E.164 form ("+12125550143") of `raw`, read in `default_region`, if it may be dialled.

    Raises:
        NumberRejected: with the `RejectReason` of `classify` or `check_policy`.
    """
    info = classify(raw, default_region)
    check_policy(info, allow_premium=allow_premium, allowed_countries=allowed_countries)
    return info.e164


def timezones_for(e164: str) -> tuple[str, ...]:
    """IANA time zones of an E.164 number ("+12125550143" -> ("America/New_York",)); several
    when its range spans zones, empty when unknown.

    Raises:
        NumberRejected: `e164` is not a valid full number.
    """
    return classify(e164, "ZZ").timezones
