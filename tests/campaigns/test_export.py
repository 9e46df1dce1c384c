"""The per-contact results export: one row per contact, formula-safe, last attempt's facts."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy.orm import Session

from campaigns.reports import EXPORT_COLUMNS, export_results
from dialer.errors import NotFoundError
from models import AttemptStatus, JobStatus, Outcome
from tests.factories import make_account, make_attempt, make_campaign, make_job


def test_export_escapes_formulas_and_reports_the_last_attempt(db_session: Session) -> None:
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
    for attempt_no, answered_by in ((1, None), (2, "human")):
        make_attempt(
            db_session,
            done,
            attempt_no=attempt_no,
            status=AttemptStatus.COMPLETED,
            answered_by=answered_by,
            digits="1" if answered_by else None,
            duration_s=42 if answered_by else None,
        )
    out = io.StringIO(newline="")
    assert export_results(db_session, account.id, campaign.id, out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == [*EXPORT_COLUMNS, "first_name", "note"]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["phone"] == "'+12125550143"  # a leading + is a formula to a spreadsheet
    assert first["first_name"] == '\'=HYPERLINK("http://x")'
    assert first["note"] == "'@SUM(A1)"
    assert (first["outcome"], first["attempts"]) == ("answered", "2")
    assert (first["answered_by"], first["digits"], first["talk_seconds"]) == ("human", "1", "42")
    second = dict(zip(rows[0], rows[2], strict=True))
    assert (second["status"], second["outcome"], second["answered_by"]) == ("pending", "", "")
    assert second["note"] == "'-"
    # The database keeps the values as given.
    assert done.variables["first_name"].startswith("=")


def test_export_of_an_unknown_campaign_is_not_found(db_session: Session) -> None:
    account = make_account(db_session)
    with pytest.raises(NotFoundError) as raised:
        export_results(db_session, account.id, 999_999, io.StringIO())
    assert raised.value.code == "campaign_not_found"
