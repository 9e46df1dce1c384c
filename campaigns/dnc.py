"""The do-not-call (DNC) list: numbers an account must never call, kept in E.164.

Service functions on a SQLAlchemy `Session`; they never commit (the caller owns the
transaction). Numbers are normalised with `dialer.numbers.classify` in the caller's
default region, without campaign policy: a premium or foreign number can be listed too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from campaigns.csvsource import IngestError, IngestErrorCode, find_phone_column, open_csv
from campaigns.paging import Page, keyset_page
from dialer.numbers import NumberRejected, classify
from models import DncEntry

__all__ = [
    "DncImportSummary",
    "add",
    "entries",
    "import_csv",
    "is_blocked",
    "load_set",
    "remove",
]

_INSERT_BATCH = 5000


@dataclass(frozen=True)
class DncImportSummary:
    """A DNC CSV import: `rows` data rows read, `added` numbers new to the list, `already`
    numbers that were listed before (or twice in the file), `invalid` rows without a
    usable number."""

    rows: int
    added: int
    already: int
    invalid: int

    def to_json(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "added": self.added,
            "already": self.already,
            "invalid": self.invalid,
        }


def _insert(session: Session, account_id: int, e164s: list[str], reason: str | None) -> int:
    added = 0
    for start in range(0, len(e164s), _INSERT_BATCH):
        statement = (
            insert(DncEntry)
            .values(
                [
                    {"account_id": account_id, "e164": e164, "reason": reason}
                    for e164 in e164s[start : start + _INSERT_BATCH]
                ]
            )
            .on_conflict_do_nothing()
            .returning(DncEntry.e164)
        )
        added += len(session.execute(statement).all())
    return added


def add(
    session: Session,
    account_id: int,
    numbers: Iterable[str],
    default_region: str,
    reason: str | None = None,
) -> int:
    """List `numbers` (as typed; national ones read in `default_region`) for the account.

    All numbers are normalised before anything is written, so an invalid one adds none.

    Returns:
        How many were not listed before.
    Raises:
        NumberRejected: a number is missing, invalid or an emergency / short code; its
            `reason` is the stable code and `number` the input.
    """
    e164s = list(dict.fromkeys(classify(raw, default_region).e164 for raw in numbers))
    return _insert(session, account_id, e164s, reason) if e164s else 0


def remove(session: Session, account_id: int, numbers: Iterable[str], default_region: str) -> int:
    """Take `numbers` off the account's list.

    Returns:
        How many were listed.
    Raises:
        NumberRejected: as `add`.
    """
    e164s = list({classify(raw, default_region).e164 for raw in numbers})
    if not e164s:
        return 0
    result = session.execute(
        delete(DncEntry)
        .where(DncEntry.account_id == account_id, DncEntry.e164.in_(e164s))
        .returning(DncEntry.e164)
    )
    return len(result.all())


def is_blocked(session: Session, account_id: int, e164: str) -> bool:
    """Whether the account's DNC list holds `e164`."""
    return bool(session.scalar(select(DncEntry.listed(account_id, e164))))


def entries(
    session: Session, account_id: int, *, limit: int | None = None, cursor: str | None = None
) -> Page[DncEntry]:
    """The account's DNC entries, newest first (numbers listed together by number): one
    page of `limit` rows after `cursor` (`campaigns.paging`).

    Raises:
        DialerError: `invalid_cursor`, `invalid_option` (`limit` out of bounds).
    """
    query = select(DncEntry).where(DncEntry.account_id == account_id)
    order = [DncEntry.created_at, DncEntry.e164]
    return keyset_page(session, query, "dnc", order, descending=True, limit=limit, cursor=cursor)


def load_set(session: Session, account_id: int) -> set[str]:
    """The account's whole DNC list as E.164 strings (for checking a campaign CSV)."""
    return set(session.scalars(select(DncEntry.e164).where(DncEntry.account_id == account_id)))


def import_csv(
    session: Session,
    account_id: int,
    source: BinaryIO,
    default_region: str,
    reason: str | None = None,
) -> DncImportSummary:
    """List every number of a CSV (read like a campaign CSV: encoding, delimiter and phone
    column detected, see `campaigns.csvsource.open_csv`). Rows without a usable number are
    counted as `invalid`, not fatal.

    Raises:
        campaigns.csvsource.IngestError: file-level problems (`empty_file`, `header_only`,
            `undecodable`, `no_phone_column`, `too_large`).
    """
    csv_source = open_csv(source)
    phone_index = find_phone_column(csv_source.header)
    rows = invalid = 0
    e164s: dict[str, None] = {}
    for _, row in csv_source.rows():
        rows += 1
        if row is None or len(row) <= phone_index:
            invalid += 1
            continue
        try:
            e164 = classify(row[phone_index], default_region).e164
        except NumberRejected:
            invalid += 1
            continue
        e164s[e164] = None
    if rows == 0:
        raise IngestError(IngestErrorCode.HEADER_ONLY, "the file has a header but no rows")
    added = _insert(session, account_id, list(e164s), reason)
    return DncImportSummary(rows=rows, added=added, already=rows - invalid - added, invalid=invalid)
