"""Reading CSV files of unknown origin as a stream: encoding and delimiter detection,
the header, and the phone column. Shared by campaign ingest and the DNC import."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, BinaryIO

import charset_normalizer

from dialer.errors import DialerError


class IngestErrorCode(StrEnum):
    """Why a whole file is refused (nothing is written)."""

    UNDECODABLE = "undecodable"
    EMPTY_FILE = "empty_file"
    HEADER_ONLY = "header_only"
    NO_PHONE_COLUMN = "no_phone_column"
    TOO_LARGE = "too_large"
    LINE_TOO_LONG = "line_too_long"
    MISSING_VARIABLE = "missing_variable"
    UNKNOWN_COLUMN = "unknown_column"


class IngestError(DialerError):
    """A CSV refused as a whole (nothing is written); `code` is an `IngestErrorCode`,
    `message` says it for people."""

    http_status = 422
    code: IngestErrorCode

    def __init__(self, code: IngestErrorCode, message: str) -> None:
        super().__init__(code, message)


# ---- reading the source --------------------------------------------------------------------

_SAMPLE_BYTES = 64 * 1024
_SNIFF_LINES = 50
_PROGRESS_EVERY = 1024 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_WINDOWS_WESTERN = "cp1252"
MAX_LINE_CHARS = 64 * 1024
"""Longest physical line `open_csv` reads, in characters, its line end included: a file
without newlines is refused (`line_too_long`) after this much, never read whole into
memory. Half of `csv.field_size_limit`'s default (131072), so no field the reader can
split is refused here."""


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


def _bounded_lines(stream: io.TextIOBase, max_chars: int) -> Iterator[str]:
    """The physical lines of `stream`, each read with at most `max_chars` + 1 characters
    in memory.

    Raises:
        IngestError: `line_too_long`.
    """
    line_no = 0
    while line := stream.readline(max_chars + 1):
        line_no += 1
        if len(line) > max_chars:
            raise IngestError(
                IngestErrorCode.LINE_TOO_LONG,
                f"line {line_no} is longer than {max_chars} characters",
            )
        yield line


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
            IngestError: `undecodable` (bytes not valid in `encoding`), `too_large`,
                `line_too_long`.
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
    max_line_chars: int = MAX_LINE_CHARS,
    progress: Callable[[int], None] | None = None,
) -> CsvSource:
    """Start streaming the CSV in `source` (bytes): detect its encoding (UTF-8 with or
    without BOM, UTF-16/32 with BOM, else charset-normalizer's guess on the first 64 KiB)
    and delimiter, read the header. `progress(bytes_read)` is called about every MiB.
    Memory stays flat whatever the file: lines are read at most `max_line_chars` at a time.

    Raises:
        IngestError: `empty_file` (no bytes, or only blank lines), `undecodable`,
            `too_large` (more than `max_bytes` bytes), `line_too_long` (a line of more
            than `max_line_chars` characters, here or later in `rows()`).
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
    reader = csv.reader(_bounded_lines(stream, max_line_chars), delimiter=delimiter, strict=False)
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
_NOT_ALNUM = re.compile(r"[\W_]+")


def variable_name(header: str) -> str:
    """The template variable a column fills: its header in lower case, runs of spaces and
    punctuation as one underscore (`First Name`, `first-name`, `FIRST_NAME` and
    ` first name ` all fill `{first_name}`)."""
    return _NOT_ALNUM.sub("_", header.strip().lower()).strip("_")


def canonical_name(name: str) -> str:
    """A header name without case, spaces or punctuation (`Phone Number` -> `phonenumber`)."""
    return _NOT_ALNUM.sub("", name).lower()


def find_phone_column(header: list[str], phone_column: str | None = None) -> int:
    """Index of the phone column in `header` (stripped names): `phone_column` if given
    (exact, else ignoring case, spaces and punctuation), else the first of the usual names
    (phone, phone_number, number, mobile, to, to_number, tel, telephone, ...).

    Raises:
        IngestError: `no_phone_column`.
    """
    canonical = [canonical_name(name) for name in header]
    if phone_column is not None:
        wanted = phone_column.strip()
        if wanted in header:
            return header.index(wanted)
        if canonical_name(wanted) in canonical:
            return canonical.index(canonical_name(wanted))
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
