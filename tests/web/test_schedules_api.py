"""The schedules API and the campaign history over HTTP: every endpoint, the one error
shape, and 404 for another account's schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from campaigns import schedules
from models import Account, Schedule, transaction
from tests.web.support import OTHER_KEY, SAMPLE, Api, error_code
from tests.web.test_api import campaign_id

__all__ = ["campaign_id"]  # fixtures

BODY = {
    "name": "Clinic",
    "cron": "0 9 * * mon-fri",
    "timezone": "Europe/London",
    "options": {"message": "Hello {first_name}.", "max_concurrency": 2},
}


def create(api: Api) -> int:
    response = api.post("/v1/schedules", json=BODY)
    assert response.status_code == 201, response.text
    assert set(response.json()) == {"schedule_id", "next_run_at", "warnings"}
    assert response.json()["warnings"] == []
    return int(response.json()["schedule_id"])


def test_create_read_list_patch_and_delete(api: Api) -> None:
    schedule_id = create(api)
    one = api.get(f"/v1/schedules/{schedule_id}").json()
    assert (one["cron"], one["status"], one["source"], one["catch_up_s"]) == (
        "0 9 * * mon-fri",
        "active",
        "pushed",
        3600,
    )
    assert one["options"] == BODY["options"]
    assert [s["id"] for s in api.get("/v1/schedules").json()["items"]] == [schedule_id]
    paused = api.http.patch(
        f"/v1/schedules/{schedule_id}", json={"status": "paused"}, headers=api.headers()
    )
    assert paused.json()["status"] == "paused"
    again = api.http.patch(
        f"/v1/schedules/{schedule_id}", json={"status": "paused"}, headers=api.headers()
    )
    assert error_code(again, 409) == "invalid_state"
    changed = api.http.patch(
        f"/v1/schedules/{schedule_id}",
        json={"status": "active", "cron": "30 8 * * *"},
        headers=api.headers(),
    )
    assert changed.json()["status"] == "active" and "08:30:00" in changed.json()["next_run_at"]
    assert api.delete(f"/v1/schedules/{schedule_id}").status_code == 204
    assert error_code(api.get(f"/v1/schedules/{schedule_id}"), 404) == "schedule_not_found"
    assert api.get("/v1/schedules").json()["items"] == []


def test_a_schedule_reading_a_server_file_does_not_show_its_path(api: Api, tmp_path: Path) -> None:
    """The operator's `dialer schedules create --csv /srv/...`: the tenant learns that its
    batches come from a file, not where the server keeps it."""
    source = tmp_path / "clinic" / "reminders.csv"
    source.parent.mkdir()
    source.write_bytes(SAMPLE.read_bytes())
    with transaction(api.runtime.settings.database_url) as session:
        schedule = schedules.create_schedule(
            session,
            session.get_one(Account, api.account_id),
            name="From a file",
            cron="0 9 * * mon-fri",
            timezone="Europe/London",
            csv_path=source,
            options=BODY["options"],
            actor="cli:ops",
        )
        schedule_id = schedule.id
    shown = api.get(f"/v1/schedules/{schedule_id}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["source"] == "file"
    listed = api.get("/v1/schedules")
    for reply in (shown, listed):
        assert str(tmp_path) not in reply.text
        assert "reminders.csv" not in reply.text


def test_bad_settings_are_400(api: Api) -> None:
    for change, code in (
        ({"cron": "every day"}, "invalid_cron"),
        ({"timezone": "Nowhere/Town"}, "invalid_timezone"),
        ({"options": {"message": "Hi.", "max_attempts": 0}}, "invalid_option"),
        ({"catch_up_s": 1}, "invalid_option"),
        ({"surprise": 1}, "invalid_body"),
    ):
        assert error_code(api.post("/v1/schedules", json={**BODY, **change}), 400) == code


def _schedule_count(api: Api) -> int:
    with transaction(api.runtime.settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(Schedule)) or 0


TENANT_REFUSED = [
    {"allow_premium": True},
    {"allowed_countries": ["GB", "JM"]},
    {"dial_retries": 50},
    {"retry_delay_scale": 0.001},
    {"retry_policy": {"answered": {"retry": True, "delay_s": 600}}},
    {"retry_policy": {"answered": {"retry": True, "delay_s": "x"}}},
    {"retry_policy": {"busy": {"retry": True, "delay_s": "x"}}},
    {"retry_policy": {"busy": {"retry": True, "delay_s": 1}}},
    {"message": "   "},
    {"start_at": "2027-01-04T09:00:00Z"},
    {"end_at": "2027-01-04T17:00:00Z"},
    {"max_concurency": 2},
]


@pytest.mark.parametrize("refused", TENANT_REFUSED, ids=lambda o: next(iter(o)))
def test_a_schedule_refuses_internal_settings_and_bad_values_and_stores_nothing(
    api: Api, refused: dict[str, Any]
) -> None:
    """Issue 20 item 2: the schedules API took the internal settings (premium numbers,
    countries, dial retries), any retry matrix (an answered call retried, a delay of "x"
    that broke the callback batch) and a blank message."""
    options = {**BODY["options"], **refused}
    response = api.post("/v1/schedules", json={**BODY, "options": options})
    assert error_code(response, 400) == "invalid_option"
    field = next(iter(refused))
    assert any(d["field"].startswith(field) for d in response.json()["error"]["details"])
    assert _schedule_count(api) == 0
    schedule_id = create(api)
    before = api.get(f"/v1/schedules/{schedule_id}").json()["options"]
    patched = api.patch(f"/v1/schedules/{schedule_id}", json={"options": options})
    assert error_code(patched, 400) == "invalid_option"
    assert api.get(f"/v1/schedules/{schedule_id}").json()["options"] == before


def test_a_schedule_takes_the_typed_retry_matrix_and_ring_settings(api: Api) -> None:
    options = {
        **BODY["options"],
        "retry_policy": {"busy": {"retry": True, "delay_s": 900}},
        "ring_timeout_s": 25,
        "time_limit_s": 300,
        "expire_after_s": 7200,
    }
    response = api.post("/v1/schedules", json={**BODY, "options": options})
    assert response.status_code == 201, response.text
    schedule_id = response.json()["schedule_id"]
    assert api.get(f"/v1/schedules/{schedule_id}").json()["options"] == options


def test_push_contacts_run_now_runs_and_history(api: Api) -> None:
    schedule_id = create(api)
    pushed = api.post(
        f"/v1/schedules/{schedule_id}/contacts",
        json={"contacts": [{"phone": "+12025550101", "first_name": "Ada"}]},
    )
    assert pushed.status_code == 201 and pushed.json() == {"added": 1}
    csv_body = b"mobile,first_name\n+12025550102,Bob\n911,Nobody\n"
    pushed = api.post(
        f"/v1/schedules/{schedule_id}/contacts",
        content=csv_body,
        headers={"Content-Type": "text/csv"},
    )
    assert pushed.json() == {"added": 2}
    refused = api.post(
        f"/v1/schedules/{schedule_id}/contacts", json={"contacts": [{"name": "Ada"}]}
    )
    assert error_code(refused, 422) == "no_phone_column"
    run = api.post(f"/v1/schedules/{schedule_id}/run")
    assert run.status_code == 201, run.text
    body = run.json()
    assert (body["status"], body["manual"], body["rows"], body["accepted"], body["pushed"]) == (
        "ok",
        True,
        3,
        2,
        2 + 1,
    )
    campaign = body["campaign_id"]
    assert api.get(f"/v1/campaigns/{campaign}").json()["status"] == "running"
    assert api.post(f"/v1/campaigns/{campaign}/pause").status_code == 200
    events = api.get(f"/v1/campaigns/{campaign}/events").json()["items"]
    assert [(e["action"], e["actor"]) for e in events] == [
        ("fire", "api-key:test"),
        ("start", "api-key:test"),
        ("pause", "api-key:test"),
    ]
    empty = api.post(f"/v1/schedules/{schedule_id}/run").json()
    assert (empty["status"], empty["campaign_id"]) == ("empty", None)
    runs = api.get(f"/v1/schedules/{schedule_id}/runs").json()["items"]
    assert [r["status"] for r in runs] == ["empty", "ok"]
    history = api.get(f"/v1/schedules/{schedule_id}/events").json()["items"]
    assert [e["action"] for e in history] == ["create", "fire", "fire"]


def test_another_accounts_schedule_is_404(api: Api, campaign_id: int) -> None:
    schedule_id = create(api)
    for response in (
        api.get(f"/v1/schedules/{schedule_id}", key=OTHER_KEY),
        api.http.patch(
            f"/v1/schedules/{schedule_id}",
            json={"status": "paused"},
            headers=api.headers(OTHER_KEY),
        ),
        api.delete(f"/v1/schedules/{schedule_id}", key=OTHER_KEY),
        api.post(f"/v1/schedules/{schedule_id}/run", key=OTHER_KEY),
        api.get(f"/v1/schedules/{schedule_id}/runs", key=OTHER_KEY),
        api.get(f"/v1/schedules/{schedule_id}/events", key=OTHER_KEY),
        api.post(
            f"/v1/schedules/{schedule_id}/contacts",
            key=OTHER_KEY,
            json={"contacts": [{"phone": "+12025550101", "first_name": "Ada"}]},
        ),
    ):
        assert error_code(response, 404) == "schedule_not_found"
    assert api.get("/v1/schedules", key=OTHER_KEY).json()["items"] == []
    assert api.get(f"/v1/schedules/{schedule_id}").status_code == 200
    missing = api.get(f"/v1/campaigns/{campaign_id}/events", key=OTHER_KEY)
    assert error_code(missing, 404) == "campaign_not_found"
    assert api.get(f"/v1/campaigns/{campaign_id}/events").json()["items"] == []


def test_the_openapi_document_names_every_schedule_body(api: Api) -> None:
    document = api.http.get("/openapi.json").json()
    ref = "#/components/schemas/"
    replies = {}
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/schedules"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            [ok] = [status for status in responses if status.startswith("2")]
            if ok != "204":
                schema = responses[ok]["content"]["application/json"]["schema"]
                replies[method, path] = schema.get("$ref") or schema["items"]["$ref"]
            errors = {status for status in responses if not status.startswith("2")}
            assert {"401", "default"} <= errors, (method, path)
            if "{schedule_id}" in path:
                assert "404" in errors, (method, path)
            for status in errors:
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": ref + "ErrorBody"}, (method, path, status)
    one = "/v1/schedules/{schedule_id}"
    assert replies == {
        ("post", "/v1/schedules"): ref + "ScheduleCreated",
        ("get", "/v1/schedules"): ref + "Page_ScheduleOut_",
        ("get", one): ref + "ScheduleOut",
        ("patch", one): ref + "ScheduleUpdated",
        ("post", one + "/run"): ref + "ScheduleRunOut",
        ("get", one + "/runs"): ref + "Page_ScheduleRunOut_",
        ("get", one + "/events"): ref + "Page_EventOut_",
        ("post", one + "/contacts"): ref + "ContactsAdded",
    }
    contacts = document["paths"][one + "/contacts"]["post"]["requestBody"]["content"]
    assert set(contacts) == {"application/json", "text/csv"}


def test_a_schedule_firing_more_often_than_the_frequency_cap_is_warned_not_refused(
    api: Api,
) -> None:
    """Every minute, the same numbers, the default cap of 3 calls a day: from the fourth run
    on, every number waits a day. Allowed (pushed batches may differ), but said."""
    minutely = api.post("/v1/schedules", json={**BODY, "cron": "* * * * *"})
    assert minutely.status_code == 201, minutely.text
    [warning] = minutely.json()["warnings"]
    assert warning["code"] == "frequency_cap_stall"
    assert "frequency_caps" in warning["message"]
    daily = api.post("/v1/schedules", json={**BODY, "cron": "0 9 * * *"})
    assert daily.json()["warnings"] == []
    # A change that makes it stall is warned too, and one that stops it is not.
    schedule_id = daily.json()["schedule_id"]
    hourly = api.patch(f"/v1/schedules/{schedule_id}", json={"cron": "0 * * * *"})
    assert hourly.status_code == 200, hourly.text
    assert [w["code"] for w in hourly.json()["warnings"]] == ["frequency_cap_stall"]
    thrice = api.patch(f"/v1/schedules/{schedule_id}", json={"cron": "0 9,13,17 * * *"})
    assert thrice.json()["warnings"] == []
