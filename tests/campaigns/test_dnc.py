"""The do-not-call list service against a real PostgreSQL."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from campaigns import dnc
from campaigns.csvsource import IngestError, IngestErrorCode
from dialer.errors import DialerError
from dialer.numbers import NumberRejected, RejectReason
from models import DncEntry
from tests.factories import make_account


def test_add_normalises_and_counts_only_new_numbers(db_session: Session) -> None:
    account = make_account(db_session)
    added = dnc.add(db_session, account.id, ["(212) 555-0143", "+12125550143"], "US", "asked")
    assert added == 1
    assert dnc.add(db_session, account.id, ["212.555.0143", "212-555-0100"], "US") == 1
    entry = db_session.get(DncEntry, (account.id, "+12125550143"))
    assert entry is not None
    assert entry.reason == "asked"
    assert dnc.add(db_session, account.id, [], "US") == 0


def test_add_refuses_an_invalid_number_and_adds_nothing(db_session: Session) -> None:
    account = make_account(db_session)
    with pytest.raises(NumberRejected) as caught:
        dnc.add(db_session, account.id, ["212-555-0143", "555-0143"], "US")
    assert caught.value.reason is RejectReason.INVALID_NUMBER
    assert caught.value.number == "555-0143"
    assert dnc.load_set(db_session, account.id) == set()


def test_is_blocked_is_per_account(db_session: Session) -> None:
    account = make_account(db_session)
    other = make_account(db_session, name="other")
    dnc.add(db_session, account.id, ["+44 20 7946 0958"], "US")
    assert dnc.is_blocked(db_session, account.id, "+442079460958")
    assert not dnc.is_blocked(db_session, other.id, "+442079460958")
    assert not dnc.is_blocked(db_session, account.id, "+12125550143")


def test_remove(db_session: Session) -> None:
    account = make_account(db_session)
    dnc.add(db_session, account.id, ["212-555-0143", "212-555-0100"], "US")
    assert dnc.remove(db_session, account.id, ["(212) 555-0143", "212-555-0177"], "US") == 1
    assert dnc.load_set(db_session, account.id) == {"+12125550100"}


def test_import_csv(db_session: Session) -> None:
    account = make_account(db_session)
    dnc.add(db_session, account.id, ["212-555-0100"], "US")
    data = "name;Mobile Number\nAda;212-555-0143\nGrace;212-555-0100\nAlan;n/a\n\nBob\n"
    summary = dnc.import_csv(db_session, account.id, io.BytesIO(data.encode("utf-16")), "US")
    assert summary == dnc.DncImportSummary(rows=4, added=1, already=1, invalid=2)
    assert dnc.load_set(db_session, account.id) == {"+12125550100", "+12125550143"}
    listed = db_session.scalars(select(DncEntry.e164).where(DncEntry.account_id == account.id))
    assert sorted(listed) == ["+12125550100", "+12125550143"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", IngestErrorCode.EMPTY_FILE),
        (b"phone\n", IngestErrorCode.HEADER_ONLY),
        (b"name\nAda\n", IngestErrorCode.NO_PHONE_COLUMN),
    ],
)
def test_import_csv_file_errors(db_session: Session, data: bytes, code: IngestErrorCode) -> None:
    account = make_account(db_session)
    with pytest.raises(IngestError) as caught:
        dnc.import_csv(db_session, account.id, io.BytesIO(data), "US")
    assert caught.value.code is code


def test_entries_are_the_accounts_newest_first_a_page_at_a_time(db_session: Session) -> None:
    account = make_account(db_session)
    other = make_account(db_session, name="other")
    dnc.add(db_session, account.id, [f"+1212555{n:04d}" for n in range(5)], "US", "asked")
    dnc.add(db_session, other.id, ["+12125559999"], "US")
    # One transaction lists them all at one `now()`: spread them over five days, the
    # highest number first so that time, not the number, orders them.
    for n in range(5):
        db_session.execute(
            update(DncEntry)
            .where(DncEntry.account_id == account.id, DncEntry.e164 == f"+1212555{n:04d}")
            .values(created_at=datetime(2027, 1, 10 - n, tzinfo=UTC))
        )
    first = dnc.entries(db_session, account.id, limit=2)
    assert [e.e164 for e in first.items] == ["+12125550000", "+12125550001"]
    assert first.next_cursor is not None
    second = dnc.entries(db_session, account.id, limit=2, cursor=first.next_cursor)
    assert [e.e164 for e in second.items] == ["+12125550002", "+12125550003"]
    last = dnc.entries(db_session, account.id, limit=2, cursor=second.next_cursor)
    assert [e.e164 for e in last.items] == ["+12125550004"]
    assert last.next_cursor is None
    # Listed at the same moment: by number, highest first, and still paged without a gap.
    db_session.execute(
        update(DncEntry)
        .where(DncEntry.account_id == account.id)
        .values(created_at=datetime(2027, 1, 1, tzinfo=UTC))
    )
    tied = dnc.entries(db_session, account.id, limit=3)
    rest = dnc.entries(db_session, account.id, limit=3, cursor=tied.next_cursor)
    assert [e.e164 for e in tied.items + rest.items] == [
        f"+1212555{n:04d}" for n in range(4, -1, -1)
    ]
    assert [e.reason for e in tied.items] == ["asked"] * 3


def test_entries_refuse_another_lists_cursor(db_session: Session) -> None:
    account = make_account(db_session)
    with pytest.raises(DialerError) as caught:
        dnc.entries(db_session, account.id, cursor="eyJsIjoiY2FtcGFpZ25zIiwiayI6WzFdfQ")
    assert caught.value.code == "invalid_cursor"
