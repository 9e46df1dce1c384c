"""Callback delivery: signatures over the URL and connection-override retries."""

from __future__ import annotations

import socket

from twilio.request_validator import RequestValidator

from dialer.simulator.callbacks import ConnectionOverrides
from tests.simulator.support import AUTH_TOKEN, run_receiver, run_sim
from tests.support import wait_until

TO = "+15551230001"


def test_signature_covers_the_fragment_by_default_and_not_when_told() -> None:
    for sign_fragment in (True, False):
        with (
            run_receiver() as receiver,
            run_sim(outcomes_by_number={TO: "busy"}, sign_fragment=sign_fragment) as sim,
        ):
            url = f"{receiver.base_url}/status?attempt=12#rc=2&rp=5xx"
            sim.create(To=TO, StatusCallback=url)
            receiver.wait_for(lambda: len(receiver.requests) == 1)
            received = receiver.requests[0]
            assert received.path == "/status?attempt=12"  # the fragment is not sent
            signed_url = url if sign_fragment else url.split("#")[0]
            validator = RequestValidator(AUTH_TOKEN)
            signature = received.headers["X-Twilio-Signature"]
            assert validator.validate(signed_url, received.params, signature)
            assert received.params["CallStatus"] == "busy"  # default event set: completed


def test_5xx_is_retried_when_the_fragment_asks() -> None:
    with run_receiver() as receiver, run_sim(outcomes_by_number={TO: "busy"}) as sim:
        receiver.status_for = lambda path, n: 500 if n < 2 else 204
        sim.create(To=TO, StatusCallback=f"{receiver.base_url}/status#rc=3&rp=5xx")
        receiver.wait_for(lambda: len(receiver.requests) == 3)
        assert len({r.params["SequenceNumber"] for r in receiver.requests}) == 1
        receiver.wait_for(lambda: sim.stats()["callbacks_sent"] == 1)
        stats = sim.stats()
        assert stats["callback_attempts"] == 3
        assert stats["callbacks_failed"] == 0


def test_5xx_is_not_retried_by_default() -> None:
    with run_receiver() as receiver, run_sim(outcomes_by_number={TO: "busy"}) as sim:
        receiver.status_for = lambda path, n: 500
        sim.create(To=TO, StatusCallback=f"{receiver.base_url}/status")
        receiver.wait_for(lambda: sim.stats()["callbacks_failed"] == 1)
        assert len(receiver.requests) == 1


def test_retry_count_bounds_the_attempts() -> None:
    with run_receiver() as receiver, run_sim(outcomes_by_number={TO: "busy"}) as sim:
        receiver.status_for = lambda path, n: 503
        sim.create(To=TO, StatusCallback=f"{receiver.base_url}/status#rc=2&rp=all")
        receiver.wait_for(lambda: sim.stats()["callbacks_failed"] == 1)
        assert len(receiver.requests) == 3


def test_connection_failure_is_retried_once_by_default() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with run_sim(outcomes_by_number={TO: "busy"}) as sim:
        sim.create(To=TO, StatusCallback=f"http://127.0.0.1:{closed_port}/status")
        wait_until(lambda: sim.stats()["callbacks_failed"] == 1)
        assert sim.stats()["callback_attempts"] == 2


def test_connection_overrides_parsing_and_clamping() -> None:
    overrides = ConnectionOverrides.from_fragment("rc=9&rp=4xx,rt&ct=50&rt=2000&tt=99999&x=1")
    assert overrides.retry_count == 5
    assert overrides.retry_policy == frozenset({"4xx", "rt"})
    assert overrides.connect_timeout_s == 0.1
    assert overrides.read_timeout_s == 2.0
    assert overrides.total_time_s == 15.0
    default = ConnectionOverrides.from_fragment("")
    assert (default.retry_count, default.retry_policy) == (1, frozenset({"ct"}))
    assert ConnectionOverrides.from_fragment("rp=all").retry_policy == {"4xx", "5xx", "ct", "rt"}


def test_get_callbacks_carry_and_sign_the_parameters_in_the_query() -> None:
    with run_receiver() as receiver, run_sim(outcomes_by_number={TO: "busy"}) as sim:
        sim.create(
            To=TO, StatusCallback=f"{receiver.base_url}/status?a=1", StatusCallbackMethod="GET"
        )
        receiver.wait_for(lambda: len(receiver.requests) == 1)
        received = receiver.requests[0]
        assert received.params["CallStatus"] == "busy"
        assert received.params["a"] == "1"
        signature = received.headers["X-Twilio-Signature"]
        assert RequestValidator(AUTH_TOKEN).validate(
            receiver.base_url + received.url, {}, signature
        )


def test_retries_and_duplicates_share_the_idempotency_token() -> None:
    with (
        run_receiver() as receiver,
        run_sim(outcomes_by_number={TO: "busy"}, faults={"callback-duplicate": 1.0}) as sim,
    ):
        receiver.status_for = lambda path, n: 500 if n == 0 else 204
        sim.create(To=TO, StatusCallback=f"{receiver.base_url}/status#rc=1&rp=5xx")
        receiver.wait_for(lambda: len(receiver.requests) == 3)
        tokens = {r.headers["I-Twilio-Idempotency-Token"] for r in receiver.requests}
        assert len(tokens) == 1
