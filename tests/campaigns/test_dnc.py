"""The do-not-call list service against a real PostgreSQL."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import dnc
from campaigns.csvsource import IngestError, IngestErrorCode
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
