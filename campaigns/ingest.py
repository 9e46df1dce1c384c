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

import codecs
import csv
import io
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any, BinaryIO, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import charset_normalizer
import psycopg
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer import dnc
from dialer.numbers import NumberRejected, RejectReason, classify
from models import CallJob, Campaign, JobStatus

__all__ = [
    "IngestError",
    "IngestErrorCode",
    "IngestSummary",
    "RowRejectReason",
    "escape_formula",
    "find_phone_column",
    "ingest_contacts",
    "open_csv",
]


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


class IngestErrorCode(StrEnum):
    """Why a whole file is refused (nothing is written)."""

    UNDECODABLE = "undecodable"
    EMPTY_FILE = "empty_file"
    HEADER_ONLY = "header_only"
    NO_PHONE_COLUMN = "no_phone_column"
    TOO_LARGE = "too_large"
    MISSING_VARIABLE = "missing_variable"


class IngestError(Exception):
    """A file-level problem; `code` is an `IngestErrorCode`, `message` says it for people."""

    def __init__(self, code: IngestErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


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


# ---- reading the source --------------------------------------------------------------------

_SAMPLE_BYTES = 64 * 1024
_SNIFF_LINES = 50
_PROGRESS_EVERY = 1024 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_WINDOWS_WESTERN = "cp1252"


class _MeteredReader(io.RawIOBase):
    """The source as a raw stream: replays the sniffed sample, counts bytes against
    `max_bytes` and reports progress."""

    def __init__(
        self,
        sample: bytes,
        source: BinaryIO,
        max_bytes: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        self._pending = memoryview(sample)
        self._source = source
        self._max_bytes = max_bytes
        self._progress = progress
        self._reported = 0
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pending:
            size = min(len(view), len(self._pending))
            view[:size] = self._pending[:size]
            self._pending = self._pending[size:]
        else:
            data = self._source.read(len(view))
            size = len(data)
            view[:size] = data
        self._count(size)
        return size

    def _count(self, size: int) -> None:
        self.bytes_read += size
        if self.bytes_read > self._max_bytes:
            raise IngestError(
                IngestErrorCode.TOO_LARGE, f"the file is larger than {self._max_bytes} bytes"
            )
        if self._progress is not None and self.bytes_read - self._reported >= _PROGRESS_EVERY:
            self._reported = self.bytes_read
            self._progress(self.bytes_read)


def _read_sample(source: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < _SAMPLE_BYTES:
        chunk = source.read(_SAMPLE_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _detect_encoding(sample: bytes, complete: bool) -> str:
    """Python codec name for `sample`, the file's first bytes (`complete`: the whole file)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" not in sample:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
        except UnicodeDecodeError:
            pass
        else:
            return "utf-8"
    matches = charset_normalizer.from_bytes(sample)
    best = matches.best()
    if best is None:
        raise IngestError(IngestErrorCode.UNDECODABLE, "the file is not text in any encoding")
    # Short samples often fit several Latin code pages equally well; prefer the one Excel
    # writes in the Americas and Western Europe.
    if any(
        match.encoding == _WINDOWS_WESTERN
        for match in matches
        if (match.chaos, match.coherence) == (best.chaos, best.coherence)
    ):
        return _WINDOWS_WESTERN
    return str(best.encoding)


def _sniff_delimiter(head: str) -> str:
    """The delimiter among comma, semicolon, tab and pipe that splits the first lines into
    the most consistent number of fields (more than one); comma for a one-column file."""
    best, best_score = ",", (0, 0.0, 0)
    for delimiter in _DELIMITERS:
        try:
            reader = csv.reader(io.StringIO(head, newline=""), delimiter=delimiter)
            rows = [row for row in reader if row]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (1, sum(len(row) == width for row in rows) / len(rows), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _is_blank(row: list[str]) -> bool:
    return all(not value or value.isspace() for value in row)


@dataclass
class CsvSource:
    """A CSV being streamed: how it is read, its header (names stripped, line 1 or the
    first non-blank line), and `rows()`, the data rows with their physical line numbers."""

    encoding: str
    delimiter: str
    header: list[str]
    header_line: int
    _reader: Any
    _metered: _MeteredReader

    @property
    def bytes_read(self) -> int:
        """Bytes consumed from the source so far."""
        return self._metered.bytes_read

    def rows(self) -> Iterator[tuple[int, list[str] | None]]:
        """(line, fields) for each non-blank data row; fields is None when `csv` could not
        split the row (e.g. a field over `csv.field_size_limit`).

        Raises:
            IngestError: `undecodable` (bytes not valid in `encoding`), `too_large`.
        """
        reader = self._reader
        last_line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:
                row = None
            except UnicodeDecodeError as error:
                raise IngestError(
                    IngestErrorCode.UNDECODABLE,
                    f"bytes not valid {self.encoding} after line {reader.line_num}: {error.reason}",
                ) from error
            line = last_line + 1
            last_line = reader.line_num
            if row is not None and (not row or _is_blank(row)):
                continue
            yield line, row


def open_csv(
    source: BinaryIO,
    *,
    max_bytes: int = 512 * 1024 * 1024,
    progress: Callable[[int], None] | None = None,
) -> CsvSource:
    """Start streaming the CSV in `source` (bytes): detect its encoding (UTF-8 with or
    without BOM, UTF-16/32 with BOM, else charset-normalizer's guess on the first 64 KiB)
    and delimiter, read the header. `progress(bytes_read)` is called about every MiB.

    Raises:
        IngestError: `empty_file` (no bytes, or only blank lines), `undecodable`,
            `too_large` (more than `max_bytes` bytes).
    """
    sample = _read_sample(source)
    if not sample.strip():
        raise IngestError(IngestErrorCode.EMPTY_FILE, "the file is empty")
    complete = len(sample) < _SAMPLE_BYTES
    encoding = _detect_encoding(sample, complete)
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(sample, final=complete)
    except UnicodeDecodeError as error:
        raise IngestError(
            IngestErrorCode.UNDECODABLE, f"bytes not valid {encoding}: {error.reason}"
        ) from error
    lines = text.splitlines(keepends=True)
    head = "".join(lines[:_SNIFF_LINES] if complete else lines[: min(_SNIFF_LINES, len(lines) - 1)])
    delimiter = _sniff_delimiter(head or text)

    metered = _MeteredReader(sample, source, max_bytes, progress)
    stream = io.TextIOWrapper(
        io.BufferedReader(metered, 1024 * 1024), encoding=encoding, newline=""
    )
    reader = csv.reader(stream, delimiter=delimiter, strict=False)
    header_line = 0
    try:
        for row in reader:
            if row and not _is_blank(row):
                header = [name.strip() for name in row]
                return CsvSource(encoding, delimiter, header, header_line + 1, reader, metered)
            header_line = reader.line_num
    except csv.Error as error:
        raise IngestError(IngestErrorCode.UNDECODABLE, f"unreadable header: {error}") from error
    except UnicodeDecodeError as error:
        raise IngestError(
            IngestErrorCode.UNDECODABLE, f"bytes not valid {encoding}: {error.reason}"
        ) from error
    raise IngestError(IngestErrorCode.EMPTY_FILE, "the file has only blank lines")


# Header names of the phone column, best first, compared without case, spaces or punctuation.
_PHONE_NAMES = (
    "phone",
    "phonenumber",
    "number",
    "mobile",
    "mobilenumber",
    "mobilephone",
    "cell",
    "cellphone",
    "to",
    "tonumber",
    "tel",
    "telephone",
    "msisdn",
    "e164",
)
_TIMEZONE_NAMES = frozenset({"timezone", "tz"})
_CALL_AT_NAMES = frozenset({"callat"})
_NOT_ALNUM = re.compile(r"[\W_]+")


def _canonical(name: str) -> str:
    return _NOT_ALNUM.sub("", name).lower()


def find_phone_column(header: list[str], phone_column: str | None = None) -> int:
    """Index of the phone column in `header` (stripped names): `phone_column` if given
    (exact, else ignoring case, spaces and punctuation), else the first of the usual names
    (phone, phone_number, number, mobile, to, to_number, tel, telephone, ...).

    Raises:
        IngestError: `no_phone_column`.
    """
    canonical = [_canonical(name) for name in header]
    if phone_column is not None:
        wanted = phone_column.strip()
        if wanted in header:
            return header.index(wanted)
        if _canonical(wanted) in canonical:
            return canonical.index(_canonical(wanted))
        raise IngestError(
            IngestErrorCode.NO_PHONE_COLUMN, f"no column {phone_column!r} in the header"
        )
    for name in _PHONE_NAMES:
        if name in canonical:
            return canonical.index(name)
    raise IngestError(
        IngestErrorCode.NO_PHONE_COLUMN,
        "no phone column (phone, phone_number, number, mobile, to, tel, ...) in the header",
    )


# ---- rows to call jobs ---------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _parse_call_at(value: str, zone_name: str | None) -> datetime | None:
    """ISO 8601 `value` as an aware time: its own offset, else local time in `zone_name`
    (the first of two repeated hours when clocks go back); None if neither."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return moment
    zone = None if zone_name is None else _zone(zone_name)
    return None if zone is None else moment.replace(tzinfo=zone)


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
)
_COPY_SQL = f"COPY {CallJob.__tablename__} ({', '.join(_COPY_COLUMNS)}) FROM STDIN (FORMAT binary)"
_COPY_BATCH_ROWS = 2000
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


def _timestamptz_field(moment: datetime) -> bytes:
    return _TIMESTAMP_FIELD.pack(8, (moment - _POSTGRES_EPOCH) // _MICROSECOND)


def ingest_contacts(
    session: Session,
    campaign: Campaign,
    source: BinaryIO,
    *,
    phone_column: str | None = None,
    required_variables: frozenset[str] = frozenset(),
    rejected_sink: TextIO | None = None,
    max_bytes: int = 512 * 1024 * 1024,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Load the contacts in `source` (CSV bytes) as pending call jobs of `campaign`.

    `campaign` is flushed (has an id) in `session`'s transaction; the jobs are written with
    COPY on the same connection and the caller commits or rolls back. Columns: the phone
    column (see `find_phone_column`), an optional `timezone` (IANA name; else the number's
    zone when it has exactly one), an optional `call_at` (ISO 8601 with offset, or local
    time in the contact's zone, refused when the zone is not known; the job's first due
    time, else the campaign's `start_at`, else now), and every other named column as a
    contact variable (values as given).
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
    canonical = [_canonical(name) for name in header]
    special = {phone_index}
    timezone_index = next((i for i, c in enumerate(canonical) if c in _TIMEZONE_NAMES), None)
    call_at_index = next((i for i, c in enumerate(canonical) if c in _CALL_AT_NAMES), None)
    special.update(i for i in (timezone_index, call_at_index) if i is not None)
    variables = [(i, name) for i, name in enumerate(header) if name and i not in special]
    missing = sorted(required_variables - {name for _, name in variables})
    if missing:
        raise IngestError(
            IngestErrorCode.MISSING_VARIABLE, f"no column for required variables {missing}"
        )
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
    start = campaign.start_at or session.execute(select(func.now())).scalar_one()
    if start.tzinfo is None:  # set in Python and not reloaded: the models' times are UTC
        start = start.replace(tzinfo=UTC)
    default_due = _timestamptz_field(start)
    # The fields every job shares: count, campaign_id, account_id; status and the counters.
    head = struct.pack("!hiqiq", len(_COPY_COLUMNS), 8, campaign.id, 8, campaign.account_id)
    tail = _text_field(JobStatus.PENDING.value) + _INT4_FIELD.pack(4, 0) + _INT4_FIELD.pack(4, 0)
    keys = [(i, encode_basestring_ascii(name) + ":") for i, name in variables]
    zone_fields: dict[str | None, bytes] = {None: _NULL_FIELD}

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
                if _zone(given) is None:
                    reject(line, RowRejectReason.INVALID_TIMEZONE, row)
                    continue
                zone_name = given
            else:
                zones = info.timezones
                zone_name = zones[0] if len(zones) == 1 else None
            due = default_due
            if call_at_index is not None and (call_at := row[call_at_index].strip()):
                moment = _parse_call_at(call_at, zone_name)
                if moment is None:
                    reject(line, RowRejectReason.INVALID_CALL_AT, row)
                    continue
                due = _timestamptz_field(moment)
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
                        due,
                        tail,
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
    return summary
