"""Keypress menus, opt-outs, recordings and `call.answered` at the provider webhooks, and the
menu's operator schema: what each key answers, the opt-out listed in the callback's own
transaction, recording callbacks stored or refused."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from campaigns.options import CampaignOptions
from dialer.errors import InvalidMenuError
from dialer.menu import MenuAction
from dialer.runtime import Runtime
from dialer.settings import SIMULATOR_AUTH_TOKEN
from dialer.web.app import create_app
from models import (
    AttemptStatus,
    CallAttempt,
    CampaignStatus,
    DncEntry,
    JobStatus,
    WebhookEvent,
    transaction,
)
from tests.factories import make_account, make_attempt, make_campaign, make_job
from tests.servers import serve_app
from tests.support import hold_lease

BASE = "https://dialer.example.test"
SID = "CA" + "c" * 32
TO = "+12125550143"
TRANSFER_TO = "+12125550100"
ACCOUNT_SID = "AC" + "0" * 31 + "1"
MENU = {
    "1": "confirm",
    "2": "cancel",
    "3": "repeat",
    "4": {"action": "transfer", "to": TRANSFER_TO},
}


@pytest.fixture
def runtime_settings() -> dict[str, Any]:
    return {"public_base_url": BASE}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[httpx.Client]:
    with serve_app(create_app(runtime)) as url, httpx.Client(base_url=url) as http:
        yield http


def _menu() -> dict[str, Any] | None:
    menu = CampaignOptions(name="m", message="Hello {first_name}.", menu=MENU).call_menu()
    assert menu is not None
    return menu.stored()


@pytest.fixture
def attempt_id(runtime: Runtime) -> int:
    """A live, answered call of a campaign with the menu `MENU` and the opt-out line, whose
    account has a webhook URL."""
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session, webhook_url="https://hooks.example.test/in")
        campaign = make_campaign(session, account, status=CampaignStatus.RUNNING, menu=_menu())
        job = make_job(session, campaign, TO, status=JobStatus.IN_PROGRESS, attempt_count=1)
        attempt = make_attempt(session, job, status=AttemptStatus.IN_PROGRESS, call_sid=SID)
        attempt_id = attempt.id
    hold_lease(runtime, attempt_id)
    return attempt_id


def post(
    client: httpx.Client,
    kind: str,
    attempt_id: int,
    params: dict[str, str],
    *,
    query: str = "",
    token: str = SIMULATOR_AUTH_TOKEN,
) -> httpx.Response:
    path = f"/v1/providers/twilio/{kind}/{attempt_id}{query}"
    signature = RequestValidator(token).compute_signature(BASE + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def press(client: httpx.Client, attempt_id: int, digits: str, query: str = "") -> ET.Element:
    params = {"CallSid": SID, "AccountSid": ACCOUNT_SID, "Digits": digits}
    response = post(client, "gather", attempt_id, params, query=query)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return ET.fromstring(response.text)  # noqa: S314  # our own server's answer


def said(root: ET.Element) -> list[str]:
    return [e.text or "" for e in root.iter("Say")]


def attempt_of(runtime: Runtime, attempt_id: int) -> CallAttempt:
    with transaction(runtime.settings.database_url) as session:
        return session.get_one(CallAttempt, attempt_id)


def test_confirm_and_cancel_answer_goodbye_and_record_the_action(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    root = press(client, attempt_id, "2")
    assert [e.tag for e in root] == ["Say", "Hangup"]
    assert "cancellation" in said(root)[0]
    attempt = attempt_of(runtime, attempt_id)
    assert (attempt.digits, attempt.menu_action) == ("2", MenuAction.CANCEL)
    root = press(client, attempt_id, "1")  # another key later on the call: its own event
    assert "confirmed" in said(root)[0]
    assert attempt_of(runtime, attempt_id).menu_action == MenuAction.CONFIRM


def test_repeat_says_the_message_and_the_menu_again(client: httpx.Client, attempt_id: int) -> None:
    root = press(client, attempt_id, "3")
    say, gather, silence = list(root)
    assert silence.text == "We did not receive your answer. Goodbye."
    assert say.text == "Hello Ada."
    assert gather.get("action") == f"{BASE}/v1/providers/twilio/gather/{attempt_id}"
    assert gather.get("numDigits") == "1" and gather.get("timeout") == "5"
    [prompt] = said(gather)
    assert "press 3" in prompt and "To stop these calls, press 9." in prompt


def test_transfer_dials_the_menus_number(client: httpx.Client, attempt_id: int) -> None:
    root = press(client, attempt_id, "4")
    assert [(e.tag, e.text) for e in root][1] == ("Dial", TRANSFER_TO)


def test_an_invalid_key_hears_the_menu_once_then_the_call_ends(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    root = press(client, attempt_id, "7")
    say, gather, _ = list(root)
    assert say.text == "Sorry, that is not one of the choices."
    retry_url = f"{BASE}/v1/providers/twilio/gather/{attempt_id}?retry=1"
    assert gather.get("action") == retry_url
    root = press(client, attempt_id, "7", query="?retry=1")
    assert [(e.tag, e.text) for e in root] == [("Say", "Goodbye."), ("Hangup", None)]
    assert attempt_of(runtime, attempt_id).menu_action is None


def test_opt_out_lists_the_number_in_the_callbacks_transaction(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    root = press(client, attempt_id, "9")
    assert "not receive these calls again" in said(root)[0]
    with transaction(runtime.settings.database_url) as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        [entry] = session.scalars(select(DncEntry).where(DncEntry.e164 == TO)).all()
        assert (entry.account_id, entry.source, entry.campaign_id) == (
            attempt.account_id,
            "keypress",
            attempt.campaign_id,
        )
        assert entry.created_at is not None
    assert attempt.menu_action == MenuAction.OPT_OUT
    # Twilio delivering the same key again changes nothing and answers the same.
    assert said(press(client, attempt_id, "9")) == said(root)
    # The call ends: `call.completed` and `contact.completed` carry the action.
    end = {
        "CallSid": SID,
        "AccountSid": ACCOUNT_SID,
        "CallStatus": "completed",
        "SequenceNumber": "5",
        "CallDuration": "20",
    }
    assert post(client, "status", attempt_id, end).status_code == 204
    with transaction(runtime.settings.database_url) as session:
        bodies = {e.type: json.loads(e.body) for e in session.scalars(select(WebhookEvent))}
    assert bodies["call.completed"]["data"]["menu_action"] == "opt_out"
    assert bodies["contact.completed"]["data"]["menu_action"] == "opt_out"


def test_call_answered_is_written_with_answered_by(client: httpx.Client, runtime: Runtime) -> None:
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session, webhook_url="https://hooks.example.test/in")
        campaign = make_campaign(session, account, status=CampaignStatus.RUNNING)
        job = make_job(session, campaign, TO, status=JobStatus.IN_PROGRESS, attempt_count=1)
        attempt_id = make_attempt(
            session, job, status=AttemptStatus.RINGING, call_sid=SID, placed_at=None
        ).id
    hold_lease(runtime, attempt_id)
    answered = {
        "CallSid": SID,
        "AccountSid": ACCOUNT_SID,
        "CallStatus": "in-progress",
        "SequenceNumber": "2",
        "AnsweredBy": "human",
    }
    assert post(client, "status", attempt_id, answered).status_code == 204
    assert post(client, "status", attempt_id, answered).status_code == 204  # a duplicate
    with transaction(runtime.settings.database_url) as session:
        events = session.scalars(select(WebhookEvent)).all()
    [event] = events
    assert event.type == "call.answered"
    data = json.loads(event.body)["data"]
    assert (data["attempt_id"], data["call_sid"], data["answered_by"]) == (attempt_id, SID, "human")


def recording(**overrides: str) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID,
        "CallSid": SID,
        "RecordingSid": "RE" + "d" * 32,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE"
        + "d" * 32,
        "RecordingStatus": "completed",
        "RecordingDuration": "17",
        **overrides,
    }


def test_a_recording_callback_is_stored_once(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    assert post(client, "recording", attempt_id, recording()).status_code == 204
    assert post(client, "recording", attempt_id, recording()).status_code == 204
    attempt = attempt_of(runtime, attempt_id)
    assert attempt.recording_sid == "RE" + "d" * 32
    assert attempt.recording_url == recording()["RecordingUrl"]
    assert attempt.recording_duration_s == 17


@pytest.mark.parametrize(
    "params",
    [
        recording(RecordingSid="RE123"),
        recording(RecordingSid=""),
        recording(RecordingStatus="done"),
        recording(RecordingUrl="ftp://example.test/r"),
        recording(RecordingUrl="https://x.test/" + "a" * 600),
        recording(RecordingDuration="-3"),
        recording(RecordingDuration="ten"),
        recording(CallSid="CA123"),
    ],
)
def test_malformed_recording_callbacks_are_refused(
    client: httpx.Client, runtime: Runtime, attempt_id: int, params: dict[str, str]
) -> None:
    response = post(client, "recording", attempt_id, params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_callback"
    assert attempt_of(runtime, attempt_id).recording_url is None


def test_forged_recording_callbacks_are_refused(
    client: httpx.Client, runtime: Runtime, attempt_id: int
) -> None:
    forged = post(client, "recording", attempt_id, recording(), token="not-the-token")
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "invalid_signature"
    unsigned = client.post(f"/v1/providers/twilio/recording/{attempt_id}", data=recording())
    assert unsigned.status_code == 403
    assert attempt_of(runtime, attempt_id).recording_url is None


# ---- the operator schema ------------------------------------------------------------------


def options(**fields: Any) -> CampaignOptions:
    return CampaignOptions(name="m", message="Hi.", **fields)


def test_the_opt_out_line_is_on_by_default_and_configurable() -> None:
    menu = options().call_menu()
    assert menu is not None
    assert menu.actions == {"9": (MenuAction.OPT_OUT, None)}
    assert menu.prompt == "To stop these calls, press 9."
    custom = options(opt_out_digit="0", opt_out_prompt="Press {digit} to never hear from us.")
    assert custom.call_menu() is not None
    assert custom.call_menu().prompt == "Press 0 to never hear from us."  # type: ignore[union-attr]
    assert options(opt_out_line=False).call_menu() is None


def test_gather_dtmf_is_the_confirm_cancel_menu() -> None:
    menu = options(gather_dtmf=True).call_menu()
    assert menu is not None
    assert menu.actions == {
        "1": (MenuAction.CONFIRM, None),
        "2": (MenuAction.CANCEL, None),
        "9": (MenuAction.OPT_OUT, None),
    }
    assert menu.prompt.startswith("To confirm, press 1. To cancel, press 2.")


def test_a_menu_as_json_text_with_its_own_words() -> None:
    given = json.dumps({"1": {"action": "confirm", "say": "Press {digit} if you will come."}})
    menu = options(menu=given).call_menu()
    assert menu is not None
    assert menu.prompt == "Press 1 if you will come. To stop these calls, press 9."


@pytest.mark.parametrize(
    ("menu", "field"),
    [
        ('{"1": "confirm", "1": "cancel"}', "menu"),
        ({"1": "dance"}, "menu.1"),
        ({"12": "confirm"}, "menu.12"),
        ({"a": "confirm"}, "menu.a"),
        ({"4": "transfer"}, "menu.4"),
        ({"4": {"action": "transfer", "to": "2125550100"}}, "menu.4"),
        ({"4": {"action": "transfer", "to": "+1911"}}, "menu.4"),
        ({"1": {"action": "confirm", "to": TRANSFER_TO}}, "menu.1"),
        ({"1": {"action": "confirm", "colour": "red"}}, "menu.1"),
        ({"9": "confirm"}, "menu.9"),
        ("[1, 2]", "menu"),
        ("{not json", "menu"),
    ],
)
def test_menus_that_cannot_be_offered_are_refused(menu: Any, field: str) -> None:
    with pytest.raises(InvalidMenuError) as refused:
        options(menu=menu)
    assert refused.value.code == "invalid_menu"
    assert refused.value.details and refused.value.details[0]["field"] == field


def test_gather_dtmf_and_a_menu_together_are_refused() -> None:
    with pytest.raises(InvalidMenuError):
        options(gather_dtmf=True, menu={"3": "repeat"})
