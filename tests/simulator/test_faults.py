"""Each injected fault does what it says, and is counted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.simulator.support import (
    CALLS_PATH,
    EVENTS,
    TERMINAL,
    place,
    run_receiver,
    run_sim,
    wait_final,
)
from tests.support import wait_until


def test_502_before_creates_nothing() -> None:
    with run_sim(faults={"502-before": 1.0}) as sim:
        response = sim.create(To="+15551230001")
        assert response.status_code == 502
        assert response.json()["status"] == 502
        stats = sim.stats()
        assert stats["calls_created"] == 0
        assert stats["faults_injected"] == {"502-before": 1}


def test_502_after_creates_the_call_anyway() -> None:
    with run_sim(faults={"502-after": 1.0}, time_scale=1.0) as sim:
        response = sim.create(To="+15551230001")
        assert response.status_code == 502
        listed = sim.http.get(CALLS_PATH, params={"To": "+15551230001"}).json()["calls"]
        assert len(listed) == 1
        assert sim.stats()["calls_created"] == 1


def test_429_creates_nothing() -> None:
    with run_sim(faults={"429": 1.0}) as sim:
        response = sim.create(To="+15551230001")
        assert response.status_code == 429
        assert response.json()["code"] == 20429
        assert sim.stats()["calls_created"] == 0


def test_slow_reply_outlasts_the_client_timeout_but_the_call_exists() -> None:
    with run_sim(faults={"slow": 1.0}, slow_delay_s=1.0, time_scale=1.0) as sim:
        with pytest.raises(httpx.ReadTimeout):
            sim.http.post(
                CALLS_PATH,
                data={"To": "+15551230001", "From": "+15550000000", "Twiml": "<Response/>"},
                timeout=0.2,
            )
        listed = sim.http.get(CALLS_PATH, params={"To": "+15551230001"}).json()["calls"]
        assert len(listed) == 1


def test_slow_creates_the_call_before_holding_the_reply() -> None:
    to = "+15551230001"
    with run_sim(faults={"slow": 1.0}, slow_delay_s=1.0, time_scale=1.0) as sim:
        started = time.monotonic()
        response = sim.create(To=to)
        assert response.status_code == 201
        assert time.monotonic() - started >= 1.0
        stats = sim.stats()
        assert stats["faults_injected"] == {"slow": 1}
        assert stats["creates_held"] == 0
        # Created on arrival: it has been ringing for the whole second the reply was held.
        assert sim.fetch(str(response.json()["sid"]))["status"] != "queued"


def test_slow_before_creates_the_call_only_after_the_client_gave_up() -> None:
    to = "+15551230001"
    with (
        run_receiver() as receiver,
        run_sim(
            faults={"slow-before": 1.0},
            slow_delay_s=1.0,
            time_scale=0.01,
            outcomes_by_number={to: "human"},
        ) as sim,
    ):
        sent = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            sim.http.post(
                CALLS_PATH,
                data={
                    "To": to,
                    "From": "+15550000000",
                    "Twiml": "<Response/>",
                    "StatusCallback": f"{receiver.base_url}/status/{to}",
                    "StatusCallbackEvent": EVENTS,
                },
                timeout=0.2,
            )
        # The client gave up and looks the call up: nothing yet, the request is still held.
        assert sim.http.get(CALLS_PATH, params={"To": to}).json()["calls"] == []
        stats = sim.stats()
        assert stats["calls_created"] == 0
        assert stats["creates_held"] == 1
        assert stats["faults_injected"] == {"slow-before": 1}
        assert receiver.requests == []

        def listed() -> list[dict[str, object]]:
            calls: list[dict[str, object]] = sim.http.get(CALLS_PATH, params={"To": to}).json()[
                "calls"
            ]
            return calls

        wait_until(lambda: len(listed()) == 1, timeout_s=5.0)
        assert time.monotonic() - sent >= 1.0
        [call] = listed()
        events = wait_final(receiver, to)
        assert {r.params["CallSid"] for r in events} == {call["sid"]}
        assert [r.params["CallStatus"] for r in events] == [
            "initiated",
            "ringing",
            "in-progress",
            "completed",
        ]
        stats = sim.stats()
        assert stats["calls_created"] == 1
        assert stats["creates_held"] == 0
        assert stats["max_dials_per_number"] == 1


def test_slow_before_replies_once_created_to_a_client_that_waits() -> None:
    with run_sim(faults={"slow-before": 1.0}, slow_delay_s=0.3, time_scale=1.0) as sim:
        started = time.monotonic()
        response = sim.create(To="+15551230001")
        assert response.status_code == 201
        assert time.monotonic() - started >= 0.3
        listed = sim.http.get(CALLS_PATH, params={"To": "+15551230001"}).json()["calls"]
        assert [call["sid"] for call in listed] == [response.json()["sid"]]


def test_slow_before_still_meets_the_concurrency_limit_when_it_creates() -> None:
    with run_sim(concurrency_limit=1, slow_delay_s=0.3, time_scale=1.0) as sim:
        assert sim.create(To="+15551230001").status_code == 201
        sim.configure(faults={"slow-before": 1.0})
        response = sim.create(To="+15551230002")
        assert response.status_code == 429
        assert response.json()["code"] == 10004
        assert sim.stats()["calls_created"] == 1


def test_reset_answers_a_held_create_and_creates_nothing() -> None:
    with run_sim(faults={"slow-before": 1.0}, slow_delay_s=5.0) as sim:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(sim.create, To="+15551230001")
            wait_until(lambda: sim.stats()["creates_held"] == 1)
            sim.http.post("/_sim/reset")
            assert pending.result(timeout=5).status_code == 502
        assert sim.stats()["calls_created"] == 0


def test_slow_before_faults_are_seeded() -> None:
    def held_after_each_request() -> list[int]:
        counts = []
        with run_sim(faults={"slow-before": 0.5}, slow_delay_s=0.0, seed=11) as sim:
            for n in range(12):
                assert sim.create(To=f"+1555123{n:04d}").status_code == 201
                counts.append(sim.stats()["faults_injected"].get("slow-before", 0))
        return counts

    first = held_after_each_request()
    assert first == held_after_each_request()
    assert 0 < first[-1] < 12


def test_callback_lost_never_arrives() -> None:
    to = "+15551230001"
    with (
        run_receiver() as receiver,
        run_sim(faults={"callback-lost": 1.0}, outcomes_by_number={to: "busy"}) as sim,
    ):
        sid = place(sim, receiver, to)
        sim.wait_status(sid, lambda status: status in TERMINAL)
        stats = sim.stats()
        assert stats["faults_injected"]["callback-lost"] == 3
        assert stats["callbacks_sent"] == 0
        assert receiver.requests == []


def test_callback_duplicate_arrives_twice() -> None:
    to = "+15551230001"
    with (
        run_receiver() as receiver,
        run_sim(faults={"callback-duplicate": 1.0}, outcomes_by_number={to: "busy"}) as sim,
    ):
        place(sim, receiver, to)
        receiver.wait_for(lambda: len(receiver.requests) == 6)
        sequence = [r.params["SequenceNumber"] for r in receiver.requests]
        assert sequence == ["0", "0", "1", "1", "2", "2"]
        # The simulator counts a delivery once its reply is read, just after the receiver saw it.
        receiver.wait_for(lambda: sim.stats()["callbacks_sent"] == 6)


def test_callback_reorder_delivers_a_held_callback_after_the_next() -> None:
    to = "+15551230001"
    with (
        run_receiver() as receiver,
        run_sim(faults={"callback-reorder": 1.0}, outcomes_by_number={to: "human"}) as sim,
    ):
        place(sim, receiver, to)
        wait_final(receiver, to)
        receiver.wait_for(lambda: len(receiver.requests) == len(EVENTS))
        sequence = [int(r.params["SequenceNumber"]) for r in receiver.requests]
        assert sorted(sequence) == [0, 1, 2, 3]
        assert sequence != [0, 1, 2, 3]
