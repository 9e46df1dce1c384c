"""Campaign CSV ingest: stream a contact list of any size into `call_jobs` with COPY.

The source is read once, in memory bounded by the number of distinct accepted numbers
(kept to find duplicates; about 100 MB for a million), not by the file: the encoding is
detected on a leading sample (byte-order mark, else UTF-8, else charset-normalizer), the
delimiter is sniffed on its first lines, and rows are parsed by `csv` as they arrive. Each
row's number is normalised by `dialer.numbers` with the campaign's policy and checked
against the account's DNC list and the numbers already in the campaign. Accepted rows go
to PostgreSQL with `COPY call_jobs ... FROM STDIN (FORMAT binary)` on the session's own
connection, inside the caller's transaction, while the next rows are parsed (the server's
COPY, with its foreign key checks and four indexes, is the bottleneck; see
`bench/ingest.py`). Nothing is committed here: a file-level `IngestError` (raised before
or during the stream) aborts the COPY, and the caller's rollback leaves neither campaign
nor jobs.
"""

from __future__ import annotations

import csv
import difflib
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any, BinaryIO, TextIO

import psycopg
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import dnc
from campaigns.csvsource import (
    IngestError,
    IngestErrorCode,
    canonical_name,
    find_phone_column,
    open_csv,
    variable_name,
)
from dialer.metrics import count_ingest
from dialer.numbers import NumberRejected, RejectReason, classify
from dialer.windows import (
    CallingWindow,
    ContactSchedule,
    Place,
    known_zone,
    next_opening,
    subdivision_of,
    zone,
)
from models import CallJob, Campaign, JobStatus

__all__ = ["IngestSummary", "RowRejectReason", "escape_formula", "ingest_contacts"]


class RowRejectReason(StrEnum):
    """Why a CSV row did not become a call job: `dialer.numbers.RejectReason`'s codes plus
    the ingest's own. The values are stable codes (summary keys, rejected-rows file)."""

    MISSING_NUMBER = RejectReason.MISSING_NUMBER.value
    INVALID_NUMBER = RejectReason.INVALID_NUMBER.value
    EMERGENCY_OR_SHORT_CODE = RejectReason.EMERGENCY_OR_SHORT_CODE.value
    PREMIUM_RATE = RejectReason.PREMIUM_RATE.value
    COUNTRY_NOT_ALLOWED = RejectReason.COUNTRY_NOT_ALLOWED.value
    DO_NOT_CALL = "do_not_call"
    DUPLICATE = "duplicate"
    MALFORMED_ROW = "malformed_row"
    MISSING_VARIABLE = "missing_variable"
    INVALID_CALL_AT = "invalid_call_at"
    INVALID_TIMEZONE = "invalid_timezone"
    UNKNOWN_TIMEZONE = "unknown_timezone"
    """No `timezone` value, the number maps to no zone and the campaign sets none."""
    INVALID_CALL_BEFORE = "invalid_call_before"
    NO_CALLING_WINDOW = "no_calling_window"
    """The contact's zones never share an open moment of the window within a year."""


@dataclass
class IngestSummary:
    """What an ingest did: `rows` data rows read (blank lines not counted), `accepted` call
    jobs written, `rejected` row counts by `RowRejectReason` code; rows = accepted + the sum
    of rejected. Also how the file was read: encoding, delimiter and phone column."""

    rows: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    encoding: str = ""
    delimiter: str = ""
    phone_column: str = ""

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready types (API replies, task results)."""
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "phone_column": self.phone_column,
        }


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value: str) -> str:
    """`value` made inert for spreadsheets: a leading =, +, -, @, tab or CR gets a single
    quote in front, so Excel and LibreOffice show it as text instead of running it (OWASP
    "CSV Injection")."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


_TIMEZONE_NAMES = frozenset({"timezone", "tz"})
_CALL_AT_NAMES = frozenset({"callat"})
_CALL_BEFORE_NAMES = frozenset({"callbefore"})


# ---- rows to call jobs ---------------------------------------------------------------------


def _variables(
    header: list[str], special: set[int], column_map: dict[str, str]
) -> list[tuple[int, str]]:
    """(column index, variable name) of every column that fills a variable; the first
    column wins when two spell one name.

    Raises:
        IngestError: `unknown_column`, `column_map` names a column the file lacks.
    """
    by_spelling = {variable_name(name): i for i, name in reversed(list(enumerate(header)))}
    mapped: dict[int, str] = {}
    for column, variable in column_map.items():
        index = header.index(column) if column in header else by_spelling.get(variable_name(column))
        if index is None:
            columns = ", ".join(name for name in header if name)
            raise IngestError(
                IngestErrorCode.UNKNOWN_COLUMN,
                f"column_map names {column!r}; the file has {columns}",
            )
        mapped[index] = variable
    named: dict[str, int] = {}
    for i, name in enumerate(header):
        if i in special or not name:
            continue
        variable = mapped.get(i) or variable_name(name)
        if variable:
            named.setdefault(variable, i)
    return sorted((i, variable) for variable, i in named.items())


def _no_column(variable: str, header: list[str]) -> str:
    """`{variable} has no column; the file has A, B; did you mean B?` (difflib's nearest
    header, when one is near)."""
    columns = [name for name in header if name]
    spelled = {variable_name(name): name for name in reversed(columns)}
    near = difflib.get_close_matches(variable, list(spelled), n=1, cutoff=0.5)
    message = f"{{{variable}}} has no column; the file has {', '.join(columns)}"
    return message + (f"; did you mean {spelled[near[0]]}?" if near else "")


def _parse_call_at(value: str, zone_name: str | None) -> datetime | None:
    """ISO 8601 `value` as an aware time: its own offset, else local time in `zone_name`
    (the first of two repeated hours when clocks go back); None if neither."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return moment
    return None if zone_name is None else moment.replace(tzinfo=zone(zone_name))


def _zones_field(zones: tuple[str, ...]) -> bytes:
    """A `text[]` in COPY binary form: ndim, has-nulls flag, element type (text, oid 25),
    the one dimension's size and lower bound, then each element (PostgreSQL `array_send`)."""
    body = struct.pack("!iiiii", 1, 0, 25, len(zones), 1) + b"".join(map(_text_field, zones))
    return _LENGTH.pack(len(body)) + body


_COPY_COLUMNS = (
    "campaign_id",
    "account_id",
    "line_no",
    "phone_e164",
    "variables",
    "timezone",
    "next_due_at",
    "status",
    "attempt_count",
    "dial_error_count",
    "zones",
    "region",
    "subdivision",
    "call_before",
)
_COPY_SQL = f"COPY {CallJob.__tablename__} ({', '.join(_COPY_COLUMNS)}) FROM STDIN (FORMAT binary)"
_COPY_BATCH_ROWS = 2000
_MAX_OPENINGS = 100_000
"""Most (place, earliest time) next openings one ingest keeps (call_at values vary)."""
# COPY binary format (PostgreSQL docs, "COPY", Binary Format): a signature and two int32
# (flags, extension length), then per tuple an int16 field count and each field as an int32
# byte length (-1 for NULL) and the type's binary send form; an int16 -1 ends the data.
# Binary because the server then skips parsing integers, timestamps and enum labels: the
# COPY of the benchmark's 840,000 jobs takes 11.7 s instead of 14.5 s in text format.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_LENGTH = struct.Struct("!i")
_INT4_FIELD = struct.Struct("!ii")
_TIMESTAMP_FIELD = struct.Struct("!iq")
_NULL_FIELD = _LENGTH.pack(-1)
_JSONB_VERSION = b"\x01"
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _text_field(value: str) -> bytes:
    data = value.encode()
    return _LENGTH.pack(len(data)) + data


@lru_cache(maxsize=512)
def _place_field(code: str | None) -> bytes:
    return _NULL_FIELD if code is None else _text_field(code)


def _timestamptz_field(moment: datetime) -> bytes:
    return _TIMESTAMP_FIELD.pack(8, (moment - _POSTGRES_EPOCH) // _MICROSECOND)


def ingest_contacts(
    session: Session,
    campaign: Campaign,
    source: BinaryIO,
    *,
    phone_column: str | None = None,
    column_map: dict[str, str] | None = None,
    required_variables: frozenset[str] = frozenset(),
    rejected_sink: TextIO | None = None,
    max_bytes: int = 512 * 1024 * 1024,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Load the contacts in `source` (CSV bytes) as pending call jobs of `campaign`.

    `campaign` is flushed (has an id) in `session`'s transaction; the jobs are written with
    COPY on the same connection and the caller commits or rolls back. Columns: the phone
    column (see `find_phone_column`), an optional `timezone` (IANA name, the contact's
    one zone; else every zone `phonenumbers` gives for the number; else the campaign's
    `timezone`; else the row is rejected `unknown_timezone`), optional `call_at` and
    `call_before` (ISO 8601 with offset, or local time in the contact's zone: the
    `timezone` value, its one derived zone or the campaign's; refused when none is known).
    A contact is
    first due at the next opening of its calling window (`dialer.windows`) at or after
    its `call_at`, the campaign's `start_at` and now; one whose zones never share an open
    moment is rejected `no_calling_window`. Every other named column is a contact
    variable, named by `column_map` ({header: variable}, the header exact or as
    `variable_name` spells it) else by `variable_name` of its header.
    A row whose `required_variables` value is empty is rejected. Rejected rows are written
    to `rejected_sink` (open it with newline="") as CSV: line, reason, the row's fields,
    formula-escaped. `progress(bytes_read)` is called about every MiB.

    Returns:
        The `IngestSummary`.
    Raises:
        IngestError: file-level problems (`IngestErrorCode`); the COPY is aborted, so the
            transaction must be rolled back.
    """
    source_csv = open_csv(source, max_bytes=max_bytes, progress=progress)
    header = source_csv.header
    width = len(header)
    phone_index = find_phone_column(header, phone_column)
    canonical = [canonical_name(name) for name in header]
    special = {phone_index}
    timezone_index = next((i for i, c in enumerate(canonical) if c in _TIMEZONE_NAMES), None)
    call_at_index = next((i for i, c in enumerate(canonical) if c in _CALL_AT_NAMES), None)
    before_index = next((i for i, c in enumerate(canonical) if c in _CALL_BEFORE_NAMES), None)
    special.update(i for i in (timezone_index, call_at_index, before_index) if i is not None)
    variables = _variables(header, special, column_map or {})
    missing = sorted(required_variables - {name for _, name in variables})
    if missing:
        raise IngestError(IngestErrorCode.MISSING_VARIABLE, _no_column(missing[0], header))
    required = [i for i, name in variables if name in required_variables]

    summary = IngestSummary(
        encoding=source_csv.encoding,
        delimiter=source_csv.delimiter,
        phone_column=header[phone_index],
    )
    rejected: Counter[str] = Counter()
    writer = None
    if rejected_sink is not None:
        writer = csv.writer(rejected_sink)
        writer.writerow(["line", "reason", *map(escape_formula, header)])

    def reject(line: int, reason: RowRejectReason, row: list[str] | None) -> None:
        rejected[reason] += 1
        if writer is not None:
            writer.writerow([line, reason.value, *map(escape_formula, row or [])])

    region = campaign.default_region
    allow_premium = campaign.allow_premium
    allowed = None if campaign.allowed_countries is None else frozenset(campaign.allowed_countries)
    blocked = dnc.load_set(session, campaign.account_id)
    seen: set[str] = set(
        session.scalars(select(CallJob.phone_e164).where(CallJob.campaign_id == campaign.id))
    )
    now = session.execute(select(func.now())).scalar_one()
    start_at = campaign.start_at
    if start_at is not None and start_at.tzinfo is None:  # set in Python, not reloaded: UTC
        start_at = start_at.replace(tzinfo=UTC)
    start = max(start_at, now) if start_at else now
    window = CallingWindow.of(campaign)
    fallback_zone = campaign.timezone
    # The fields every job shares: count, campaign_id, account_id; status and the counters.
    head = struct.pack("!hiqiq", len(_COPY_COLUMNS), 8, campaign.id, 8, campaign.account_id)
    tail = _text_field(JobStatus.PENDING.value) + _INT4_FIELD.pack(4, 0) + _INT4_FIELD.pack(4, 0)
    keys = [(i, encode_basestring_ascii(name) + ":") for i, name in variables]
    zone_fields: dict[str | None, bytes] = {None: _NULL_FIELD}
    zones_fields: dict[tuple[str, ...], bytes] = {}
    openings: dict[tuple[Any, ...], tuple[Place, datetime | None]] = {}

    driver = session.connection().connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError("ingest_contacts needs a session on a psycopg 3 connection")
    accepted = 0
    rows = 0
    batch: list[bytes] = [_COPY_HEADER]
    with driver.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
        for line, row in source_csv.rows():
            rows += 1
            if row is None or len(row) != width:
                reject(line, RowRejectReason.MALFORMED_ROW, row)
                continue
            try:
                info = classify(row[phone_index], region)
            except NumberRejected as rejection:
                reject(line, RowRejectReason(rejection.reason.value), row)
                continue
            if info.premium and not allow_premium:
                reject(line, RowRejectReason.PREMIUM_RATE, row)
                continue
            if allowed is not None and info.region not in allowed:
                reject(line, RowRejectReason.COUNTRY_NOT_ALLOWED, row)
                continue
            if required and any(not row[i] or row[i].isspace() for i in required):
                reject(line, RowRejectReason.MISSING_VARIABLE, row)
                continue
            zone_name: str | None
            if timezone_index is not None and (given := row[timezone_index].strip()):
                if known_zone(given) is None:
                    reject(line, RowRejectReason.INVALID_TIMEZONE, row)
                    continue
                zone_name = given
                zones: tuple[str, ...] = (given,)
            else:
                zones = info.timezones or ((fallback_zone,) if fallback_zone else ())
                if not zones:
                    reject(line, RowRejectReason.UNKNOWN_TIMEZONE, row)
                    continue
                zone_name = zones[0] if len(zones) == 1 else fallback_zone
            earliest = start
            if call_at_index is not None and (call_at := row[call_at_index].strip()):
                moment = _parse_call_at(call_at, zone_name)
                if moment is None:
                    reject(line, RowRejectReason.INVALID_CALL_AT, row)
                    continue
                earliest = max(moment, start)
            call_before = None
            if before_index is not None and (before := row[before_index].strip()):
                call_before = _parse_call_at(before, zone_name)
                if call_before is None:
                    reject(line, RowRejectReason.INVALID_CALL_BEFORE, row)
                    continue
            # Rows share few places and (without call_at) one earliest time: computed once.
            key = (zones, info.region, subdivision_of(info.e164, info.region), earliest)
            found = openings.get(key)
            if found is None:
                if len(openings) >= _MAX_OPENINGS:
                    openings.clear()
                place = Place(*key[:3])
                found = openings[key] = (place, next_opening(window, place, earliest))
            place, opening = found
            if opening is None and call_before is None:
                reject(line, RowRejectReason.NO_CALLING_WINDOW, row)
                continue
            if opening is None or (call_before is not None and opening >= call_before):
                # Never callable in time: due at its call_before, when the pacer expires it.
                due = ContactSchedule(window, place, call_before).next_due(earliest)
            else:
                due = opening
            e164 = info.e164
            if e164 in blocked:
                reject(line, RowRejectReason.DO_NOT_CALL, row)
                continue
            if e164 in seen:
                reject(line, RowRejectReason.DUPLICATE, row)
                continue
            # JSON (ASCII: every non-ASCII and control character escaped) for JSONB.
            variables_json = (
                "{" + ",".join([key + encode_basestring_ascii(row[i]) for i, key in keys]) + "}"
            )
            if "\\u0000" in variables_json and any("\x00" in value for value in row):
                # PostgreSQL text and JSONB cannot hold NUL.
                reject(line, RowRejectReason.MALFORMED_ROW, row)
                continue
            zone_field = zone_fields.get(zone_name)
            if zone_field is None:
                zone_field = zone_fields[zone_name] = _text_field(str(zone_name))
            zones_field = zones_fields.get(zones)
            if zones_field is None:
                zones_field = zones_fields[zones] = _zones_field(zones)
            e164_bytes = e164.encode()
            batch.append(
                b"".join(
                    [
                        head,
                        _INT4_FIELD.pack(4, line),
                        _LENGTH.pack(len(e164_bytes)),
                        e164_bytes,
                        _LENGTH.pack(len(variables_json) + 1),
                        _JSONB_VERSION,
                        variables_json.encode("ascii"),
                        zone_field,
                        _timestamptz_field(due),
                        tail,
                        zones_field,
                        _place_field(place.country),
                        _place_field(place.subdivision),
                        _NULL_FIELD if call_before is None else _timestamptz_field(call_before),
                    ]
                )
            )
            seen.add(e164)
            accepted += 1
            if len(batch) >= _COPY_BATCH_ROWS:
                copy.write(b"".join(batch))
                batch.clear()
        if rows == 0:
            raise IngestError(IngestErrorCode.HEADER_ONLY, "the file has a header but no rows")
        batch.append(_COPY_TRAILER)
        copy.write(b"".join(batch))
    if progress is not None:
        progress(source_csv.bytes_read)
    summary.rows = rows
    summary.accepted = accepted
    summary.rejected = {str(reason): count for reason, count in sorted(rejected.items())}
    count_ingest(summary.accepted, summary.rejected)
    return summary
