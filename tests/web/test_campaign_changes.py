"""`PATCH /v1/campaigns/{id}` and `DELETE /v1/calls/{id}` over HTTP (issue 22 part 6): what
they change, what they refuse (unknown fields, bad values, ended campaigns, another
account's), and the history they leave."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from dialer.campaign_state import BREAKER, CampaignAction, transition
from dialer.dispatch.dialing import PlaceResult, place_call
from dialer.windows import CallingWindow, Place, next_opening
from models import (
    ApiKey,
    AttemptStatus,
    CallJob,
    Campaign,
    CampaignStatus,
    JobStatus,
    transaction,
)
from tests.factories import make_attempt
from tests.web.support import OTHER_KEY, SAMPLE, Api, error_code

VARIABLES = {"first_name": "Ada", "appointment_time": "Monday"}


def _campaign(api: Api) -> int:
    created = api.upload(SAMPLE.read_bytes())
    assert created.status_code == 201, created.text
    return int(created.json()["campaign_id"])


def _stored(api: Api, campaign_id: int) -> Campaign:
    with transaction(api.runtime.settings.database_url) as session:
        return session.get_one(Campaign, campaign_id)


def test_a_patch_changes_the_settings_and_records_who_why_and_what(api: Api) -> None:
    campaign_id = _campaign(api)
    assert api.post(f"/v1/campaigns/{campaign_id}/start").status_code == 200
    body = {
        "max_concurrency": 4,
        "cps": 0.5,
        "window": "10:00-18:00",
        "days": "mon-fri",
        "message": "Hi {first_name}, {clinic} expects you.",
        "from_number": "+14155550101",
        "reason": "the clinic asked for fewer calls",
    }
    added = api.post("/v1/numbers", json={"number": "+14155550101"})
    assert added.status_code == 201, added.text
    patched = api.patch(f"/v1/campaigns/{campaign_id}", json=body)
    assert patched.status_code == 200, patched.text
    assert (patched.json()["max_concurrency"], patched.json()["cps"]) == (4, 0.5)
    stored = _stored(api, campaign_id)
    assert (stored.window_start, stored.window_end) == (time(10), time(18))
    assert stored.window_days == [0, 1, 2, 3, 4]
    assert stored.message == body["message"]
    assert stored.status is CampaignStatus.RUNNING

    events = api.get(f"/v1/campaigns/{campaign_id}/events").json()["items"]
    change = events[-1]
    with transaction(api.runtime.settings.database_url) as session:
        key_id = session.scalars(select(ApiKey.id).where(ApiKey.account_id == api.account_id)).one()
    assert change["action"] == "change"
    assert (change["actor"], change["api_key_id"]) == ("api-key:test", key_id)
    assert change["reason"] == "the clinic asked for fewer calls"
    assert change["from_status"] is change["to_status"] is None  # not a transition
    assert change["changes"] == {
        "max_concurrency": {"before": 10, "after": 4},
        "cps": {"before": None, "after": 0.5},
        "window": {"before": "09:00-20:00", "after": "10:00-18:00"},
        "days": {"before": "mon,tue,wed,thu,fri,sat,sun", "after": "mon,tue,wed,thu,fri"},
        "from_number": {"before": "+15005550006", "after": "+14155550101"},
        "message": {
            "before": "Hello {first_name}, your appointment is on {appointment_time}.",
            "after": body["message"],
        },
    }

    # null clears the campaign's own CPS; an end is set in the campaign's zone.
    end = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    cleared = api.patch(
        f"/v1/campaigns/{campaign_id}",
        json={"cps": None, "end_at": end.isoformat(), "reason": "back to the account's pace"},
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["cps"] is None
    assert _stored(api, campaign_id).end_at == end


def test_a_patch_refuses_what_the_schema_refuses(api: Api) -> None:
    campaign_id = _campaign(api)
    path = f"/v1/campaigns/{campaign_id}"
    why = {"reason": "test"}
    for body in (
        {"colour": "red", **why},
        {"max_attempts": 2, **why},  # a setting, but not one that changes on a campaign
        {"max_concurrency": 0, **why},
        {"max_concurrency": 4},  # no reason
    ):
        assert error_code(api.patch(path, json=body), 400) == "invalid_body", body
    assert error_code(api.patch(path, json={"max_concurrency": None, **why}), 400) == (
        "invalid_option"
    )
    assert error_code(api.patch(path, json=why), 400) == "invalid_option"  # nothing to change
    assert error_code(api.patch(path, json={"max_concurrency": 11, **why}), 400) == (
        "invalid_option"
    )  # above the account's 10
    assert error_code(api.patch(path, json={"window": "7pm-9pm", **why}), 400) == "invalid_window"
    assert error_code(api.patch(path, json={"window": "06:00-20:00", **why}), 400) == (
        "window_outside_legal_hours"
    )
    assert error_code(api.patch(path, json={"days": "someday", **why}), 400) == "invalid_days"
    assert error_code(api.patch(path, json={"message": "Hi {first_name", **why}), 400) == (
        "invalid_template"
    )
    assert error_code(api.patch(path, json={"message": "Hi {nickname}.", **why}), 422) == (
        "missing_variable"
    )
    assert error_code(api.patch(path, json={"from_number": "+14155550199", **why}), 400) == (
        "from_number_not_found"
    )
    naive = {"end_at": "2030-01-01T10:00:00", **why}  # no offset and no campaign timezone
    assert error_code(api.patch(path, json=naive), 400) == "invalid_schedule"
    past = {"end_at": "2020-01-01T10:00:00Z", **why}  # would expire every contact at once
    assert error_code(api.patch(path, json=past), 400) == "invalid_schedule"
    assert error_code(api.patch(path, json={"max_concurrency": 2, **why}, key=OTHER_KEY), 404) == (
        "campaign_not_found"
    )
    assert _stored(api, campaign_id).max_concurrency == 10  # nothing was changed
    assert [e["action"] for e in api.get(f"{path}/events").json()["items"]] == []

    assert api.post(f"{path}/cancel").status_code == 200
    ended = api.patch(path, json={"max_concurrency": 2, **why})
    assert error_code(ended, 409) == "campaign_ended"


def test_a_window_change_moves_contacts_waiting_for_the_old_opening(api: Api) -> None:
    """Contacts due at the old window's next opening are due at the new one's; a contact
    due later for another reason (a retry) keeps its time. On the runtime's clock."""
    now = datetime(2027, 1, 11, 12, tzinfo=UTC)  # a Monday, 07:00 in New York
    api.runtime.clock = lambda: now
    campaign_id = _campaign(api)
    with transaction(api.runtime.settings.database_url) as session:
        jobs = list(session.scalars(select(CallJob).where(CallJob.campaign_id == campaign_id)))
        campaign = session.get_one(Campaign, campaign_id)
        campaign.window_start, campaign.window_end = time(9), time(10)
        window = CallingWindow.of(campaign)
        for job in jobs:
            opening = next_opening(
                window, Place(tuple(job.zones), job.region, job.subdivision), now
            )
            assert opening is not None and opening > now
            job.next_due_at = opening
        retried = jobs[0]
        far = now + timedelta(days=3)
        retried.next_due_at = far
    later = api.patch(
        f"/v1/campaigns/{campaign_id}", json={"window": "15:00-19:00", "reason": "afternoons"}
    )
    assert later.status_code == 200, later.text
    with transaction(api.runtime.settings.database_url) as session:
        moved = {
            job.id: job.next_due_at
            for job in session.scalars(select(CallJob).where(CallJob.campaign_id == campaign_id))
        }
    assert moved[retried.id] == far
    assert len(jobs) > 1
    for job in jobs[1:]:
        local = moved[job.id].astimezone(ZoneInfo(job.zones[0]))
        assert (local.date(), local.hour, local.minute) == (date(2027, 1, 11), 15, 0)


def test_delete_cancels_a_queued_call_and_refuses_an_ended_one(api: Api) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    placed = api.post(
        "/v1/calls",
        json={"to_number": "+12125550143", "message": "Hello.", "call_at": later},
    )
    assert placed.status_code == 201, placed.text
    call_id = placed.json()["call_id"]
    assert error_code(api.delete(f"/v1/calls/{call_id}", key=OTHER_KEY), 404) == "call_not_found"
    assert error_code(api.delete("/v1/calls/999999999"), 404) == "call_not_found"
    canceled = api.delete(f"/v1/calls/{call_id}")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert api.get(f"/v1/calls/{call_id}").json()["status"] == "canceled"
    assert error_code(api.delete(f"/v1/calls/{call_id}"), 409) == "call_ended"
    campaign_id = placed.json()["campaign_id"]
    [event] = [
        e
        for e in api.get(f"/v1/campaigns/{campaign_id}/events").json()["items"]
        if e["action"] == "cancel_call"
    ]
    assert event["actor"] == "api-key:test"
    assert event["changes"] == {"call": {"before": "queued", "after": "canceled"}}


def test_delete_of_a_claimed_call_not_yet_sent_ends_it_and_frees_its_lease(api: Api) -> None:
    """A contact the pacer claimed (`dialing`, no request sent): ended now; a `place_call`
    that runs later finds nothing to do."""
    campaign_id = _campaign(api)
    with transaction(api.runtime.settings.database_url) as session:
        job = session.scalars(select(CallJob).where(CallJob.campaign_id == campaign_id)).first()
        assert job is not None
        job.status = JobStatus.IN_PROGRESS
        job.attempt_count = 1
        attempt = make_attempt(session, job)
        ids = job.id, attempt.id
    canceled = api.delete(f"/v1/calls/{ids[0]}")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["attempts"][0]["status"] == AttemptStatus.NOT_PLACED
    assert place_call(api.runtime, ids[1]) is PlaceResult.SKIPPED


def test_a_change_to_a_campaign_the_breaker_paused_keeps_it_refusing_calls(api: Api) -> None:
    """A change is not a transition: the campaign stays paused by the breaker, and a call
    into it is still refused with the breaker's reason."""
    campaign_id = _campaign(api)
    assert api.post(f"/v1/campaigns/{campaign_id}/start").status_code == 200
    with transaction(api.runtime.settings.database_url) as session:
        campaign = session.get_one(Campaign, campaign_id)
        transition(campaign, CampaignAction.TRIP_BREAKER, actor=BREAKER, reason="20003")
    patched = api.patch(
        f"/v1/campaigns/{campaign_id}", json={"max_concurrency": 2, "reason": "meanwhile"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "paused"
    call = {"to_number": "+12125550143", "campaign_id": campaign_id, "variables": VARIABLES}
    assert error_code(api.post("/v1/calls", json=call), 409) == "campaign_paused"
    report = api.get(f"/v1/campaigns/{campaign_id}/report").json()
    assert report["breaker"]["state"] == "open"


def test_a_patch_changes_the_pool_menu_voicemail_and_recording_of_a_running_campaign(
    api: Api,
) -> None:
    """The settings issue 22 adds (caller-ID pool, menu and opt-out line, voicemail
    message, recording) change on a running campaign, each in its history before/after; a
    pool and one caller ID replace each other."""
    campaign_id = _campaign(api)
    path = f"/v1/campaigns/{campaign_id}"
    assert api.post(f"{path}/start").status_code == 200
    for number in ("+14155550101", "+14155550102"):
        assert api.post("/v1/numbers", json={"number": number}).status_code == 201

    pooled = api.patch(
        path, json={"caller_id_pool": ["+14155550101", "+14155550102"], "reason": "capacity"}
    )
    assert pooled.status_code == 200, pooled.text
    stored = _stored(api, campaign_id)
    assert len(stored.pool_caller_ids) == 1
    events = api.get(f"{path}/events").json()["items"]
    assert events[-1]["changes"] == {
        "caller_id_pool": {"before": ["+15005550006"], "after": ["+14155550101", "+14155550102"]}
    }
    single = api.patch(path, json={"from_number": "+15005550006", "reason": "one number"})
    assert single.status_code == 200, single.text
    assert _stored(api, campaign_id).pool_caller_ids == []
    assert api.get(f"{path}/events").json()["items"][-1]["changes"] == {
        "from_number": {"before": ["+14155550101", "+14155550102"], "after": "+15005550006"}
    }

    body = {
        "menu": {"1": "confirm", "2": {"action": "transfer", "to": "+12125550100"}},
        "opt_out_digit": "8",
        "opt_out_prompt": "Press {digit} and we stop calling.",
        "voicemail_message": "Hello {first_name}, please call the clinic back.",
        "record": True,
        "recording_disclosure": "This call is recorded for quality.",
        "reason": "the clinic's new script",
    }
    patched = api.patch(path, json=body)
    assert patched.status_code == 200, patched.text
    stored = _stored(api, campaign_id)
    assert stored.status is CampaignStatus.RUNNING
    new_menu = {
        "digits": {
            "1": {"action": "confirm", "to": None},
            "2": {"action": "transfer", "to": "+12125550100"},
            "8": {"action": "opt_out", "to": None, "say": "Press {digit} and we stop calling."},
        },
        "prompt": " ".join(
            (
                "To confirm, press 1.",
                "To speak to someone, press 2.",
                "Press 8 and we stop calling.",
            )
        ),
    }
    assert stored.menu == new_menu
    changes = api.get(f"{path}/events").json()["items"][-1]["changes"]
    assert changes == {
        "voicemail_message": {"before": None, "after": body["voicemail_message"]},
        "menu": {
            "before": {
                "digits": {"9": {"action": "opt_out", "to": None}},
                "prompt": "To stop these calls, press 9.",
            },
            "after": new_menu,
        },
        "record": {"before": False, "after": True},
        "recording_disclosure": {
            "before": "This call may be recorded.",
            "after": body["recording_disclosure"],
        },
    }

    # What a change leaves out of the menu stays: the keys, and the line's own words.
    moved = api.patch(path, json={"opt_out_digit": "7", "reason": "8 is the front desk"})
    assert moved.status_code == 200, moved.text
    moved_menu = _stored(api, campaign_id).menu
    assert moved_menu == {
        "digits": {
            **{key: new_menu["digits"][key] for key in ("1", "2")},
            "7": {"action": "opt_out", "to": None, "say": "Press {digit} and we stop calling."},
        },
        "prompt": new_menu["prompt"].replace("Press 8", "Press 7"),
    }
    assert api.get(f"{path}/events").json()["items"][-1]["changes"] == {
        "menu": {"before": new_menu, "after": moved_menu}
    }
    # The key freed by the move may be another action's now; the line's key may not.
    assert api.patch(path, json={"menu": {"8": "repeat"}, "reason": "r"}).status_code == 200
    taken = api.patch(path, json={"menu": {"7": "repeat"}, "reason": "r"})
    assert error_code(taken, 400) == "invalid_menu"

    # The opt-out line off and the keys cleared: no menu; null clears the voicemail.
    cleared = api.patch(
        path,
        json={"menu": None, "opt_out_line": False, "voicemail_message": None, "reason": "r"},
    )
    assert cleared.status_code == 200, cleared.text
    stored = _stored(api, campaign_id)
    assert (stored.menu, stored.voicemail_message) == (None, None)
    assert api.get(f"{path}/events").json()["items"][-1]["changes"]["menu"]["after"] is None


def test_a_patch_refuses_a_bad_menu_a_foreign_pool_number_and_two_caller_id_settings(
    api: Api,
) -> None:
    campaign_id = _campaign(api)
    path = f"/v1/campaigns/{campaign_id}"
    assert api.post(f"{path}/start").status_code == 200
    why = {"reason": "test"}
    for body in (
        {"menu": {"1": "explode"}},
        {"menu": {"x": "confirm"}},
        {"menu": {"2": {"action": "transfer"}}},  # no number to transfer to
        {"menu": {"9": "confirm"}},  # the opt-out line's key
        {"opt_out_digit": "1", "menu": {"1": "confirm"}},
        {"opt_out_digit": "x"},
    ):
        assert error_code(api.patch(path, json={**body, **why}), 400) == "invalid_menu", body
    pool = {"caller_id_pool": ["+15005550006", "+14155550199"], **why}  # not the account's
    assert error_code(api.patch(path, json=pool), 400) == "from_number_not_found"
    twice = {"caller_id_pool": ["+15005550006", "+15005550006"], **why}
    assert error_code(api.patch(path, json=twice), 400) == "invalid_option"
    both = {"from_number": "+15005550006", "caller_id_pool": ["+15005550006"], **why}
    assert error_code(api.patch(path, json=both), 400) == "invalid_option"
    assert error_code(api.patch(path, json={"caller_id_pool": None, **why}), 400) == (
        "invalid_option"
    )
    lacking = {"voicemail_message": "Hi {nickname}.", **why}
    assert error_code(api.patch(path, json=lacking), 422) == "missing_variable"
    stored = _stored(api, campaign_id)
    assert stored.menu == {
        "digits": {"9": {"action": "opt_out", "to": None}},
        "prompt": "To stop these calls, press 9.",
    }
    assert stored.voicemail_message is None
    assert [e["action"] for e in api.get(f"{path}/events").json()["items"]] == ["start"]
