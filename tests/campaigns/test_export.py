"""The exports: one row per contact with every attempt, one row per attempt; formula-safe,
E.164 numbers as they are."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest
from sqlalchemy.orm import Session

from campaigns.reports import (
    ATTEMPT_COLUMNS,
    ATTEMPT_FIELDS,
    EXPORT_COLUMNS,
    csv_cell,
    export_attempts,
    export_results,
    export_xlsx,
)
from dialer.errors import NotFoundError
from models import AttemptStatus, JobStatus, Outcome
from tests.factories import make_account, make_attempt, make_campaign, make_job


def test_export_escapes_formulas_and_gives_every_attempt(db_session: Session) -> None:
    account = make_account(db_session)
    campaign = make_campaign(db_session, account)
    done = make_job(
        db_session,
        campaign,
        "+12125550143",
        line_no=2,
        variables={"first_name": '=HYPERLINK("http://x")', "note": "@SUM(A1)"},
        status=JobStatus.DONE,
        outcome=Outcome.ANSWERED,
        attempt_count=2,
    )
    make_job(
        db_session,
        campaign,
        "+12125550144",
        line_no=3,
        variables={"first_name": "Ada", "note": "-"},
    )
    first_at = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    make_attempt(
        db_session,
        done,
        attempt_no=1,
        status=AttemptStatus.FAILED,
        placed_at=first_at,
        error_code=32009,
        duration_s=0,
    )
    make_attempt(
        db_session,
        done,
        attempt_no=2,
        status=AttemptStatus.COMPLETED,
        placed_at=first_at + timedelta(hours=1),
        answered_by="human",
        digits="1",
        duration_s=42,
    )
    out = io.StringIO(newline="")
    assert export_results(db_session, account.id, campaign.id, out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    per_attempt = [f"attempt{i}_{f}" for i in (1, 2) for f in ATTEMPT_FIELDS]
    assert rows[0] == [*EXPORT_COLUMNS, *per_attempt, "first_name", "note"]
    first = dict(zip(rows[0], rows[1], strict=True))
    # E.164 as it is: `+` and digits cannot be a formula; no prefix corrupts the number.
    assert first["phone"] == "+12125550143"
    assert first["first_name"] == '\'=HYPERLINK("http://x")'
    assert first["note"] == "'@SUM(A1)"
    assert (first["outcome"], first["attempts"]) == ("answered", "2")
    assert (first["answered_by"], first["digits"], first["talk_seconds"]) == ("human", "1", "42")
    assert [first[f"attempt1_{f}"] for f in ATTEMPT_FIELDS] == [
        "2026-11-22T09:00:00+00:00",
        "failed",
        "",
        "0",
        "32009",
        "",
    ]
    assert [first[f"attempt2_{f}"] for f in ATTEMPT_FIELDS] == [
        "2026-11-22T10:00:00+00:00",
        "completed",
        "human",
        "42",
        "",
        "1",
    ]
    second = dict(zip(rows[0], rows[2], strict=True))
    assert (second["status"], second["outcome"], second["answered_by"]) == ("pending", "", "")
    assert second["attempt1_status"] == ""
    assert second["note"] == "'-"
    # The database keeps the values as given.
    assert done.variables["first_name"].startswith("=")

    out = io.StringIO(newline="")
    assert export_attempts(db_session, account.id, campaign.id, out) == 2
    attempts = [
        dict(zip(ATTEMPT_COLUMNS, row, strict=True))
        for row in list(csv.reader(io.StringIO(out.getvalue())))[1:]
    ]
    assert [(a["line"], a["phone"], a["attempt_no"], a["status"]) for a in attempts] == [
        ("2", "+12125550143", "1", "failed"),
        ("2", "+12125550143", "2", "completed"),
    ]
    assert (attempts[0]["error_code"], attempts[1]["digits"]) == ("32009", "1")


def test_csv_cells_escape_formulas_but_not_e164_numbers() -> None:
    assert csv_cell("+442079460000") == "+442079460000"
    for dangerous in ("+1+cmd|' /C calc'!A0", "+", "=1+1", "-2", "@A1", "\tx", "+1 212 555"):
        assert csv_cell(dangerous) == "'" + dangerous


def test_export_of_an_unknown_campaign_is_not_found(db_session: Session) -> None:
    account = make_account(db_session)
    with pytest.raises(NotFoundError) as raised:
        export_results(db_session, account.id, 999_999, io.StringIO())
    assert raised.value.code == "campaign_not_found"


def test_xlsx_keeps_e164_as_text_and_never_a_formula(db_session: Session) -> None:
    account = make_account(db_session)
    campaign = make_campaign(db_session, account)
    job = make_job(
        db_session,
        campaign,
        "+442079460000",
        variables={"first_name": '=HYPERLINK("http://x")', "note": "a\x01b <&>"},
        status=JobStatus.DONE,
        outcome=Outcome.BUSY,
        attempt_count=1,
    )
    make_attempt(db_session, job, status=AttemptStatus.BUSY, duration_s=0)
    book = io.BytesIO()
    assert export_xlsx(db_session, account.id, campaign.id, book, attempts=False) == 1
    sheet = openpyxl.load_workbook(book).active
    header, row = ([cell for cell in r] for r in sheet.iter_rows(max_row=2))
    cells = {h.value: c for h, c in zip(header, row, strict=True)}
    assert (cells["phone"].value, cells["phone"].data_type) == ("+442079460000", "s")
    assert (cells["first_name"].value, cells["first_name"].data_type) == (
        '=HYPERLINK("http://x")',
        "s",  # a string, not a formula ("f")
    )
    assert cells["note"].value == "ab <&>"  # a character XML cannot carry is dropped
    assert (cells["attempts"].value, cells["attempts"].data_type) == (1, "n")
    book = io.BytesIO()
    assert export_xlsx(db_session, account.id, campaign.id, book, attempts=True) == 1
    [_, attempt] = openpyxl.load_workbook(book).active.iter_rows(values_only=True)
    assert attempt[1] == "+442079460000"
    with pytest.raises(NotFoundError):
        export_xlsx(db_session, account.id, 999_999, io.BytesIO(), attempts=False)


def test_the_export_has_every_contacts_variable_columns_not_the_first_contacts(
    db_session: Session,
) -> None:
    """Contacts of one campaign with different variables (pushed to a schedule, single
    calls into a named campaign): each column any contact has is exported."""
    account = make_account(db_session)
    campaign = make_campaign(db_session, account)
    make_job(db_session, campaign, "+12125550143", line_no=2, variables={"first_name": "Ada"})
    make_job(
        db_session,
        campaign,
        "+12125550144",
        line_no=3,
        variables={"first_name": "Grace", "order": "A-17"},
    )
    make_job(db_session, campaign, "+12125550145", line_no=4, variables={})
    sink = io.StringIO()
    assert export_results(db_session, account.id, campaign.id, sink) == 3
    header, *rows = list(csv.reader(io.StringIO(sink.getvalue())))
    assert header[-2:] == ["first_name", "order"]
    assert [row[-2:] for row in rows] == [["Ada", ""], ["Grace", "A-17"], ["", ""]]
