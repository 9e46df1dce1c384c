"""Campaign CSV ingest against a real PostgreSQL: encodings, delimiters, every reject
reason, file-level errors, atomicity, the summary and the rejected-rows file."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import UTC, datetime, time
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import dnc
from campaigns.csvsource import IngestError, IngestErrorCode
from campaigns.ingest import (
    IngestSummary,
    RowRejectReason,
    escape_formula,
    ingest_contacts,
)
from dialer.windows import CallingWindow, Place, next_opening
from models import CallJob, Campaign, JobStatus, engine_for, transaction
from tests.factories import make_account, make_campaign

HEADER = "first_name,phone,clinic\n"


def run(
    session: Session, data: bytes | str, campaign: Campaign | None = None, **options: Any
) -> IngestSummary:
    campaign = campaign or make_campaign(session, make_account(session))
    source = io.BytesIO(data.encode() if isinstance(data, str) else data)
    return ingest_contacts(session, campaign, source, **options)


def jobs(session: Session) -> list[CallJob]:
    return list(session.scalars(select(CallJob).order_by(CallJob.line_no)))


def test_sample_appointments(db_session: Session) -> None:
    data = (resources.files("campaigns.samples") / "appointments.csv").read_bytes()
    summary = run(db_session, data)
    assert summary.rows == 40
    assert summary.accepted == 36
    assert summary.rejected == {
        "duplicate": 1,
        "emergency_or_short_code": 1,
        "invalid_number": 1,
        "missing_number": 1,
    }
    first = jobs(db_session)[0]
    assert (first.line_no, first.phone_e164, first.timezone) == (
        2,
        "+12125550143",
        "America/New_York",
    )
    assert first.variables == {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "appointment_time": "2026-03-02 09:00",
        "clinic": "Midtown Dental",
    }
    assert first.status is JobStatus.PENDING
    assert {job.phone_e164 for job in jobs(db_session)} >= {"+442079460958", "+442079460001"}


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
        ("utf-16-be-bom", "utf-16"),
        ("cp1252", "cp1252"),
        ("latin-1", "cp1252"),
    ],
)
def test_encodings(db_session: Session, encoding: str, expected: str) -> None:
    names = ["Zoë", "Müller", "José", "Françoise", "Søren", "Ångström", "Núñez", "Björk"]
    text = HEADER + "".join(
        f"{name},+1 212 555 01{index % 8:02d},Café Clinic\n" for index, name in enumerate(names * 4)
    )
    data = (
        b"\xfe\xff" + text.encode("utf-16-be")
        if encoding == "utf-16-be-bom"
        else text.encode(encoding)
    )
    summary = run(db_session, data)
    assert summary.accepted == len(names)
    assert summary.rejected == {"duplicate": len(names) * 3}
    assert summary.encoding == expected
    assert [job.variables["first_name"] for job in jobs(db_session)] == names
    assert jobs(db_session)[0].variables["clinic"] == "Café Clinic"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters(db_session: Session, delimiter: str) -> None:
    rows = [["name", "phone", "note"], ["Ada", "(212) 555-0143", "a, b; c|d"]]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    summary = run(db_session, buffer.getvalue())
    assert summary.delimiter == delimiter
    assert summary.accepted == 1
    assert jobs(db_session)[0].variables == {"name": "Ada", "note": "a, b; c|d"}


def test_quoted_newlines_blank_lines_and_line_numbers(db_session: Session) -> None:
    data = (
        "\r\nname,phone,note\r\n"
        'Ada,212-555-0143,"two\r\nlines"\r\n'
        "\r\n"
        "   \r\n"
        ",,\r\n"
        'Grace,212-555-0100,"x ""quoted"" y"\r\n'
        "Alan,bad\r\n"
    )
    sink = io.StringIO()
    summary = run(db_session, data, rejected_sink=sink)
    assert summary.rows == 3
    assert [(job.line_no, job.variables["note"]) for job in jobs(db_session)] == [
        (3, "two\r\nlines"),
        (8, 'x "quoted" y'),
    ]
    assert list(csv.reader(io.StringIO(sink.getvalue()))) == [
        ["line", "reason", "name", "phone", "note"],
        ["9", "malformed_row", "Alan", "bad"],
    ]


def test_every_reject_reason(db_session: Session) -> None:
    account = make_account(db_session)
    campaign = make_campaign(
        db_session, account, allowed_countries=["US", "GB", "001"], window_end=time(12)
    )
    dnc.add(db_session, account.id, ["212-555-0199"], "US")
    data = (
        "name,phone,clinic,timezone,call_at,call_before\n"
        "ok,212-555-0143,A,,,\n"  # 2
        "few,212-555-0144\n"  # 3
        "many,212-555-0145,A,,,,extra\n"  # 4
        "invalid,555-0143,A,,,\n"  # 5
        "emergency,911,A,,,\n"  # 6
        "premium,1-900-555-0143,A,,,\n"  # 7
        "foreign,+49 30 901820,A,,,\n"  # 8
        "dnc,(212) 555-0199,A,,,\n"  # 9
        "dup,+12125550143,A,,,\n"  # 10
        "missing,,A,,,\n"  # 11
        "novar,212-555-0146, ,,,\n"  # 12
        "badtime,212-555-0147,A,,tomorrow,\n"  # 13
        "badzone,212-555-0148,A,Mars/Olympus,,\n"  # 14
        "nozone,+800 1234 5678,A,,,\n"  # 15: a number in no zone, no campaign zone
        "badbefore,212-555-0149,A,,,soon\n"  # 16
        "tollfree,800-555-0143,A,,,\n"  # 17: Guam to Newfoundland never all in 09-12
    )
    sink = io.StringIO()
    summary = run(
        db_session,
        data,
        campaign,
        required_variables=frozenset({"clinic"}),
        rejected_sink=sink,
    )
    assert summary.rows == 16
    assert summary.accepted == 1
    assert summary.rejected == {
        reason.value: 2 if reason is RowRejectReason.MALFORMED_ROW else 1
        for reason in RowRejectReason
    }
    assert summary.accepted + sum(summary.rejected.values()) == summary.rows
    lines = {int(row[0]): row[1] for row in list(csv.reader(io.StringIO(sink.getvalue())))[1:]}
    assert lines == {
        3: "malformed_row",
        4: "malformed_row",
        5: "invalid_number",
        6: "emergency_or_short_code",
        7: "premium_rate",
        8: "country_not_allowed",
        9: "do_not_call",
        10: "duplicate",
        11: "missing_number",
        12: "missing_variable",
        13: "invalid_call_at",
        14: "invalid_timezone",
        15: "unknown_timezone",
        16: "invalid_call_before",
        17: "no_calling_window",
    }


def test_allow_premium(db_session: Session) -> None:
    campaign = make_campaign(db_session, make_account(db_session), allow_premium=True)
    summary = run(db_session, HEADER + "Ada,1-900-555-0143,A\n", campaign)
    assert summary.accepted == 1


def test_duplicates_of_an_earlier_ingest_into_the_campaign(db_session: Session) -> None:
    campaign = make_campaign(db_session, make_account(db_session))
    run(db_session, HEADER + "Ada,212-555-0143,A\n", campaign)
    summary = run(db_session, HEADER + "Ada,212-555-0143,A\nGrace,212-555-0100,A\n", campaign)
    assert (summary.accepted, summary.rejected) == (1, {"duplicate": 1})


def test_time_zones_call_at_and_call_before(db_session: Session) -> None:
    start = datetime(2027, 3, 1, 12, tzinfo=UTC)  # a Monday, 07:00 in New York
    campaign = make_campaign(db_session, make_account(db_session), start_at=start)
    data = (
        "phone,tz,call_at,call_before\n"
        "212-555-0143,,,\n"
        "212-555-0100,America/Chicago,2027-03-02 09:00,\n"
        "212-555-0177,,2027-03-02 10:30,\n"
        "212-555-0188,,2027-03-02T09:00:00Z,\n"
        "212-555-0111,,,2027-03-01 08:30\n"
        "212-555-0112,,,2027-03-01T18:00:00-05:00\n"
        "800-555-0101,,2027-03-02 09:00,\n"
    )
    summary = run(db_session, data, campaign)
    assert summary.rejected == {"invalid_call_at": 1}  # a local time in several zones
    found = [
        (job.timezone, job.zones, job.next_due_at, job.call_before) for job in jobs(db_session)
    ]
    ny = ["America/New_York"]
    assert found == [
        # Due at the window's opening (09:00 local) after start_at.
        ("America/New_York", ny, datetime(2027, 3, 1, 14, tzinfo=UTC), None),
        # call_at in the CSV's zone, inside the window.
        ("America/Chicago", ["America/Chicago"], datetime(2027, 3, 2, 15, tzinfo=UTC), None),
        ("America/New_York", ny, datetime(2027, 3, 2, 15, 30, tzinfo=UTC), None),
        # 04:00 in New York: moved to the opening.
        ("America/New_York", ny, datetime(2027, 3, 2, 14, tzinfo=UTC), None),
        # The appointment passes before the window opens: due at call_before, to expire.
        (
            "America/New_York",
            ny,
            datetime(2027, 3, 1, 13, 30, tzinfo=UTC),
            datetime(2027, 3, 1, 13, 30, tzinfo=UTC),
        ),
        (
            "America/New_York",
            ny,
            datetime(2027, 3, 1, 14, tzinfo=UTC),
            datetime(2027, 3, 1, 23, tzinfo=UTC),
        ),
    ]


def test_zones_from_the_number_the_csv_or_the_campaign(db_session: Session) -> None:
    campaign = make_campaign(
        db_session, make_account(db_session), timezone="Europe/Paris", allowed_countries=None
    )
    data = (
        "phone,timezone\n"
        "305-555-0143,\n"  # Miami: Florida's legal hours
        "+61 412 345 678,\n"  # an Australian mobile: every Australian zone
        "+800 1234 5678,\n"  # no zone: the campaign's
        "212-555-0100,Asia/Tokyo\n"  # the CSV's zone wins
    )
    assert run(db_session, data, campaign).accepted == 4
    found = [(j.zones, j.region, j.subdivision) for j in jobs(db_session)]
    assert found[0] == (["America/New_York"], "US", "FL")
    assert "Australia/Perth" in found[1][0] and "Australia/Sydney" in found[1][0]
    assert found[1][1:] == ("AU", None)
    assert found[2] == (["Europe/Paris"], "001", None)
    assert found[3] == (["Asia/Tokyo"], "US", None)


def test_next_due_is_now_or_the_next_opening(db_session: Session) -> None:
    summary = run(db_session, HEADER + "Ada,212-555-0143,A\n")
    assert summary.accepted == 1
    now = db_session.scalar(select(func.now()))
    assert now is not None
    place = Place(("America/New_York",), "US")
    assert jobs(db_session)[0].next_due_at == next_opening(CallingWindow(), place, now)


@pytest.mark.parametrize(
    ("data", "options", "code"),
    [
        (b"", {}, IngestErrorCode.EMPTY_FILE),
        (b"\n \r\n\n", {}, IngestErrorCode.EMPTY_FILE),
        (b"phone,name\n", {}, IngestErrorCode.HEADER_ONLY),
        (b"phone,name\n\n\n", {}, IngestErrorCode.HEADER_ONLY),
        (b"name,email\nAda,a@example.com\n", {}, IngestErrorCode.NO_PHONE_COLUMN),
        (
            b"phone,name\n2125550143,Ada\n",
            {"phone_column": "cell"},
            IngestErrorCode.NO_PHONE_COLUMN,
        ),
        (b"\xef\xbb\xbfphone\n\xff\xfe\xfa\n", {}, IngestErrorCode.UNDECODABLE),
        (b"phone\n" + b"2125550143\n" * 100, {"max_bytes": 500}, IngestErrorCode.TOO_LARGE),
        (
            b"phone,name\n2125550143,Ada\n",
            {"required_variables": frozenset({"clinic"})},
            IngestErrorCode.MISSING_VARIABLE,
        ),
    ],
)
def test_file_level_errors(
    db_session: Session, data: bytes, options: dict[str, Any], code: IngestErrorCode
) -> None:
    with pytest.raises(IngestError) as caught:
        run(db_session, data, **options)
    assert caught.value.code is code


def test_explicit_phone_column(db_session: Session) -> None:
    data = "Home Phone,Cell Phone\n212-555-0143,212-555-0100\n"
    assert run(db_session, data, phone_column="cell phone").accepted == 1
    assert jobs(db_session)[0].phone_e164 == "+12125550100"
    assert jobs(db_session)[0].variables == {"home_phone": "212-555-0143"}


@pytest.mark.parametrize("header", ["First Name", "first-name", "FIRST_NAME", " first name "])
def test_headers_fill_variables_whatever_their_spelling(db_session: Session, header: str) -> None:
    data = f"phone,{header}\n212-555-0143,Ada\n"
    summary = run(db_session, data, required_variables=frozenset({"first_name"}))
    assert summary.accepted == 1
    assert jobs(db_session)[0].variables == {"first_name": "Ada"}


def test_column_map_names_the_other_columns(db_session: Session) -> None:
    data = "Phone,First Name,Appt Date\n212-555-0143,Ada,Monday 9:30\n"
    campaign = make_campaign(db_session, make_account(db_session))
    summary = run(
        db_session,
        data,
        campaign,
        column_map={"Appt Date": "appointment_time"},
        required_variables=frozenset({"first_name", "appointment_time"}),
    )
    assert summary.accepted == 1
    assert jobs(db_session)[0].variables == {
        "first_name": "Ada",
        "appointment_time": "Monday 9:30",
    }
    with pytest.raises(IngestError) as caught:
        run(db_session, data, campaign, column_map={"Appointment": "appointment_time"})
    assert caught.value.code is IngestErrorCode.UNKNOWN_COLUMN
    assert "Phone, First Name, Appt Date" in caught.value.message


def test_a_missing_variable_lists_the_columns_and_the_nearest(db_session: Session) -> None:
    data = "Phone,First Name,Appt Date\n212-555-0143,Ada,Monday 9:30\n"
    with pytest.raises(IngestError) as caught:
        run(db_session, data, required_variables=frozenset({"first_name", "appointment_time"}))
    assert caught.value.code is IngestErrorCode.MISSING_VARIABLE
    assert caught.value.message == (
        "{appointment_time} has no column; the file has Phone, First Name, Appt Date; "
        "did you mean Appt Date?"
    )


def test_error_mid_stream_leaves_nothing(database_url: str) -> None:
    # Valid UTF-8 for longer than the 64 KiB sample, then a byte that is not.
    body = "".join(f"Ada,+1212555{index % 10000:04d}\n" for index in range(6000)).encode()
    data = b"name,phone\n" + body + b"\xff\xfe\n"
    with pytest.raises(IngestError) as caught, transaction(database_url) as session:
        campaign = make_campaign(session, make_account(session, name="atomic"), name="atomic")
        ingest_contacts(session, campaign, io.BytesIO(data))
    assert caught.value.code is IngestErrorCode.UNDECODABLE
    with engine_for(database_url).connect() as conn:
        assert conn.scalar(select(func.count()).where(Campaign.name == "atomic")) == 0
        assert conn.scalar(select(func.count()).select_from(CallJob)) == 0


class _OneLongLine(io.RawIOBase):
    """A CSV of `size` bytes whose second line never ends, made as it is read (never held
    whole): what a 500 MB one-line upload looks like to ingest."""

    def __init__(self, size: int) -> None:
        self.head = b"phone,name\n+12125550143,"
        self.size = size
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), self.size - self.served)
        start = self.served
        for index in range(count):
            at = start + index
            view[index] = self.head[at] if at < len(self.head) else ord("a")
        self.served += count
        return count


def test_a_line_without_end_is_refused_in_flat_memory(database_url: str) -> None:
    source = _OneLongLine(32 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(IngestError) as caught, transaction(database_url) as session:
            campaign = make_campaign(session, make_account(session, name="long"), name="long")
            ingest_contacts(session, campaign, io.BufferedReader(source))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code is IngestErrorCode.LINE_TOO_LONG
    assert peak < 8 * 1024 * 1024
    assert source.served < 4 * 1024 * 1024
    with engine_for(database_url).connect() as conn:
        assert conn.scalar(select(func.count()).where(Campaign.name == "long")) == 0
        assert conn.scalar(select(func.count()).select_from(CallJob)) == 0


def test_rejected_rows_are_formula_escaped(db_session: Session) -> None:
    sink = io.StringIO()
    run(
        db_session,
        'name,phone\n"=HYPERLINK(""http://x"")",911\n@SUM(A1),+1 999\n',
        rejected_sink=sink,
    )
    assert list(csv.reader(io.StringIO(sink.getvalue()))) == [
        ["line", "reason", "name", "phone"],
        ["2", "emergency_or_short_code", '\'=HYPERLINK("http://x")', "911"],
        ["3", "invalid_number", "'@SUM(A1)", "'+1 999"],
    ]


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Ada", "Ada"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_escape_formula(value: str, escaped: str) -> None:
    assert escape_formula(value) == escaped


def test_progress_and_summary_json(db_session: Session) -> None:
    data = HEADER + "Ada,212-555-0143,A\n" * 3
    seen: list[int] = []
    summary = run(db_session, data, progress=seen.append)
    assert seen[-1] == len(data)
    assert summary.to_json() == {
        "rows": 3,
        "accepted": 1,
        "rejected": {"duplicate": 2},
        "encoding": "utf-8",
        "delimiter": ",",
        "phone_column": "phone",
    }


def test_nul_in_a_value_is_a_malformed_row(db_session: Session) -> None:
    summary = run(db_session, HEADER + "A\x00da,212-555-0143,A\nGrace,212-555-0100,A\n")
    assert (summary.accepted, summary.rejected) == (1, {"malformed_row": 1})


ROW_TEXT = st.text(
    alphabet=st.sampled_from(list(',;|\t"\n\r x=+-@é\x00') + list("0123456789")), max_size=300
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=ROW_TEXT, raw=st.binary(max_size=200))
def test_arbitrary_input_never_crashes(database_url: str, body: str, raw: bytes) -> None:
    with engine_for(database_url).connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        try:
            campaign = make_campaign(session, make_account(session, name="property"))
            for data in (("phone,name\n" + body).encode(), raw):
                savepoint = session.begin_nested()
                try:
                    summary = run(session, data, campaign)
                except IngestError:
                    savepoint.rollback()
                    continue
                savepoint.commit()
                assert summary.accepted + sum(summary.rejected.values()) == summary.rows
        finally:
            session.close()
            outer.rollback()
