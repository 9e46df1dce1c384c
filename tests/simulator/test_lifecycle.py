"""Calls live their lives: outcomes, AMD, Timeout, TimeLimit, hang-up; callbacks are signed."""

from __future__ import annotations

import pytest

from tests.simulator.support import assert_signed, place, run_receiver, run_sim, wait_final


@pytest.mark.parametrize(
    ("outcome", "statuses", "final"),
    [
        ("human", ["initiated", "ringing", "in-progress", "completed"], "completed"),
        ("machine_end_beep", ["initiated", "ringing", "in-progress", "completed"], "completed"),
        ("busy", ["initiated", "ringing", "busy"], "busy"),
        ("no-answer", ["initiated", "ringing", "no-answer"], "no-answer"),
        ("failed", ["initiated", "failed"], "failed"),
    ],
)
def test_outcome_lifecycle_and_signed_callbacks(
    outcome: str, statuses: list[str], final: str
) -> None:
    to = "+15551230001"
    with run_receiver() as receiver, run_sim(outcomes_by_number={to: outcome}) as sim:
        sid = place(sim, receiver, to)
        received = wait_final(receiver, to)
        assert [r.params["CallStatus"] for r in received] == statuses
        assert [r.params["SequenceNumber"] for r in received] == [
            str(n) for n in range(len(statuses))
        ]
        for item in received:
            assert_signed(item, f"{receiver.base_url}/status/{to}")
            assert item.params["CallSid"] == sid
            assert item.params["CallbackSource"] == "call-progress-events"
            assert item.params["Direction"] == "outbound-api"
            assert item.params["ApiVersion"] == "2010-04-01"
        last = received[-1].params
        call = sim.fetch(sid)
        assert call["status"] == final
        assert last["CallDuration"] == call["duration"]
        if final == "completed":
            assert int(call["duration"]) > 0
            assert call["start_time"] is not None
        else:
            assert call["duration"] == "0"
        assert call["answered_by"] is None  # no AMD asked
        stats = sim.stats()
        assert stats["by_status"] == {final: 1}
        assert stats["live"] == 0


@pytest.mark.parametrize(
    ("outcome", "mode", "answered_by"),
    [
        ("human", "Enable", "human"),
        ("machine_end_beep", "Enable", "machine_start"),
        ("machine_end_beep", "DetectMessageEnd", "machine_end_beep"),
        ("machine_end_silence", "DetectMessageEnd", "machine_end_silence"),
        ("machine_start", "DetectMessageEnd", "machine_end_other"),
        ("fax", "Enable", "fax"),
        ("unknown", "DetectMessageEnd", "unknown"),
    ],
)
def test_async_amd_reports_answered_by(outcome: str, mode: str, answered_by: str) -> None:
    to = "+15551230002"
    config = {"outcomes_by_number": {to: outcome}, "talk_seconds_by_number": {to: 100}}
    with run_receiver() as receiver, run_sim(**config) as sim:
        sid = place(
            sim,
            receiver,
            to,
            MachineDetection=mode,
            AsyncAmd="true",
            AsyncAmdStatusCallback=f"{receiver.base_url}/amd",
            AsyncAmdStatusCallbackMethod="POST",
        )
        received = wait_final(receiver, to)
        receiver.wait_for(lambda: len(receiver.on("/amd")) == 1)
        amd = receiver.on("/amd")[0]
        assert amd.params["AnsweredBy"] == answered_by
        assert amd.params["CallSid"] == sid
        assert int(amd.params["MachineDetectionDuration"]) > 0
        assert_signed(amd, f"{receiver.base_url}/amd")
        assert received[-1].params["AnsweredBy"] == answered_by
        assert sim.fetch(sid)["answered_by"] == answered_by


def test_sync_amd_reports_answered_by_on_answer() -> None:
    to = "+15551230003"
    with run_receiver() as receiver, run_sim(outcomes_by_number={to: "machine_end_beep"}) as sim:
        place(sim, receiver, to, MachineDetection="Enable")
        received = wait_final(receiver, to)
        answered = next(r for r in received if r.params["CallStatus"] == "in-progress")
        assert answered.params["AnsweredBy"] == "machine_start"


FIXED_GREETING = {"median_s": 20.0, "sigma": 0.0, "minimum_s": 20.0, "maximum_s": 20.0}


@pytest.mark.parametrize(
    ("outcome", "mode", "answered_by", "detect_s"),
    [
        ("machine_end_beep", "DetectMessageEnd", "machine_end_beep", 20),  # the greeting
        ("human", "DetectMessageEnd", "human", 3),  # amd_s
        ("machine_end_beep", "Enable", "machine_start", 3),
    ],
)
def test_sync_amd_runs_the_twiml_only_after_detection(
    outcome: str, mode: str, answered_by: str, detect_s: int
) -> None:
    to = "+15551230007"
    config = {
        "outcomes_by_number": {to: outcome},
        "talk_seconds_by_number": {to: 10},
        "greeting": FIXED_GREETING,
        "amd_s": 3.0,
    }
    with run_receiver() as receiver, run_sim(**config) as sim:
        sid = place(sim, receiver, to, MachineDetection=mode)
        received = wait_final(receiver, to)
        assert [r.params["CallStatus"] for r in received] == [
            "initiated",
            "ringing",
            "in-progress",
            "completed",
        ]
        answered, completed = received[2].params, received[3].params
        # The answered callback (when Twilio would fetch the Url) carries the result, and
        # the 10 s message starts after detection: after the beep with DetectMessageEnd.
        assert answered["AnsweredBy"] == answered_by
        assert completed["AnsweredBy"] == answered_by
        assert completed["CallDuration"] == str(detect_s + 10)
        assert sim.fetch(sid)["answered_by"] == answered_by
        assert receiver.on("/amd") == []


def test_async_amd_runs_the_twiml_at_once() -> None:
    to = "+15551230008"
    config = {
        "outcomes_by_number": {to: "machine_end_beep"},
        "talk_seconds_by_number": {to: 30},
        "greeting": FIXED_GREETING,
    }
    with run_receiver() as receiver, run_sim(**config) as sim:
        place(
            sim,
            receiver,
            to,
            MachineDetection="DetectMessageEnd",
            AsyncAmd="true",
            AsyncAmdStatusCallback=f"{receiver.base_url}/amd",
        )
        received = wait_final(receiver, to)
        answered = next(r for r in received if r.params["CallStatus"] == "in-progress")
        assert "AnsweredBy" not in answered.params  # not known yet: the message is playing
        assert received[-1].params["CallDuration"] == "30"  # over the greeting
        receiver.wait_for(lambda: len(receiver.on("/amd")) == 1)
        assert receiver.on("/amd")[0].params["AnsweredBy"] == "machine_end_beep"


def test_ring_past_timeout_is_no_answer() -> None:
    to = "+15551230004"
    slow_ring = {"median_s": 40.0, "sigma": 0.0, "minimum_s": 40.0, "maximum_s": 40.0}
    with (
        run_receiver() as receiver,
        run_sim(outcomes_by_number={to: "human"}, ring=slow_ring) as sim,
    ):
        sid = place(sim, receiver, to, Timeout="10")
        received = wait_final(receiver, to)
        assert received[-1].params["CallStatus"] == "no-answer"
        assert sim.fetch(sid)["status"] == "no-answer"


def test_time_limit_ends_an_answered_call() -> None:
    to = "+15551230005"
    config = {"outcomes_by_number": {to: "human"}, "talk_seconds_by_number": {to: 500}}
    with run_receiver() as receiver, run_sim(**config) as sim:
        sid = place(sim, receiver, to, TimeLimit="7")
        received = wait_final(receiver, to)
        assert received[-1].params["CallDuration"] == "7"
        assert sim.fetch(sid)["duration"] == "7"


def test_hang_up_answered_call_completes_it() -> None:
    to = "+15551230006"
    config = {
        "time_scale": 0.01,
        "outcomes_by_number": {to: "human"},
        "talk_seconds_by_number": {to: 1000},
    }
    with run_receiver() as receiver, run_sim(**config) as sim:
        sid = place(sim, receiver, to)
        sim.wait_status(sid, lambda status: status == "in-progress")
        path = f"/2010-04-01/Accounts/{sim.fetch(sid)['account_sid']}/Calls/{sid}.json"
        unchanged = sim.http.post(path, data={"Status": "canceled"})
        assert unchanged.json()["status"] == "in-progress"  # canceled only stops unanswered calls
        response = sim.http.post(path, data={"Status": "completed"})
        assert response.status_code == 200
        assert response.json()["status"] == "completed"
        received = wait_final(receiver, to)
        assert received[-1].params["CallStatus"] == "completed"
        assert int(received[-1].params["CallDuration"]) < 1000
        assert sim.stats()["hang_ups"] == 1


def test_cancel_ringing_call() -> None:
    to = "+15551230007"
    slow_ring = {"median_s": 50.0, "sigma": 0.0, "minimum_s": 50.0, "maximum_s": 50.0}
    config = {"time_scale": 0.01, "outcomes_by_number": {to: "human"}, "ring": slow_ring}
    with run_receiver() as receiver, run_sim(**config) as sim:
        sid = place(sim, receiver, to)
        sim.wait_status(sid, lambda status: status == "ringing")
        path = f"/2010-04-01/Accounts/{sim.fetch(sid)['account_sid']}/Calls/{sid}.json"
        assert sim.http.post(path, data={"Status": "canceled"}).json()["status"] == "canceled"
        received = wait_final(receiver, to)
        assert [r.params["CallStatus"] for r in received] == ["initiated", "ringing", "canceled"]
        # Hanging up an ended call changes nothing.
        assert sim.http.post(path, data={"Status": "completed"}).json()["status"] == "canceled"
