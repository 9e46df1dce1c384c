"""AMD as place_call asks the carrier for it, read off the wire (the SDK's HTTP client):
asynchronous only when hanging up on machines; synchronous `DetectMessageEnd` when leaving a
message, so the message waits for the beep; no AMD parameters at all without AMD."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
import requests

from campaigns.calls import SingleCall
from dialer.dispatch.dialing import PlaceResult, place_call
from dialer.pool.leases import (
    ProviderLimits,
    acquire_scopes,
    caller_id_slot,
    lease_seconds,
    rate_limits,
)
from dialer.providers.twilio import TwilioProvider
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.simulator import SimulatorConfig, run_in_thread
from models import (
    AttemptStatus,
    CallAttempt,
    CallerId,
    CampaignStatus,
    JobStatus,
    MachineAction,
    transaction,
    utcnow,
)
from tests.conftest import REDIS_URL
from tests.factories import make_account, make_campaign, make_job

PUBLIC = "http://127.0.0.1:9"  # callbacks go nowhere: only the create request matters here
MESSAGE = "Hello {first_name}, your appointment is on Monday."


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with run_in_thread(SimulatorConfig(time_scale=0.001, seed=5)) as url:
        yield url


@pytest.fixture
def runtime(committed_db: str, redis_client: redis.Redis, sim_url: str) -> Runtime:
    return Runtime(
        Settings(
            database_url=committed_db,
            redis_url=REDIS_URL,
            twilio_base_url=sim_url,
            public_base_url=PUBLIC,
        )
    )


def create_form(
    runtime: Runtime, contact: dict[str, Any] | None = None, **campaign: Any
) -> dict[str, list[str]]:
    """Place one call for a campaign with these settings (and a contact with `contact`'s
    own); the form its create POST carried."""
    with transaction(runtime.settings.database_url) as session:
        account = make_account(session)
        row = make_campaign(
            session, account, status=CampaignStatus.RUNNING, message=MESSAGE, **campaign
        )
        job = make_job(
            session, row, "+12125550143", status=JobStatus.IN_PROGRESS, **(contact or {})
        )
        caller_id = session.get_one(CallerId, row.caller_id_id)
        attempt = CallAttempt(
            job_id=job.id,
            campaign_id=row.id,
            account_id=account.id,
            attempt_no=1,
            phone_e164=job.phone_e164,
            from_e164=caller_id.e164,
            status=AttemptStatus.DIALING,
            lease_expires_at=utcnow(),
        )
        session.add(attempt)
        session.flush()
        runtime.pool.acquire(
            str(attempt.id),
            lease_seconds(row),
            [*acquire_scopes(account, row, ProviderLimits()), caller_id_slot(caller_id).scope],
            rate_limits(account, row, ProviderLimits()),
        )
        attempt_id = attempt.id
    provider = runtime.provider
    assert isinstance(provider, TwilioProvider)
    sent: list[requests.PreparedRequest] = []

    def capture(response: requests.Response, *args: object, **kwargs: object) -> None:
        sent.append(response.request)

    provider.http_client.request_hooks = {"response": [capture]}
    assert place_call(runtime, attempt_id) is PlaceResult.PLACED
    [create] = [r for r in sent if r.method == "POST" and str(r.url).endswith("/Calls.json")]
    assert isinstance(create.body, str)
    return parse_qs(create.body, keep_blank_values=True)


def test_hanging_up_on_machines_asks_for_asynchronous_amd(runtime: Runtime) -> None:
    form = create_form(runtime, machine_detection=True, machine_action=MachineAction.HANG_UP)
    assert form["MachineDetection"] == ["Enable"]
    assert form["AsyncAmd"] == ["true"]
    [callback] = form["AsyncAmdStatusCallback"]
    assert callback.startswith(PUBLIC)
    assert form["AsyncAmdStatusCallbackMethod"] == ["POST"]


def test_leaving_a_message_waits_for_the_beep(runtime: Runtime) -> None:
    form = create_form(runtime, machine_detection=True, machine_action=MachineAction.LEAVE_MESSAGE)
    assert form["MachineDetection"] == ["DetectMessageEnd"]
    # Synchronous: no AsyncAmd at all, so the TwiML runs only once the greeting has ended.
    assert not {"AsyncAmd", "AsyncAmdStatusCallback", "AsyncAmdStatusCallbackMethod"} & set(form)
    # The TwiML is the message itself, said in full once the beep has gone.
    [twiml] = form["Twiml"]
    root = ET.fromstring(twiml)  # noqa: S314  # our own request, not untrusted input
    assert root.tag == "Response"
    [say] = list(root)
    assert say.tag == "Say"
    assert say.text == "Hello Ada, your appointment is on Monday."


def test_no_amd_sends_no_amd_parameters(runtime: Runtime) -> None:
    form = create_form(runtime, machine_detection=False)
    assert not {k for k in form if k.startswith(("MachineDetection", "AsyncAmd"))}
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]


def test_a_single_calls_own_settings_override_its_campaigns(runtime: Runtime) -> None:
    """`POST /v1/calls` keeps a call's message, ring timeout, time limit and AMD on its
    contact; they win over the campaign's."""
    own = {
        "message": "Hi {first_name}, it is me.",
        "ring_timeout_s": 12,
        "time_limit_s": 90,
        "machine_detection": True,
        "machine_action": MachineAction.CONTINUE,
    }
    form = create_form(runtime, own, machine_detection=False, ring_timeout_s=30)
    assert (form["Timeout"], form["TimeLimit"]) == (["12"], ["90"])
    # Detect and carry on: asynchronous AMD (the result is recorded), the message at once.
    assert form["MachineDetection"] == ["Enable"]
    assert form["AsyncAmd"] == ["true"]
    [twiml] = form["Twiml"]
    say = ET.fromstring(twiml)[0]  # noqa: S314  # our own request, not untrusted input
    assert say.text == "Hi Ada, it is me."


def test_a_voicemail_message_asks_for_asynchronous_detect_message_end(runtime: Runtime) -> None:
    """A person hears the message at once; the voicemail waits for the greeting's end."""
    form = create_form(runtime, voicemail_message="Sorry we missed you.")
    assert form["MachineDetection"] == ["DetectMessageEnd"]
    assert form["AsyncAmd"] == ["true"]
    [callback] = form["AsyncAmdStatusCallback"]
    assert callback.startswith(PUBLIC + "/v1/providers/twilio/amd/")
    say = ET.fromstring(form["Twiml"][0])[0]  # noqa: S314  # our own request
    assert say.text == "Hello Ada, your appointment is on Monday."


def test_a_single_calls_menu_and_recording(runtime: Runtime) -> None:
    """`POST /v1/calls` with its own menu and `record`: its keys and the opt-out line in
    the Gather, the disclosure first, `Record` and the recording webhook on the create."""
    call = SingleCall(menu={"1": "confirm"}, record=True)
    menu = call.call_menu()
    assert menu is not None
    form = create_form(runtime, {"menu": menu.stored(), "record": True})
    assert form["Record"] == ["true"]
    [recording] = form["RecordingStatusCallback"]
    assert recording.startswith(PUBLIC + "/v1/providers/twilio/recording/")
    assert form["RecordingStatusCallbackEvent"] == ["completed"]
    disclosure, say, gather, _ = list(ET.fromstring(form["Twiml"][0]))  # noqa: S314
    assert disclosure.text == "This call may be recorded."
    assert say.text == "Hello Ada, your appointment is on Monday."
    [prompt] = [e.text for e in gather]
    assert prompt == "To confirm, press 1. To stop these calls, press 9."


def test_no_recording_without_record(runtime: Runtime) -> None:
    form = create_form(runtime)
    assert not {k for k in form if k.startswith("Record")}
