"""The simulator's requests and replies, driven by the SDK through the adapter, match
Twilio's published OpenAPI spec."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from dialer.providers.base import CallRequest
from tests.providers.conftest import make_provider
from tests.simulator.support import Sim
from tests.support import wait_until

TWILIO = "https://api.twilio.com"


def test_adapter_traffic_matches_the_twilio_spec(twilio_openapi: OpenAPI, sim: Sim) -> None:
    provider = make_provider(sim.base_url)
    exchanges: list[requests.Response] = []

    def capture(response: requests.Response, *args: object, **kwargs: object) -> None:
        exchanges.append(response)

    provider.http_client.request_hooks = {"response": [capture]}
    since = datetime.now(UTC)
    request = CallRequest(
        to="+15551230001",
        from_="+15550000000",
        twiml="<Response><Say>Hi</Say></Response>",
        status_callback="https://dialer.example/status?attempt=1",
        ring_timeout_s=25,
        time_limit_s=300,
        machine_detection="DetectMessageEnd",
        async_amd_callback="https://dialer.example/amd?attempt=1",
    )
    call = provider.create_call(request)
    assert call.status == "queued"
    assert provider.fetch_call(call.sid).sid == call.sid
    assert [c.sid for c in provider.list_calls("+15551230001", since)] == [call.sid]
    hung_up = provider.hang_up(call.sid)
    assert hung_up.status in ("canceled", "completed")
    wait_until(lambda: provider.fetch_call(call.sid).status == hung_up.status)

    methods = [(r.request.method, r.status_code) for r in exchanges]
    assert ("POST", 201) in methods
    assert ("POST", 200) in methods  # the update (two when the call was answered meanwhile)
    assert len(exchanges) >= 5
    body = exchanges[0].request.body
    assert isinstance(body, str)
    for field in (
        "StatusCallbackEvent=initiated",
        "StatusCallbackEvent=completed",
        "AsyncAmd=true",
        "MachineDetection=DetectMessageEnd",
        "Timeout=25",
        "TimeLimit=300",
        "StatusCallbackMethod=POST",
    ):
        assert field in body
    for response in exchanges:
        prepared = copy.copy(response.request)
        assert prepared.url is not None
        prepared.url = prepared.url.replace(sim.base_url, TWILIO)
        openapi_request = RequestsOpenAPIRequest(prepared)
        twilio_openapi.validate_request(openapi_request)
        twilio_openapi.validate_response(openapi_request, RequestsOpenAPIResponse(response))


def test_caller_id_lookups_match_the_twilio_spec(twilio_openapi: OpenAPI, sim: Sim) -> None:
    """`owns_caller_id` asks IncomingPhoneNumbers, then OutgoingCallerIds, filtered by
    PhoneNumber: the simulator's owned and verified numbers, in Twilio's shapes."""
    assert sim.configure(verified_caller_ids=["+14155550123"]).status_code == 200
    provider = make_provider(sim.base_url)
    exchanges: list[requests.Response] = []

    def capture(response: requests.Response, *args: object, **kwargs: object) -> None:
        exchanges.append(response)

    provider.http_client.request_hooks = {"response": [capture]}
    assert provider.owns_caller_id("+15005550006")  # owned by default
    assert provider.owns_caller_id("+14155550123")  # verified
    assert not provider.owns_caller_id("+14155550199")
    paths = [r.request.path_url.split("?")[0].rsplit("/", 1)[1] for r in exchanges]
    assert paths == [
        "IncomingPhoneNumbers.json",
        "IncomingPhoneNumbers.json",
        "OutgoingCallerIds.json",
        "IncomingPhoneNumbers.json",
        "OutgoingCallerIds.json",
    ]
    assert "PhoneNumber=%2B15005550006" in (exchanges[0].request.url or "")
    for response in exchanges:
        prepared = copy.copy(response.request)
        assert prepared.url is not None
        prepared.url = prepared.url.replace(sim.base_url, TWILIO)
        openapi_request = RequestsOpenAPIRequest(prepared)
        twilio_openapi.validate_request(openapi_request)
        twilio_openapi.validate_response(openapi_request, RequestsOpenAPIResponse(response))
