"""Each injected fault does what it says, and is counted."""

from __future__ import annotations

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
