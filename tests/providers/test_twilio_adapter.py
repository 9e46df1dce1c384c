"""The Twilio adapter maps every outcome of the SDK against the simulator to the typed errors."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from dialer.providers.base import (
    AccountProviderError,
    AmbiguousProviderError,
    CallRequest,
    ContactProviderError,
    NotFoundProviderError,
    ProviderError,
    ThrottledProviderError,
)
from dialer.providers.twilio import BaseUrlHttpClient, provider_from_settings
from dialer.settings import Settings
from tests.providers.conftest import make_provider
from tests.simulator.support import CALLS_PATH, Sim, run_sim
from tests.support import wait_until


def call_to(to: str) -> CallRequest:
    return CallRequest(
        to=to,
        from_="+15550000000",
        twiml="<Response><Say>Hello</Say></Response>",
        status_callback="http://127.0.0.1:9/status",
    )


@pytest.mark.parametrize("fault", ["502-before", "502-after"])
def test_502_is_ambiguous(fault: str) -> None:
    with run_sim(faults={fault: 1.0}) as sim:
        with pytest.raises(AmbiguousProviderError) as caught:
            make_provider(sim.base_url).create_call(call_to("+15551230001"))
        assert caught.value.http_status == 502
        assert caught.value.code == 20500
        assert sim.stats()["calls_created"] == (1 if fault == "502-after" else 0)


def test_slow_reply_is_ambiguous_and_the_call_can_be_found() -> None:
    with run_sim(faults={"slow": 1.0}, slow_delay_s=1.0, time_scale=1.0) as sim:
        provider = make_provider(sim.base_url, timeout_s=0.2)
        since = datetime.now(UTC)
        with pytest.raises(AmbiguousProviderError) as caught:
            provider.create_call(call_to("+15551230001"))
        assert caught.value.http_status is None
        found = provider.list_calls("+15551230001", since)
        assert len(found) == 1


def test_closed_port_is_ambiguous() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AmbiguousProviderError):
        make_provider(f"http://127.0.0.1:{port}", timeout_s=0.5).create_call(
            call_to("+15551230001")
        )


def test_429_is_throttled() -> None:
    with run_sim(faults={"429": 1.0}) as sim:
        with pytest.raises(ThrottledProviderError) as caught:
            make_provider(sim.base_url).create_call(call_to("+15551230001"))
        assert (caught.value.code, caught.value.http_status) == (20429, 429)


def test_concurrency_limit_is_throttled() -> None:
    with run_sim(concurrency_limit=1, time_scale=1.0) as sim:
        provider = make_provider(sim.base_url)
        provider.create_call(call_to("+15551230001"))
        with pytest.raises(ThrottledProviderError) as caught:
            provider.create_call(call_to("+15551230002"))
        assert caught.value.code == 10004


@pytest.mark.parametrize(
    ("to", "code"),
    [("+15005550001", 21217), ("+15005550002", 21214), ("+15005550004", 21216), ("555-abc", 21211)],
)
def test_contact_errors(sim: Sim, to: str, code: int) -> None:
    with pytest.raises(ContactProviderError) as caught:
        make_provider(sim.base_url).create_call(call_to(to))
    assert (caught.value.code, caught.value.http_status) == (code, 400)
    assert caught.value.message


def test_geo_permission_is_an_account_error(sim: Sim) -> None:
    with pytest.raises(AccountProviderError) as caught:
        make_provider(sim.base_url).create_call(call_to("+15005550003"))
    assert caught.value.code == 21215


def test_bad_token_is_an_account_error(sim: Sim) -> None:
    with pytest.raises(AccountProviderError) as caught:
        make_provider(sim.base_url, token="wrong").create_call(call_to("+15551230001"))
    assert (caught.value.code, caught.value.http_status) == (20003, 401)
    assert caught.value.message == "Authenticate"


def test_a_refused_list_page_is_mapped_like_any_refusal(sim: Sim) -> None:
    """The SDK raises a bare `TwilioException` for a list page it could not fetch (not a
    `TwilioRestException`); it is mapped from the reply's Twilio error body all the same."""
    provider = make_provider(sim.base_url, token="wrong-token")
    for lookup in (
        lambda: provider.list_calls("+15551230001", datetime.now(UTC)),
        lambda: provider.owns_caller_id("+15005550006"),
    ):
        with pytest.raises(AccountProviderError) as caught:
            lookup()
        assert (caught.value.code, caught.value.http_status) == (20003, 401)


def test_unknown_sid_is_not_found(sim: Sim) -> None:
    provider = make_provider(sim.base_url)
    for operation in (provider.fetch_call, provider.hang_up):
        with pytest.raises(NotFoundProviderError) as caught:
            operation("CA" + "0" * 32)
        assert (caught.value.code, caught.value.http_status) == (20404, 404)


def test_every_error_is_a_provider_error() -> None:
    for kind in (
        AmbiguousProviderError,
        ThrottledProviderError,
        ContactProviderError,
        AccountProviderError,
        NotFoundProviderError,
    ):
        assert issubclass(kind, ProviderError)


def test_list_calls_filters_on_date_created(sim: Sim) -> None:
    provider = make_provider(sim.base_url)
    since = datetime.now(UTC)
    created = provider.create_call(call_to("+15551230001"))
    provider.create_call(call_to("+15551239999"))
    assert [c.sid for c in provider.list_calls("+15551230001", since)] == [created.sid]
    assert provider.list_calls("+15551230001", since + timedelta(seconds=5)) == []


def test_hang_up_ended_call_returns_it(sim: Sim) -> None:
    sim.configure(outcomes_by_number={"+15551230001": "busy"})
    provider = make_provider(sim.base_url)
    created = provider.create_call(call_to("+15551230001"))
    wait_until(lambda: provider.fetch_call(created.sid).status == "busy")
    assert provider.hang_up(created.sid).status == "busy"
    assert sim.stats()["hang_ups"] == 0


def test_hang_up_answered_call_completes_it() -> None:
    to = "+15551230001"
    with run_sim(
        time_scale=0.01, outcomes_by_number={to: "human"}, talk_seconds_by_number={to: 1000}
    ) as sim:
        provider = make_provider(sim.base_url)
        created = provider.create_call(call_to(to))
        wait_until(lambda: provider.fetch_call(created.sid).status == "in-progress")
        ended = provider.hang_up(created.sid)
        assert ended.status == "completed"
        assert ended.duration_s is not None


def test_provider_from_settings_talks_to_the_simulator(sim: Sim) -> None:
    provider = provider_from_settings(Settings(twilio_base_url=sim.base_url, twilio_timeout_s=3))
    created = provider.create_call(call_to("+15551230001"))
    assert created.sid.startswith("CA")
    assert provider.http_client.timeout == 3
    listed = sim.http.get(CALLS_PATH).json()["calls"]
    assert [c["sid"] for c in listed] == [created.sid]


def test_base_url_rewrites_scheme_and_host_only() -> None:
    client = BaseUrlHttpClient("http://127.0.0.1:8765/", 1.0)
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json?To=%2B1"
    assert client.rewrite(url) == "http://127.0.0.1:8765/2010-04-01/Accounts/AC1/Calls.json?To=%2B1"
    assert BaseUrlHttpClient(None, 1.0).rewrite(url) == url


def test_one_keep_alive_connection_serves_the_requests_of_a_process(sim: Sim) -> None:
    provider = make_provider(sim.base_url)
    first = provider.create_call(call_to("+15551230001"))
    provider.create_call(call_to("+15551230002"))
    provider.fetch_call(first.sid)
    adapter = provider.http_client.session.get_adapter(sim.base_url)
    pools = adapter.poolmanager.pools
    [pool] = [pools[key] for key in pools.keys()]  # noqa: SIM118  # it refuses iteration
    assert pool.num_connections == 1  # opened once, reused by the next two requests
    assert pool.num_requests == 3


def test_the_environment_s_proxy_and_ca_settings_are_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/company-ca.pem")
    twilio = BaseUrlHttpClient(None, 1.0)
    assert twilio.proxy["https"] == "http://proxy.example.test:3128"
    assert twilio.session.verify == "/etc/ssl/certs/company-ca.pem"
    assert BaseUrlHttpClient("http://127.0.0.1:8765", 1.0).proxy == {}  # NO_PROXY holds
    # Read once: requests does not look at the environment again on each request.
    assert twilio.session.trust_env is False
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example.test:3128")
    assert twilio.proxy["https"] == "http://proxy.example.test:3128"
