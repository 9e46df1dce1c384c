"""The HTTP API as a client sees it: API keys, campaigns (upload, read, transitions,
report, rejected rows), the DNC list, health and metrics, served by uvicorn over HTTP."""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from typing import Any

import httpx
import openpyxl
import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from campaigns.reports import ATTEMPT_COLUMNS
from dialer.dispatch.attempt_end import finish_call
from dialer.runtime import Runtime
from dialer.web.app import create_app
from models import (
    AttemptStatus,
    CallJob,
    Campaign,
    JobStatus,
    MachineAction,
    Outcome,
    transaction,
)
from tests.factories import make_attempt
from tests.servers import serve_app
from tests.support import METRICS_TOKEN
from tests.web.support import KEY, OTHER_KEY, SAMPLE, Api, error_code
from workers.app import PACER_QUEUE


@pytest.fixture
def campaign_id(api: Api) -> int:
    response = api.upload(SAMPLE.read_bytes(), filename="appointments.csv")
    assert response.status_code == 201, response.text
    return int(response.json()["campaign_id"])


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {KEY}"}],
    ids=["none", "empty-bearer", "basic"],
)
def test_without_a_bearer_key_is_401_unauthenticated(api: Api, headers: dict[str, str]) -> None:
    for response in (
        api.http.get("/v1/campaigns", headers=headers),
        api.http.post("/v1/dnc", json={"numbers": ["+12125550143"]}, headers=headers),
    ):
        assert error_code(response, 401) == "unauthenticated"
    assert api.dnc_numbers() == set()


def test_a_wrong_key_is_401_unknown_api_key(api: Api) -> None:
    assert error_code(api.get("/v1/campaigns", key="not-a-key"), 401) == "unknown_api_key"
    response = api.upload(SAMPLE.read_bytes(), key="not-a-key")
    assert error_code(response, 401) == "unknown_api_key"
    assert api.campaign_count() == 0


# --- campaigns: upload and read ------------------------------------------------------------


def test_upload_creates_a_draft_campaign_with_its_ingest_summary(api: Api) -> None:
    response = api.upload(SAMPLE.read_bytes(), filename="appointments.csv")
    assert response.status_code == 201, response.text
    created = response.json()
    assert {"campaign_id", "rows", "accepted", "rejected", "rejected_csv"} <= set(created)
    assert created["rows"] == 40
    assert created["accepted"] + sum(created["rejected"].values()) == created["rows"]
    assert created["accepted"] > 0
    # The sample's bad rows: a local number, 911, a repeat of Ada, a blank phone.
    for reason in ("invalid_number", "emergency_or_short_code", "duplicate", "missing_number"):
        assert created["rejected"].get(reason, 0) >= 1, created["rejected"]
    campaign_id = created["campaign_id"]
    # Where to download them, not where the server keeps them.
    assert created["rejected_csv"] == f"/v1/campaigns/{campaign_id}/rejected.csv"
    assert str(api.runtime.settings.data_dir) not in response.text
    assert api.get(created["rejected_csv"]).status_code == 200
    theirs = api.get(created["rejected_csv"], key=OTHER_KEY)
    assert error_code(theirs, 404) == "campaign_not_found"

    listed = api.get("/v1/campaigns")
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["items"]] == [campaign_id]

    shown = api.get(f"/v1/campaigns/{campaign_id}")
    assert shown.status_code == 200
    campaign = shown.json()
    assert campaign["id"] == campaign_id
    assert campaign["name"] == "March reminders"
    assert campaign["status"] == "draft"
    assert campaign["status_reason"] is None
    assert campaign["max_concurrency"] == 10
    assert campaign["max_attempts"] == 3
    assert campaign["created_at"]
    assert campaign["ingest"]["rows"] == 40
    assert campaign["ingest"]["accepted"] == created["accepted"]
    assert campaign["ingest"]["rejected"] == created["rejected"]
    assert campaign["ingest"]["phone_column"] == "phone"

    # The other account sees none of it.
    assert api.get("/v1/campaigns", key=OTHER_KEY).json()["items"] == []


def test_rejected_rows_download_as_csv(api: Api, campaign_id: int) -> None:
    response = api.get(f"/v1/campaigns/{campaign_id}/rejected.csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0])[:2] == ["line", "reason"]
    expected = api.get(f"/v1/campaigns/{campaign_id}").json()["ingest"]["rejected"]
    assert len(rows) == sum(expected.values())
    by_name = {row["first_name"]: row for row in rows}
    assert by_name["Joan"]["reason"] == "emergency_or_short_code"
    assert by_name["Alonzo"]["reason"] == "missing_number"
    assert all(row["line"].isdigit() for row in rows)


def test_rejected_csv_of_a_clean_upload_is_404(api: Api) -> None:
    clean = b"first_name,phone,appointment_time\nAda,+12125550143,2026-03-02 09:00\n"
    response = api.upload(clean)
    assert response.status_code == 201, response.text
    assert response.json()["rejected_csv"] is None
    campaign_id = response.json()["campaign_id"]
    rejected = api.get(f"/v1/campaigns/{campaign_id}/rejected.csv")
    assert error_code(rejected, 404) == "no_rejected_rows"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty_file"),
        (b"first_name,appointment_time\nAda,2026-03-02 09:00\n", "no_phone_column"),
    ],
    ids=["empty", "no-phone-column"],
)
def test_a_file_level_error_is_422_and_creates_nothing(
    api: Api, runtime: Runtime, content: bytes, code: str
) -> None:
    assert error_code(api.upload(content), 422) == code
    assert api.campaign_count() == 0
    assert api.get("/v1/campaigns").json()["items"] == []
    assert list((runtime.settings.data_dir / "rejected").glob("*")) == []


def test_a_bad_option_is_400_invalid_option(api: Api) -> None:
    response = api.upload(SAMPLE.read_bytes(), max_concurrency="0", max_hold_s="soon")
    assert error_code(response, 400) == "invalid_option"
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == ["max_concurrency", "max_hold_s"]
    assert all(d["message"] for d in details)
    assert api.campaign_count() == 0


@pytest.mark.parametrize(
    "field",
    [
        {"max_concurency": "2"},
        {"allow_premium": "true"},
        {"allowed_countries": "JM"},
        {"dial_retries": "9"},
        {"retry_policy": '{"answered": {"retry": true, "delay_s": 600}}'},
        {"message": "   "},
    ],
    ids=lambda field: next(iter(field)),
)
def test_a_misspelt_or_internal_form_field_is_refused_by_name(
    api: Api, field: dict[str, str]
) -> None:
    """Issue 20 item 11: `max_concurency=2` gave a campaign with the default cap; the form
    now refuses any field that is not an operator setting (the file aside)."""
    response = api.upload(SAMPLE.read_bytes(), **field)
    assert error_code(response, 400) == "invalid_option"
    name = next(iter(field))
    assert name in [d["field"] for d in response.json()["error"]["details"]]
    assert api.campaign_count() == 0


def test_the_retry_matrix_and_ring_settings_reach_the_campaign(api: Api) -> None:
    response = api.upload(
        SAMPLE.read_bytes(),
        retry_policy='{"busy": {"retry": true, "delay_s": 120}, "machine": '
        '{"retry": true, "delay_s": 7200}}',
        ring_timeout_s="20",
        time_limit_s="90",
    )
    assert response.status_code == 201, response.text
    with transaction(api.runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, response.json()["campaign_id"])
        assert (campaign.ring_timeout_s, campaign.time_limit_s) == (20, 90)
        assert campaign.retry_policy["busy"] == {"retry": True, "delay_s": 120}
        assert campaign.retry_policy["machine"] == {"retry": True, "delay_s": 7200}
        assert campaign.retry_policy["no-answer"] == {"retry": True, "delay_s": 3600}


def test_a_retry_delay_set_over_the_api_is_the_one_the_retry_uses(api: Api) -> None:
    response = api.upload(
        b"phone,first_name,appointment_time\n+12125550143,Ada,Monday\n",
        retry_policy='{"busy": {"retry": true, "delay_s": 900}}',
    )
    assert response.status_code == 201, response.text
    ended_at = datetime(2027, 1, 15, 15, tzinfo=UTC)  # a Friday, 10:00 in New York
    api.runtime.clock = lambda: ended_at
    with transaction(api.runtime.settings.database_url) as session:
        job = session.scalars(
            select(CallJob).where(CallJob.campaign_id == response.json()["campaign_id"])
        ).one()
        job.status, job.attempt_count = JobStatus.IN_PROGRESS, 1
        attempt = make_attempt(session, job, status=AttemptStatus.BUSY, call_sid="CA" + "1" * 32)
        finish_call(session, api.runtime, attempt)
        assert (job.status, job.outcome) == (JobStatus.PENDING, Outcome.BUSY)
        assert job.next_due_at == ended_at + timedelta(seconds=900)


def test_settings_sent_as_form_fields_reach_the_campaign(api: Api) -> None:
    # A campaign's CPS is at most its account's (1 by default).
    assert api.patch("/v1/account", json={"cps": 5}).status_code == 200
    response = api.upload(
        SAMPLE.read_bytes(),
        max_hold_s="45",
        machine_detection="true",
        machine_action="leave_message",
        menu='{"1": "confirm", "3": {"action": "transfer", "to": "+12125550100"}}',
        opt_out_digit="0",
        voicemail_message="Sorry we missed you.",
        record="true",
        cps="2.5",
        priority="5",
    )
    assert response.status_code == 201, response.text
    with transaction(api.runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, response.json()["campaign_id"])
        assert campaign.max_hold_s == 45
        assert campaign.machine_detection is True
        assert campaign.machine_action is MachineAction.LEAVE_MESSAGE
        assert campaign.menu is not None
        assert campaign.menu["digits"] == {
            "1": {"action": "confirm", "to": None},
            "3": {"action": "transfer", "to": "+12125550100"},
            "0": {"action": "opt_out", "to": None},
        }
        assert campaign.menu["prompt"].endswith("To stop these calls, press 0.")
        assert campaign.voicemail_message == "Sorry we missed you."
        assert (campaign.record, campaign.recording_disclosure) == (
            True,
            "This call may be recorded.",
        )
        assert campaign.cps == 2.5
        assert campaign.priority == 5
    refused = api.upload(SAMPLE.read_bytes(), menu='{"1": "confirm", "1": "cancel"}')
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_menu"


def test_window_settings_sent_as_form_fields_reach_the_campaign(api: Api) -> None:
    response = api.upload(
        SAMPLE.read_bytes(),
        window="10:00-18:30",
        days="mon-fri",
        holiday=["2027-12-24", "2027-12-31"],
        skip_public_holidays="true",
        timezone="America/Chicago",
        start_at="2027-01-04T08:00:00",
        end_at="2027-01-08T18:00:00-06:00",
    )
    assert response.status_code == 201, response.text
    with transaction(api.runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, response.json()["campaign_id"])
        assert (campaign.window_start, campaign.window_end) == (
            time_of_day(10),
            time_of_day(18, 30),
        )
        assert campaign.window_days == [0, 1, 2, 3, 4]
        assert campaign.holidays == [date(2027, 12, 24), date(2027, 12, 31)]
        assert campaign.skip_public_holidays is True
        assert campaign.timezone == "America/Chicago"
        assert campaign.start_at == datetime(2027, 1, 4, 14, tzinfo=UTC)  # 08:00 CST
        assert campaign.end_at == datetime(2027, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"window": "07:00-22:00"}, "window_outside_legal_hours"),
        ({"days": "someday"}, "invalid_days"),
        ({"timezone": "Moon/Base"}, "invalid_timezone"),
    ],
)
def test_a_bad_window_is_400_with_its_code(api: Api, fields: dict[str, str], code: str) -> None:
    assert error_code(api.upload(SAMPLE.read_bytes(), **fields), 400) == code
    assert api.campaign_count() == 0


def test_preview(api: Api) -> None:
    # Friday 2027-01-15, 15:00 UTC: 10:00 in New York, 15:00 in London: both open.
    api.runtime.clock = lambda: datetime(2027, 1, 15, 15, tzinfo=UTC)
    response = api.upload(SAMPLE.read_bytes(), start_at="2027-01-15T00:00:00Z")
    assert response.status_code == 201, response.text
    campaign_id = response.json()["campaign_id"]
    preview = api.get(f"/v1/campaigns/{campaign_id}/preview")
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["pending"] == response.json()["accepted"]
    assert body["callable_now"] + body["waiting"] == body["pending"]
    assert body["expired"] == 0 and body["in_progress"] == 0
    assert body["dial_rate_cps"] > 0
    assert body["estimated_finish_at"] is not None
    # At 23:00 UTC (18:00 New York, 23:00 London) the London contacts wait for 09:00.
    api.runtime.clock = lambda: datetime(2027, 1, 15, 23, tzinfo=UTC)
    late = api.get(f"/v1/campaigns/{campaign_id}/preview").json()
    london = [g for g in late["waiting_by_zone"] if g["zones"] == ["Europe/London"]]
    assert london and london[0]["opens_at"] == "2027-01-16T09:00:00Z"
    assert not [g for g in body["waiting_by_zone"] if g["zones"] == ["Europe/London"]]
    assert late["callable_now"] + late["waiting"] == late["pending"]
    assert api.get("/v1/campaigns/999999/preview").status_code == 404


def test_a_placeholder_without_a_column_is_missing_variable(api: Api) -> None:
    response = api.upload(SAMPLE.read_bytes(), message="Hi {first_name}, bring {insurance_card}.")
    assert response.status_code in (400, 422), response.text
    assert error_code(response, response.status_code) == "missing_variable"
    assert "insurance_card" in response.json()["error"]["message"]
    assert api.campaign_count() == 0


def test_a_campaign_without_a_message_is_missing_field(api: Api) -> None:
    files = {"file": ("contacts.csv", SAMPLE.read_bytes(), "text/csv")}
    response = api.post("/v1/campaigns", data={"name": "No message"}, files=files)
    assert error_code(response, 400) == "missing_field"
    assert response.json()["error"]["details"] == [
        {"field": "message", "message": "Field required"}
    ]
    assert api.campaign_count() == 0


def test_headers_as_people_export_them_and_column_map(api: Api) -> None:
    content = b"Phone,First Name,Appt Date\n+12125550143,Ada,Monday 9:30\n"
    message = "Hi {first_name}, see you {appointment_time}."
    refused = api.upload(content, message=message)
    assert error_code(refused, 422) == "missing_variable"
    assert refused.json()["error"]["message"] == (
        "{appointment_time} has no column; the file has Phone, First Name, Appt Date; "
        "did you mean Appt Date?"
    )
    created = api.upload(content, message=message, column_map=["Appt Date=appointment_time"])
    assert created.status_code == 201, created.text
    assert created.json()["accepted"] == 1


# --- campaigns: transitions ----------------------------------------------------------------


def test_start_pause_resume_cancel(api: Api, campaign_id: int, redis_client: redis.Redis) -> None:
    path = f"/v1/campaigns/{campaign_id}"
    for action, status in [
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
        ("cancel", "canceled"),
    ]:
        response = api.post(f"{path}/{action}")
        assert response.status_code == 200, (action, response.text)
        assert response.json()["id"] == campaign_id
        assert response.json()["status"] == status
        assert api.get(path).json()["status"] == status, action
    assert api.get(path).json()["status_reason"] is None
    # start and resume each enqueued a pacer task on the broker after their commit.
    deadline = time.monotonic() + 5
    while redis_client.llen(PACER_QUEUE) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert redis_client.llen(PACER_QUEUE) == 2


def test_pause_records_its_reason(api: Api, campaign_id: int) -> None:
    api.post(f"/v1/campaigns/{campaign_id}/start")
    paused = api.post(f"/v1/campaigns/{campaign_id}/pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert paused.json()["status_reason"]


@pytest.mark.parametrize(
    ("before", "action"),
    [
        ([], "pause"),
        ([], "resume"),
        (["start"], "start"),
        (["start"], "resume"),
        (["cancel"], "start"),
        (["cancel"], "cancel"),
        (["start", "pause"], "pause"),
    ],
)
def test_an_invalid_transition_is_409(
    api: Api, campaign_id: int, before: list[str], action: str
) -> None:
    for step in before:
        assert api.post(f"/v1/campaigns/{campaign_id}/{step}").status_code == 200
    status = api.get(f"/v1/campaigns/{campaign_id}").json()["status"]
    response = api.post(f"/v1/campaigns/{campaign_id}/{action}")
    assert error_code(response, 409) == "invalid_state"
    assert api.get(f"/v1/campaigns/{campaign_id}").json()["status"] == status


def test_an_unknown_campaign_is_404(api: Api, campaign_id: int) -> None:
    unknown = campaign_id + 1000
    for response in (
        api.get(f"/v1/campaigns/{unknown}"),
        api.get(f"/v1/campaigns/{unknown}/report"),
        api.get(f"/v1/campaigns/{unknown}/rejected.csv"),
        api.post(f"/v1/campaigns/{unknown}/start"),
        api.post(f"/v1/campaigns/{unknown}/cancel"),
    ):
        assert error_code(response, 404) == "campaign_not_found"


def test_another_accounts_campaign_is_404(api: Api, campaign_id: int) -> None:
    path = f"/v1/campaigns/{campaign_id}"
    for response in (
        api.get(path, key=OTHER_KEY),
        api.get(f"{path}/report", key=OTHER_KEY),
        api.get(f"{path}/rejected.csv", key=OTHER_KEY),
        api.post(f"{path}/start", key=OTHER_KEY),
        api.post(f"{path}/cancel", key=OTHER_KEY),
    ):
        assert error_code(response, 404) == "campaign_not_found"
    assert api.get(path).json()["status"] == "draft"


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

CONTRACT_KEYS = {
    "campaign_id": None,
    "name": None,
    "status": None,
    "status_reason": None,
    "generated_at": None,
    "finished": None,
    "contacts": {
        "total",
        "pending",
        "waiting_for_window",
        "waiting_for_frequency_cap",
        "frequency_cap_opens_at",
        "scheduled_retry",
        "dialing",
        "live",
        "done",
        "expired",
        "cancelled",
        "rejected",
    },
    "outcomes": {
        "answered",
        "machine",
        "busy",
        "no-answer",
        "failed",
        "hold_cap",
        "do_not_call",
        "expired",
        "error",
        "dial_error",
        "rejected",
        "canceled",
    },
    "rates": {"answer_rate", "human_rate", "confirmation_rate", "cancellation_rate"},
    "attempts": {
        "total",
        "per_contact",
        "calls_placed",
        "late_calls_hung_up",
        "opt_outs",
        "voicemail_drops",
    },
    "talk_time": {"total_s", "mean_s", "p90_s", "billable_minutes"},
    "series": None,
    "pacing": {"leases", "cps", "due_to_dial_s"},
    "breaker": {"state", "reason", "trips"},
    "eta": {"remaining", "finish_at"},
    "waiting_reason": None,
    "numbers": None,
}
"""The report's keys, as `campaigns.reports.CampaignReport` fixes them for the page; the
outcomes are the `models.Outcome` values, as the call API and the exports name them."""


def test_report_shape(api: Api, campaign_id: int) -> None:
    response = api.get(f"/v1/campaigns/{campaign_id}/report?minutes=5")
    assert response.status_code == 200, response.text
    report = response.json()
    assert set(report) == set(CONTRACT_KEYS)
    for key, keys in CONTRACT_KEYS.items():
        if keys is not None:
            assert set(report[key]) == keys, key
    accepted = api.get(f"/v1/campaigns/{campaign_id}").json()["ingest"]["accepted"]
    assert (report["campaign_id"], report["name"]) == (campaign_id, "March reminders")
    assert (report["status"], report["status_reason"], report["finished"]) == (
        "draft",
        None,
        False,
    )
    assert report["generated_at"].endswith("Z")
    contacts = report["contacts"]
    # Due now or at their window's next opening, by the time of day in their zones.
    assert contacts["total"] == contacts["pending"] + contacts["waiting_for_window"] == accepted
    assert report["rates"] == dict.fromkeys(CONTRACT_KEYS["rates"] or ())
    assert report["outcomes"]["machine"] == report["outcomes"]["failed"] == {}
    assert [set(point) for point in report["series"]] == [
        {"minute", "dials", "answers", "live"}
    ] * 5
    assert report["pacing"]["leases"]["account"] == {"in_use": 0, "cap": 10}
    assert report["waiting_reason"] is None
    assert report["numbers"] == [
        {
            "number": "+15005550006",
            "calls": 0,
            "answer_rate": None,
            "human_rate": None,
            "flagged": False,
            "rested_at": None,
            "rested_reason": None,
        }
    ]
    assert set(report["pacing"]["cps"]) == {"achieved", "limit"}
    assert report["pacing"]["due_to_dial_s"] == {"p50": None, "p95": None}
    assert report["breaker"] == {"state": "closed", "reason": None, "trips": 0}
    assert report["eta"] == {"remaining": accepted, "finish_at": None}  # a draft
    assert api.get(f"/v1/campaigns/{campaign_id}/report?minutes=0").status_code == 400

    assert api.post(f"/v1/campaigns/{campaign_id}/cancel").status_code == 200
    canceled = api.get(f"/v1/campaigns/{campaign_id}/report").json()
    assert canceled["status"] == "canceled"
    assert canceled["contacts"]["cancelled"] == accepted
    assert canceled["contacts"]["pending"] == 0
    assert canceled["finished"] is True
    assert canceled["eta"]["remaining"] == 0


def test_exports_stream_as_csv(api: Api, campaign_id: int) -> None:
    accepted = api.get(f"/v1/campaigns/{campaign_id}").json()["ingest"]["accepted"]
    results = api.get(f"/v1/campaigns/{campaign_id}/results.csv")
    assert results.status_code == 200, results.text
    assert results.headers["content-type"].startswith("text/csv")
    assert "campaign-" in results.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(results.text)))
    assert rows[0][:3] == ["line", "phone", "status"]
    assert len(rows) == 1 + accepted
    assert all(row[1].startswith("+") for row in rows[1:])  # E.164 as it is, no prefix
    attempts = api.get(f"/v1/campaigns/{campaign_id}/attempts.csv")
    assert attempts.status_code == 200, attempts.text
    assert list(csv.reader(io.StringIO(attempts.text))) == [list(ATTEMPT_COLUMNS)]
    book = api.get(f"/v1/campaigns/{campaign_id}/results.xlsx")
    assert book.status_code == 200, book.text
    assert book.headers["content-type"] == XLSX_TYPE
    sheet = openpyxl.load_workbook(io.BytesIO(book.content), read_only=True).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][:2] == ["line", "phone"] and len(values) == 1 + accepted
    assert [row[1] for row in values[1:]] == [row[1] for row in rows[1:]]  # the + kept
    for name in ("results.csv", "attempts.csv", "results.xlsx", "attempts.xlsx"):
        other = api.get(f"/v1/campaigns/{campaign_id}/{name}", key=OTHER_KEY)
        assert error_code(other, 404) == "campaign_not_found"


# --- one error shape ----------------------------------------------------------------------


def test_every_error_has_the_one_shape(api: Api, campaign_id: int) -> None:
    for response, status, code in [
        (api.http.get("/v1/campaigns"), 401, "unauthenticated"),
        (api.get("/v1/campaigns", key="not-a-key"), 401, "unknown_api_key"),
        (api.get(f"/v1/campaigns/{campaign_id + 1000}"), 404, "campaign_not_found"),
        (api.post(f"/v1/campaigns/{campaign_id}/resume"), 409, "invalid_state"),
        (api.upload(b""), 422, "empty_file"),
        (api.upload(SAMPLE.read_bytes(), max_attempts="0"), 400, "invalid_option"),
        (api.upload(SAMPLE.read_bytes(), message="Hi {0}"), 400, "invalid_template"),
        (api.post("/v1/dnc", json={"numbers": "+12125550143"}), 400, "invalid_body"),
        (api.get("/v1/campaigns/first"), 400, "invalid_request"),
        (api.get("/v1/nowhere"), 404, "not_found"),
        (api.delete("/v1/campaigns"), 405, "method_not_allowed"),
    ]:
        assert error_code(response, status) == code, response.request.url
        assert response.headers["content-type"] == "application/json"


def test_a_request_that_does_not_validate_lists_each_field(api: Api) -> None:
    response = api.post("/v1/dnc", json={"numbers": [12125550143], "default_region": 1})
    assert error_code(response, 400) == "invalid_body"
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == ["body.numbers.0", "body.default_region"]
    assert response.json()["error"]["message"].startswith("body.numbers.0: ")

    path = api.get("/v1/campaigns/first")
    assert error_code(path, 400) == "invalid_request"
    assert [d["field"] for d in path.json()["error"]["details"]] == ["path.campaign_id"]


def test_a_database_that_does_not_answer_is_503_with_retry_after(runtime: Runtime) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = Runtime(
        runtime.settings.model_copy(
            update={"database_url": f"postgresql+psycopg://root@127.0.0.1:{closed_port}/dialer"}
        )
    )
    with serve_app(create_app(down)) as url, httpx.Client(base_url=url, timeout=30) as http:
        response = http.get("/v1/campaigns", headers={"Authorization": f"Bearer {KEY}"})
    assert error_code(response, 503) == "database_unavailable"
    assert response.headers["Retry-After"] == "1"


# --- the OpenAPI document ------------------------------------------------------------------


def test_the_openapi_document_names_every_campaign_body(api: Api) -> None:
    document = api.http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    ref = "#/components/schemas/"
    replies = {}
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/campaigns"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            [ok] = [status for status in responses if status.startswith("2")]
            content = responses[ok]["content"]
            if path.endswith(".csv"):
                assert list(content) == ["text/csv"], path
            elif path.endswith(".xlsx"):
                assert list(content) == [XLSX_TYPE], path
            else:
                schema = content["application/json"]["schema"]
                replies[method, path] = schema.get("$ref") or schema["items"]["$ref"]
            errors = {status for status in responses if not status.startswith("2")}
            assert {"401", "default"} <= errors, (method, path)
            for status in errors:
                error_schema = responses[status]["content"]["application/json"]["schema"]
                assert error_schema == {"$ref": ref + "ErrorBody"}, (method, path, status)
    assert replies == {
        ("post", "/v1/campaigns"): ref + "CampaignCreated",
        ("get", "/v1/campaigns"): ref + "Page_CampaignOut_",
        ("get", "/v1/campaigns/{campaign_id}"): ref + "CampaignOut",
        ("patch", "/v1/campaigns/{campaign_id}"): ref + "CampaignOut",
        ("get", "/v1/campaigns/{campaign_id}/report"): ref + "ReportOut",
        ("get", "/v1/campaigns/{campaign_id}/events"): ref + "Page_EventOut_",
        ("get", "/v1/campaigns/{campaign_id}/preview"): ref + "PreviewOut",
        ("get", "/v1/campaigns/{campaign_id}/calls"): ref + "CallPage",
        **{
            ("post", f"/v1/campaigns/{{campaign_id}}/{action}"): ref + "CampaignOut"
            for action in ("start", "pause", "resume", "cancel")
        },
    }
    # Validation errors are answered as 400 in the one shape, and documented so.
    assert "HTTPValidationError" not in schemas
    create = document["paths"]["/v1/campaigns"]["post"]["responses"]
    assert {"400", "401", "422"} <= set(create)


# --- do-not-call ---------------------------------------------------------------------------


def test_dnc_add_and_remove(api: Api) -> None:
    response = api.post("/v1/dnc", json={"numbers": ["(212) 555-0143", "+1 646 555 0177"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 2}
    assert api.dnc_numbers() == {"+12125550143", "+16465550177"}
    again = api.post("/v1/dnc", json={"numbers": ["+12125550143"], "reason": "asked"})
    assert again.json() == {"added": 0}
    assert api.dnc_numbers(api.other_account_id) == set()

    removed = api.delete("/v1/dnc/+12125550143")
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"removed": 1}
    assert api.delete("/v1/dnc/+12125550143").json() == {"removed": 0}
    assert api.delete("/v1/dnc/+16465550177", key=OTHER_KEY).json() == {"removed": 0}
    assert api.dnc_numbers() == {"+16465550177"}


def test_dnc_numbers_apply_to_later_uploads(api: Api) -> None:
    assert api.post("/v1/dnc", json={"numbers": ["+12125550100"]}).json() == {"added": 1}
    created = api.upload(SAMPLE.read_bytes()).json()
    assert created["rejected"]["do_not_call"] == 1  # Grace Hopper


@pytest.mark.parametrize(
    ("number", "code"),
    [("911", "emergency_or_short_code"), ("555-0143", "invalid_number")],
)
def test_dnc_add_with_an_invalid_number_is_400_and_adds_nothing(
    api: Api, number: str, code: str
) -> None:
    response = api.post("/v1/dnc", json={"numbers": ["+12125550143", number]})
    assert error_code(response, 400) == code
    assert api.dnc_numbers() == set()


@pytest.mark.parametrize(
    "body",
    [{}, {"numbers": "+12125550143"}, {"numbers": [12125550143]}, ["+12125550143"]],
    ids=["no-numbers", "string", "int", "list"],
)
def test_dnc_add_with_a_malformed_body_is_400_invalid_body(api: Api, body: Any) -> None:
    response = api.post("/v1/dnc", json=body)
    assert error_code(response, 400) == "invalid_body"
    assert api.dnc_numbers() == set()


def test_dnc_add_with_a_body_that_is_not_json_is_422_invalid_json(api: Api) -> None:
    response = api.post(
        "/v1/dnc", content=b"numbers=+12125550143", headers={"Content-Type": "application/json"}
    )
    assert error_code(response, 422) == "invalid_json"
    assert api.dnc_numbers() == set()


def test_dnc_import_csv(api: Api) -> None:
    content = b"name,phone\nAda,(212) 555-0143\nGrace,212.555.0100\nAgain,+12125550143\nBad,911\n"
    response = api.post("/v1/dnc/import", files={"file": ("dnc.csv", content, "text/csv")})
    assert response.status_code == 200, response.text
    assert response.json() == {"rows": 4, "added": 2, "already": 1, "invalid": 1}
    assert api.dnc_numbers() == {"+12125550143", "+12125550100"}

    empty = api.post("/v1/dnc/import", files={"file": ("dnc.csv", b"", "text/csv")})
    assert error_code(empty, 422) == "empty_file"


def test_dnc_remove_an_invalid_number_is_400(api: Api) -> None:
    assert error_code(api.delete("/v1/dnc/911"), 400) == "emergency_or_short_code"


# --- transactions --------------------------------------------------------------------------


def test_a_success_reply_is_sent_only_once_the_change_is_committed(api: Api) -> None:
    """A client that got 2xx may rely on the change (and a failed commit must not be
    answered with 2xx). The server runs in this process: its commits are made slow, so a
    reply sent before the commit shows as a change not yet visible to a new reader."""
    test_thread = threading.main_thread()

    def slow_commit(session: Session) -> None:
        if threading.current_thread() is not test_thread:  # a server thread
            time.sleep(0.5)

    event.listen(Session, "before_commit", slow_commit)
    try:
        response = api.post("/v1/dnc", json={"numbers": ["+12125550143"]})
        assert response.json() == {"added": 1}
        assert api.dnc_numbers() == {"+12125550143"}
    finally:
        event.remove(Session, "before_commit", slow_commit)


# --- health and metrics --------------------------------------------------------------------


def test_healthz_and_metrics_only_for_the_operators_token(api: Api, runtime: Runtime) -> None:
    """`/metrics` lists every tenant's ids, caps and live calls: without `METRICS_TOKEN` it
    is not served at all, with it only to that bearer token (not to a tenant's key)."""
    health = api.http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert api.http.get("/metrics").status_code == 404
    assert api.get("/metrics").status_code == 404
    runtime.settings.metrics_token = SecretStr(METRICS_TOKEN)
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url) as http:
        assert error_code(http.get("/metrics"), 401) == "unauthenticated"
        tenant = http.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
        assert error_code(tenant, 401) == "unauthenticated"
        metrics = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert "/metrics" not in http.get("/openapi.json").json()["paths"]
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    # Labelled families appear once counted (multiprocess mode); these are always there.
    assert "dialer_provider_callback_seconds" in metrics.text
    assert "# TYPE dialer_pool_leases gauge" in metrics.text


def test_a_nul_character_is_a_400_not_a_500(api: Api) -> None:
    # PostgreSQL text cannot hold U+0000: found by the schemathesis run as a 500.
    refused = api.upload(SAMPLE.read_bytes(), name="March\x00")
    assert error_code(refused, 400) == "invalid_option"
    call = {"to_number": "+12125550143", "message": "Hi.", "metadata": {"k": "a\x00b"}}
    assert error_code(api.post("/v1/calls", json=call), 400) == "invalid_value"
    assert api.campaign_count() == 0


def test_a_campaign_presents_a_caller_id_pool(api: Api) -> None:
    for number in ("+14155550101", "+14155550102"):
        assert api.post("/v1/numbers", json={"number": number}).status_code == 201
    pool = ["+14155550101", "+15005550006", "+14155550102"]
    created = api.upload(SAMPLE.read_bytes(), caller_id_pool=pool)
    assert created.status_code == 201, created.text
    report = api.get(f"/v1/campaigns/{created.json()['campaign_id']}/report").json()
    assert [n["number"] for n in report["numbers"]] == pool  # the pool, in its order
    assert {n["calls"] for n in report["numbers"]} == {0}
    assert report["waiting_reason"] is None
    both = api.upload(SAMPLE.read_bytes(), caller_id_pool=pool, from_number=pool[0])
    assert error_code(both, 400) == "invalid_option"
    foreign = api.upload(SAMPLE.read_bytes(), caller_id_pool=["+14155550199"])
    assert error_code(foreign, 400) == "from_number_not_found"
    # A number in a pool is in use: it cannot be removed.
    assert error_code(api.delete("/v1/numbers/+14155550102"), 409) == "number_in_use"
